import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { z } from 'zod';
import type { Embedder } from '../embedders/types.js';
import { isConcatEmbedder, type ConcatEmbedder } from '../embedders/concat.js';
import { type Dataset, rowText, sha256Hex } from './dataset.js';
import { startProgress } from './progress.js';

// Embedding a dataset with a slow embedder takes minutes, so the vectors are cached on disk, keyed by
// embedder id (which encodes every option that changes vectors) and the dataset file's sha256.
// Layout: <dir>/<key>.f32 (little-endian Float32, row-major, one row per clean dataset row, file
// order) and <key>.json describing it. A stale or damaged entry is recomputed, never trusted.

/** Bump when rowText() changes what is embedded for a row. */
export const TEXT_VERSION = 1;
export const DEFAULT_CACHE_DIR = join('.cache', 'embeddings');

/** Row-major n x dim matrix. */
export interface Matrix {
  rows: number;
  dim: number;
  data: Float32Array;
}

const CacheMeta = z.object({
  embedder: z.string(),
  dim: z.number().int().positive(),
  rows: z.number().int().nonnegative(),
  datasetSha256: z.string(),
  textVersion: z.number().int(),
});
type CacheMeta = z.infer<typeof CacheMeta>;

export const rowOf = (m: Matrix, i: number): Float32Array => m.data.subarray(i * m.dim, (i + 1) * m.dim);

/** A new matrix of the chosen rows of each part, in order (all parts of one width). */
export function joinRows(...parts: ReadonlyArray<readonly [Matrix, readonly number[]]>): Matrix {
  const dim = parts[0]?.[0].dim ?? 0;
  const rows = parts.reduce((s, [, idx]) => s + idx.length, 0);
  const data = new Float32Array(rows * dim);
  let at = 0;
  for (const [m, idx] of parts) {
    if (m.dim !== dim) throw new Error(`joinRows: widths differ (${m.dim} vs ${dim})`);
    for (const i of idx) data.set(rowOf(m, i), at++ * dim);
  }
  return { rows, dim, data };
}

export const cacheKey = (embedderId: string, datasetSha256: string): string => {
  const slug = embedderId.replace(/[^A-Za-z0-9.-]+/g, '_').slice(0, 60);
  return `${slug}--${sha256Hex(`${embedderId}\0${datasetSha256}\0${TEXT_VERSION}`).slice(0, 16)}`;
};

async function load(base: string, want: CacheMeta): Promise<Matrix | null> {
  try {
    const meta = CacheMeta.parse(JSON.parse(await readFile(`${base}.json`, 'utf8')));
    if (JSON.stringify(meta) !== JSON.stringify(want)) return null;
    const buf = await readFile(`${base}.f32`);
    if (buf.byteLength !== want.rows * want.dim * 4) return null;
    // Copy into a fresh, aligned buffer (a Buffer may sit at any offset of a shared pool).
    const data = new Float32Array(want.rows * want.dim);
    new Uint8Array(data.buffer).set(buf);
    return { rows: want.rows, dim: want.dim, data };
  } catch {
    return null;
  }
}

export interface EmbedDatasetOptions {
  /** Cache folder; null disables the cache. Default `.cache/embeddings` under the working directory. */
  cacheDir?: string | null;
  /** Progress bar label. */
  label?: string;
  progress?: boolean;
}

/** Vectors for every clean row of `ds`, in order, from the disk cache when it holds them. */
export async function embedDataset(embedder: Embedder, ds: Dataset, opts: EmbedDatasetOptions = {}): Promise<Matrix> {
  if (isConcatEmbedder(embedder)) return embedConcat(embedder, ds, opts);
  return embedTexts(
    embedder,
    ds.rows.map((r) => rowText(r)),
    ds.sha256,
    { ...opts, label: opts.label ?? `embed ${ds.file.split('/').pop() ?? ''}` },
  );
}

/**
 * Vectors for any list of texts, cached like a dataset's under `sourceSha256`, which must identify the
 * texts (e.g. the hash of the file they come from); distill embeds a vocabulary this way.
 */
export async function embedTexts(
  embedder: Embedder,
  texts: readonly string[],
  sourceSha256: string,
  opts: EmbedDatasetOptions = {},
): Promise<Matrix> {
  const dir = opts.cacheDir === undefined ? DEFAULT_CACHE_DIR : opts.cacheDir;
  const meta: CacheMeta = {
    embedder: embedder.id,
    dim: embedder.dim,
    rows: texts.length,
    datasetSha256: sourceSha256,
    textVersion: TEXT_VERSION,
  };
  const base = dir === null ? null : join(dir, cacheKey(embedder.id, sourceSha256));
  if (base !== null) {
    const hit = await load(base, meta);
    if (hit !== null) return hit;
  }
  const bar = startProgress(opts.label ?? 'embed', texts.length, opts.progress === undefined ? {} : { enabled: opts.progress });
  const data = new Float32Array(texts.length * embedder.dim);
  // Chunks keep memory flat and let the bar move with embedders that report no progress themselves.
  const CHUNK = 512;
  try {
    for (let start = 0; start < texts.length; start += CHUNK) {
      const part = texts.slice(start, start + CHUNK);
      const vecs = await embedder.embedMany(part, (done) => bar.update(start + done));
      if (vecs.length !== part.length) throw new Error(`embedder ${embedder.id} returned ${vecs.length} vectors for ${part.length} texts`);
      vecs.forEach((v, k) => {
        if (v.length !== embedder.dim) throw new Error(`embedder ${embedder.id} returned a ${v.length}-d vector, expected ${embedder.dim}`);
        data.set(v, (start + k) * embedder.dim);
      });
      bar.update(start + part.length);
    }
  } finally {
    bar.stop();
  }
  const m: Matrix = { rows: texts.length, dim: embedder.dim, data };
  if (base !== null && dir !== null) {
    await mkdir(dir, { recursive: true });
    // Write then rename, so a crash never leaves a half file under the final name; the temporary name is
    // this thread's own (eval's protocol threads may fill the same entry at once, the last rename wins).
    const tmp = `${base}.${process.pid}-${threadId}.tmp`;
    await writeFile(`${tmp}.f32`, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    await rename(`${tmp}.f32`, `${base}.f32`);
    await writeFile(`${tmp}.json`, JSON.stringify(meta));
    await rename(`${tmp}.json`, `${base}.json`);
  }
  return m;
}

/**
 * A concat embedder's rows are joined from its members' cached matrices: each member hits (or fills)
 * its own cache entry, and the joined matrix is not stored (cheap to rebuild, large on disk).
 */
async function embedConcat(embedder: ConcatEmbedder, ds: Dataset, opts: EmbedDatasetOptions): Promise<Matrix> {
  const parts: Matrix[] = [];
  for (const m of embedder.members)
    parts.push(await embedDataset(m, ds, { ...opts, ...(opts.label === undefined ? {} : { label: `${opts.label} [${m.id}]` }) }));
  const data = new Float32Array(ds.rows.length * embedder.dim);
  for (let i = 0; i < ds.rows.length; i++) data.set(embedder.combine(parts.map((p) => rowOf(p, i))), i * embedder.dim);
  return { rows: ds.rows.length, dim: embedder.dim, data };
}
