import type { Embedder } from '../embedders/types.js';
import { type Dataset, sha256Hex } from './dataset.js';
import { type RunContext, embedAll } from './fit.js';
import type { Matrix } from './embed-cache.js';
import { apgr, bootstrapSe, mean, p1Curve } from './metrics.js';
import { SHAPES, type Shape, shapeDataset } from './shapes.js';

// Robustness to prompt shape, the part every protocol shares: which test rows are reshaped, their
// shaped copies (the 'eval' template pool, never used in training) and their vectors, and how often a
// decision stays the same. Each protocol (protocols/p1.ts, p2.ts, p3.ts) compares its own decision and
// metric on the original rows with the same on their shaped copies.

export interface RobustnessOptions {
  /** Reshape at most this many test rows per test set (a hash-ordered sample); default all of them. */
  sample?: number;
}

/** How often two decision lists agree, with its standard error over rows. */
export interface Agreement {
  n: number;
  rate: number;
  se: number;
}

/**
 * Mean of `x` with its standard error. `clusters` (the source row of each shaped copy, when several
 * copies of one row are pooled) makes it cluster-robust: copies of one row are not independent, and
 * treating them so would understate the error. Without clusters every value is its own (for 0/1
 * values this is the binomial SE).
 */
function meanWithSe(x: ArrayLike<number>, clusters?: ArrayLike<number>): Agreement {
  const n = x.length;
  let s = 0;
  for (let i = 0; i < n; i++) s += x[i]!;
  const rate = n === 0 ? Number.NaN : s / n;
  const resid = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const g = clusters === undefined ? i : clusters[i]!;
    resid.set(g, (resid.get(g) ?? 0) + x[i]! - rate);
  }
  let ss = 0;
  for (const r of resid.values()) ss += r * r;
  return { n, rate, se: n === 0 ? Number.NaN : Math.sqrt(ss) / n };
}

/** Share of positions where `a` and `b` hold the same decision (see meanWithSe for `clusters`). */
export function agreement(a: ArrayLike<number | string>, b: ArrayLike<number | string>, clusters?: ArrayLike<number>): Agreement {
  if (a.length !== b.length) throw new Error(`agreement: ${a.length} decisions against ${b.length}`);
  return meanWithSe(
    Float64Array.from({ length: a.length }, (_, i) => (a[i] === b[i] ? 1 : 0)),
    clusters,
  );
}

/** Mean of per-row agreement shares (each 0..1, e.g. over a knob sweep). */
export const meanAgreement = (perRow: ArrayLike<number>, clusters?: ArrayLike<number>): Agreement => meanWithSe(perRow, clusters);

/**
 * P1 APGR's bootstrap SE when several copies of a row are pooled: whole rows (all their copies) are
 * resampled, since copies of one row are not independent prompts.
 */
export function clusteredApgrSe(
  scores: ArrayLike<number>,
  strong: ArrayLike<number>,
  weak: ArrayLike<number>,
  clusters: readonly number[],
  reps: number,
): number {
  if (reps <= 0) return Number.NaN;
  const groups = new Map<number, number[]>();
  clusters.forEach((c, i) => (groups.get(c) ?? groups.set(c, []).get(c)!).push(i));
  const members = [...groups.values()];
  return bootstrapSe(
    members.length,
    (idx) => {
      const rows = Array.from(idx).flatMap((g) => members[g]!);
      const s = Float64Array.from(rows, (i) => strong[i]!);
      const w = Float64Array.from(rows, (i) => weak[i]!);
      return apgr(
        p1Curve(
          Float64Array.from(rows, (i) => scores[i]!),
          s,
          w,
        ),
        mean(s),
        mean(w),
      );
    },
    reps,
  );
}

/**
 * `idx` itself, or its first `sample` rows in sha256('robustness/' + id) order (kept in file order):
 * the same rows on every run and for every router, so figures of different routers compare.
 */
export function sampleRows(ds: Pick<Dataset, 'rows'>, idx: readonly number[], sample?: number): number[] {
  if (sample === undefined || sample >= idx.length) return [...idx];
  const key = new Map(idx.map((i) => [i, sha256Hex(`robustness/${ds.rows[i]!.id}`)]));
  const picked = new Set([...idx].sort((a, b) => (key.get(a)! < key.get(b)! ? -1 : 1)).slice(0, sample));
  return idx.filter((i) => picked.has(i));
}

export interface ShapedTest {
  shape: Shape;
  ds: Dataset;
  /** Row of the original dataset that each shaped row copies. */
  source: number[];
  X: Matrix;
}

/**
 * The 'eval'-pool copies of `rows` of `ds` in every shape that applies to some of them, embedded one shape
 * at a time: a caller that keeps only its decisions holds one shape's vectors at once (a P3 vector with
 * 16384 hashed buckets is 67 KB a row).
 */
export async function* eachShapedTest(
  embedder: Embedder,
  ds: Dataset,
  rows: readonly number[],
  ctx: RunContext,
): AsyncGenerator<ShapedTest> {
  for (const shape of SHAPES) {
    const set = shapeDataset(ds, rows, shape, 'eval');
    if (set.source.length === 0) continue;
    yield { shape, ds: set.ds, source: set.source, X: await embedAll(embedder, set.ds, ctx) };
  }
}

/** eachShapedTest's sets, all held at once. */
export async function shapedTests(embedder: Embedder, ds: Dataset, rows: readonly number[], ctx: RunContext): Promise<ShapedTest[]> {
  const out: ShapedTest[] = [];
  for await (const t of eachShapedTest(embedder, ds, rows, ctx)) out.push(t);
  return out;
}
