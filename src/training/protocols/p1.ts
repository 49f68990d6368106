import { type Dataset, bucket, dataPath, readDataset, requireModels, unitScore } from '../dataset.js';
import { type P1Result, mean, p1Evaluate, p1OracleScores, p1RandomCurve, apgr, cpt, quantiles } from '../metrics.js';
import type { Embedder } from '../../embedders/types.js';
import { type Agreement, type RobustnessOptions, agreement, clusteredApgrSe, sampleRows, shapedTests } from '../robustness.js';
import type { Shape } from '../shapes.js';
import { type EmbedderPool, type RunContext, embedAll, fitRecipe, predictRows, range } from '../fit.js';
import type { TrainedMlp } from '../mlp-train.js';
import type { Recipe } from '../recipes.js';
import { withCopies } from '../augment-copies.js';
import type { Matrix } from '../embed-cache.js';

// P1 (PROTOCOLS.md): strong vs weak. Train on MMLU bucket(id) == 0; score the MMLU test half and
// all of GSM8K and MT-Bench (never trained or tuned on). Score = P(strong right) - P(weak right).

export const P1_STRONG = 'gpt-4-1106-preview';
export const P1_WEAK = 'mixtral-8x7b-instruct-v0.1';

export interface P1Benchmark {
  benchmark: string;
  file: string;
  router: P1Result;
  oracle: P1Result;
  random: { apgr: number; cpt50: number | null; cpt80: number | null };
}

/** One shape's (or 'all' shapes pooled) comparison of shaped copies with their original test rows. */
export interface P1ShapeResult {
  shape: Shape | 'all';
  n: number;
  /** Same strong/weak decision at the operating point (`threshold`) for the copy and its original. */
  agreement: Agreement;
  /** Share of the copies sent to the strong model at that threshold (0.5 on the originals). */
  strongShare: number;
  /** APGR of the originals of these copies, and of the copies (each ± bootstrap SE). */
  plain: { apgr: number; apgrSe: number };
  shaped: { apgr: number; apgrSe: number };
}

export interface P1Robustness {
  benchmark: string;
  /** Test rows reshaped (all, or a hash-ordered sample). */
  rows: number;
  /** Operating point: the median router score of those rows' originals (50% strong calls on them). */
  threshold: number;
  shapes: P1ShapeResult[];
}

export interface P1Run {
  protocol: 'p1';
  recipe: string;
  embedder: string;
  strong: string;
  weak: string;
  train: { file: string; sha256: string; rows: number; split: string };
  benchmarks: P1Benchmark[];
  dump: Array<{ id: string; score: number }>;
  model: TrainedMlp;
  /** Robustness to prompt shape (absent when not asked for). */
  robustness?: P1Robustness[];
}

export interface P1Options {
  recipe: Recipe;
  pool: EmbedderPool;
  /** Score these files instead of the protocol's test sets. */
  testFiles?: string[];
  bootstrap?: number;
  /** Also score shaped copies of the test rows (src/training/shapes.ts). */
  robustness?: RobustnessOptions;
}

const AUGMENT_NOTE = {
  none: '',
  stems: ', plus a copy of each without its lettered options (src/training/augment.ts)',
  shapes:
    ', plus copies of each without options, as a chat request, behind a system prompt, after an unrelated exchange (src/training/shapes.ts)',
  'stem-chat': ', plus copies of each without options and as a chat request (src/training/shapes.ts)',
} as const;

export function scoreOf(pred: Float32Array, i: number): number {
  // Columns follow [strong, weak]: the router's need for the strong model.
  return pred[i * 2]! - pred[i * 2 + 1]!;
}

/** MMLU rows P1 trains on: bucket(id) == 0. */
export const p1TrainRows = (mmlu: Dataset): number[] => range(mmlu.rows.length).filter((i) => bucket(mmlu.rows[i]!.id) === 0);

/** Trains on `train` (default: the protocol's train half); cross-validation passes a part of it. */
export async function trainP1(
  mmlu: Dataset,
  opts: P1Options,
  ctx: RunContext,
  train = p1TrainRows(mmlu),
): Promise<{ model: TrainedMlp; rows: number }> {
  requireModels(mmlu, [P1_STRONG, P1_WEAK]);
  const embedder = await opts.pool.get(opts.recipe.embedder);
  const X = await embedAll(embedder, mmlu, ctx);
  const Y = train.map((i) => Float32Array.of(unitScore(mmlu.rows[i]!, P1_STRONG), unitScore(mmlu.rows[i]!, P1_WEAK)));
  // Subjects (the MMLU category) of the train rows feed category-prior ensemble members.
  const categories = mmlu.rows.map((r) => r.category);
  if (opts.recipe.augment === undefined) {
    return { model: await fitRecipe(opts.recipe, X, train, Y, 'sigmoid', ctx, undefined, { embedder, categories }), rows: train.length };
  }
  // Copies are made for the whole train half (one cached embedding file per kind), then those of
  // `train` are appended: a CV fold never sees a copy of a row it is scored on.
  const aug = await withCopies(embedder, mmlu, X, train, opts.recipe.augment, ctx, p1TrainRows(mmlu));
  const at = new Map(train.map((i, k) => [i, k]));
  const model = await fitRecipe(
    opts.recipe,
    aug.X,
    range(aug.X.rows),
    aug.source.map((i) => Y[at.get(i)!]!),
    'sigmoid',
    ctx,
    undefined,
    { embedder, categories: aug.source.map((i) => categories[i]!) },
  );
  return { model, rows: aug.X.rows };
}

/** Scores of `rows` of `X` (6 decimals, as the dump writes them). */
function scoresOf(model: TrainedMlp, X: Matrix, rows: readonly number[]): Float64Array {
  const pred = predictRows(model, X, rows);
  return Float64Array.from(rows, (_, k) => Number(scoreOf(pred, k).toFixed(6)));
}

/** Decisions and APGR of the test rows `idx` of `ds` against the same on their shaped copies. */
async function p1Robustness(
  model: TrainedMlp,
  embedder: Embedder,
  benchmark: string,
  ds: Dataset,
  X: Matrix,
  idx: readonly number[],
  opts: P1Options & { robustness: RobustnessOptions },
  ctx: RunContext,
): Promise<P1Robustness> {
  const rows = sampleRows(ds, idx, opts.robustness.sample);
  const plain = scoresOf(model, X, rows);
  const plainOf = new Map(rows.map((i, k) => [i, plain[k]!]));
  // The operating point a deployment would have calibrated on these (plain) prompts: half go strong.
  const threshold = quantiles(plain, [0.5])[0]!;
  const outcome = (m: string) => (source: readonly number[]) => Float64Array.from(source, (i) => ds.rows[i]!.scores[m]!);
  const compare = (shape: Shape | 'all', source: readonly number[], shaped: Float64Array): P1ShapeResult => {
    const orig = Float64Array.from(source, (i) => plainOf.get(i)!);
    const [strong, weak] = [outcome(P1_STRONG)(source), outcome(P1_WEAK)(source)];
    // Pooled copies ('all'): resample whole rows for the SE; one copy per row: the usual bootstrap.
    const reps = opts.bootstrap ?? 200;
    const p = p1Evaluate(orig, strong, weak, shape === 'all' ? 0 : reps);
    const s = p1Evaluate(shaped, strong, weak, shape === 'all' ? 0 : reps);
    if (shape === 'all') {
      p.apgrSe = clusteredApgrSe(orig, strong, weak, source, reps);
      s.apgrSe = clusteredApgrSe(shaped, strong, weak, source, reps);
    }
    return {
      shape,
      n: source.length,
      agreement: agreement(
        Array.from(orig, (x) => Number(x >= threshold)),
        Array.from(shaped, (x) => Number(x >= threshold)),
        source,
      ),
      strongShare: mean(Array.from(shaped, (x) => Number(x >= threshold))),
      plain: { apgr: p.apgr, apgrSe: p.apgrSe },
      shaped: { apgr: s.apgr, apgrSe: s.apgrSe },
    };
  };
  const sets = await shapedTests(embedder, ds, rows, ctx);
  const scored = sets.map((t) => ({ t, scores: scoresOf(model, t.X, range(t.source.length)) }));
  const shapes = scored.map(({ t, scores }) => compare(t.shape, t.source, scores));
  if (scored.length > 1)
    shapes.push(
      compare(
        'all',
        scored.flatMap(({ t }) => t.source),
        Float64Array.from(scored.flatMap(({ scores }) => Array.from(scores))),
      ),
    );
  return { benchmark, rows: rows.length, threshold, shapes };
}

export async function runP1(opts: P1Options, ctx: RunContext): Promise<P1Run> {
  const mmlu = await readDataset(dataPath(ctx.dataDir, 'mmlu'));
  const embedder = await opts.pool.get(opts.recipe.embedder);
  const { model, rows } = await trainP1(mmlu, opts, ctx);
  const tests: Array<{ benchmark: string; ds: Dataset; idx: number[] }> = [];
  if (opts.testFiles !== undefined && opts.testFiles.length > 0) {
    for (const f of opts.testFiles) {
      const ds = await readDataset(f);
      requireModels(ds, [P1_STRONG, P1_WEAK]);
      tests.push({ benchmark: f.split('/').pop() ?? f, ds, idx: range(ds.rows.length) });
    }
  } else {
    tests.push({ benchmark: 'mmlu', ds: mmlu, idx: range(mmlu.rows.length).filter((i) => bucket(mmlu.rows[i]!.id) === 1) });
    for (const k of ['gsm8k', 'mtBench'] as const) {
      const ds = await readDataset(dataPath(ctx.dataDir, k));
      tests.push({ benchmark: k === 'mtBench' ? 'mt-bench' : k, ds, idx: range(ds.rows.length) });
    }
  }
  const benchmarks: P1Benchmark[] = [];
  const robustness: P1Robustness[] = [];
  const dump: P1Run['dump'] = [];
  for (const t of tests) {
    const X = await embedAll(embedder, t.ds, ctx);
    const pred = predictRows(model, X, t.idx);
    const scores = Float64Array.from(t.idx, (_, k) => scoreOf(pred, k));
    const strong = Float64Array.from(t.idx, (i) => t.ds.rows[i]!.scores[P1_STRONG]!);
    const weak = Float64Array.from(t.idx, (i) => t.ds.rows[i]!.scores[P1_WEAK]!);
    t.idx.forEach((i, k) => dump.push({ id: t.ds.rows[i]!.id, score: Number(scores[k]!.toFixed(6)) }));
    const sQ = mean(strong);
    const wQ = mean(weak);
    const rand = p1RandomCurve(sQ, wQ);
    benchmarks.push({
      benchmark: t.benchmark,
      file: t.ds.file,
      // The dump rounds scores to 6 decimals; evaluate those same numbers so the dump reproduces the table.
      router: p1Evaluate(
        Float64Array.from(scores, (s) => Number(s.toFixed(6))),
        strong,
        weak,
        opts.bootstrap ?? 200,
      ),
      oracle: p1Evaluate(p1OracleScores(strong, weak), strong, weak, 0),
      random: { apgr: apgr(rand, sQ, wQ), cpt50: cpt(rand, 0.5, sQ, wQ), cpt80: cpt(rand, 0.8, sQ, wQ) },
    });
    const r = opts.robustness;
    if (r !== undefined) robustness.push(await p1Robustness(model, embedder, t.benchmark, t.ds, X, t.idx, { ...opts, robustness: r }, ctx));
  }
  return {
    protocol: 'p1',
    recipe: opts.recipe.name,
    embedder: embedder.id,
    strong: P1_STRONG,
    weak: P1_WEAK,
    train: {
      file: mmlu.file,
      sha256: mmlu.sha256,
      rows,
      split: `mmlu bucket(id) == 0, contaminated rows dropped${AUGMENT_NOTE[opts.recipe.augment ?? 'none']}`,
    },
    benchmarks,
    dump,
    model,
    ...(opts.robustness === undefined ? {} : { robustness }),
  };
}
