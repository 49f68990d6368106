// Router artifacts on disk: a folder with manifest.json plus little-endian Float32 data or model.onnx.
// Everything that can be wrong with an artifact is checked here, at load, so a bad folder is a clear
// config error and never a silently wrong route.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import type { Embedder } from '../embedders/types.js';
import { E } from '../errors.js';

export const ArtifactManifest = z.object({
  format: z.enum(['knn', 'mlp']),
  version: z.literal(1),
  embedder: z.object({ id: z.string(), dim: z.number().int() }),
  /** Model names in column order of scores / MLP outputs. */
  models: z.array(z.string()).min(1),
  /** Optional class labels for a category head (guard / domain classifier). */
  labels: z.array(z.string()).optional(),
  trained_on: z.object({
    file: z.string(),
    sha256: z.string(),
    split: z.string(),
    seed: z.number().int(),
    rows: z.number().int(),
  }),
  guard: z.object({ kind: z.enum(['knn_distance', 'max_prob']), threshold: z.number(), calibration: z.string() }).optional(),
  metrics: z.record(z.string(), z.number()).default({}),
  command: z.string(),
  created_at: z.string(),
});
export type ArtifactManifest = z.infer<typeof ArtifactManifest>;
/** What trainers pass in: the manifest minus what the writer fills itself. */
export type ManifestInput = Omit<ArtifactManifest, 'format' | 'version'>;

export const MANIFEST_FILE = 'manifest.json';
export const VECTORS_FILE = 'vectors.f32';
export const SCORES_FILE = 'scores.f32';
export const ONNX_FILE = 'model.onnx';
export const HNSW_FILE = 'index.hnsw';

/** A problem with an artifact folder: which folder, which field or file, what was expected. */
export class ArtifactError extends Error {
  constructor(
    readonly dir: string,
    readonly field: string | null,
    reason: string,
    opts?: { cause?: unknown },
  ) {
    super(`router artifact ${dir}${field === null ? '' : ` (${field})`}: ${reason}`, opts);
    this.name = 'ArtifactError';
  }
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

export async function readManifest(dir: string): Promise<ArtifactManifest> {
  const file = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ArtifactError(
      dir,
      MANIFEST_FILE,
      isMissing(err) ? 'no manifest.json here; is this a router artifact folder built by `signalman train`?' : String(err),
      { cause: err },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ArtifactError(dir, MANIFEST_FILE, `not valid JSON (${(err as Error).message})`, { cause: err });
  }
  const parsed = ArtifactManifest.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.length === 0 ? MANIFEST_FILE : issue.path.join('.');
    throw new ArtifactError(dir, field, issue.message);
  }
  const m = parsed.data;
  if (m.embedder.dim < 1) throw new ArtifactError(dir, 'embedder.dim', `must be at least 1, got ${m.embedder.dim}`);
  if (new Set(m.models).size !== m.models.length) {
    throw new ArtifactError(dir, 'models', `model names must be unique, got ${JSON.stringify(m.models)}`);
  }
  return m;
}

/** Writes via a temporary file and rename, so a reader never sees half a manifest. */
export async function writeManifest(dir: string, m: ArtifactManifest): Promise<void> {
  const checked = ArtifactManifest.parse(m);
  await mkdir(dir, { recursive: true });
  const file = join(dir, MANIFEST_FILE);
  await writeFile(`${file}.tmp`, `${JSON.stringify(checked, null, 2)}\n`);
  await rename(`${file}.tmp`, file);
}

/** Writes rows of equal length as one little-endian Float32 file (the data format of every artifact). */
export async function writeF32(file: string, rows: readonly Float32Array[], width: number, what: string): Promise<void> {
  assertLittleEndian();
  const out = new Float32Array(rows.length * width);
  rows.forEach((r, i) => {
    if (r.length !== width) throw new Error(`${what} row ${i} has length ${r.length}, expected ${width}`);
    out.set(r, i * width);
  });
  await writeFile(file, new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
}

/**
 * Reads a Float32 file that must hold exactly `expected` finite values. `allowNaN`: NaN is allowed too
 * (kNN scores use it for "this row did not score this model"); infinities never are.
 */
export async function readF32(dir: string, name: string, expected: number, opts: { allowNaN?: boolean } = {}): Promise<Float32Array> {
  assertLittleEndian();
  let buf: Buffer;
  try {
    buf = await readFile(join(dir, name));
  } catch (err) {
    throw new ArtifactError(dir, name, isMissing(err) ? 'file is missing' : String(err), { cause: err });
  }
  if (buf.byteLength !== expected * 4) {
    throw new ArtifactError(
      dir,
      name,
      `expected ${expected} float32 values (${expected * 4} bytes) from the manifest, found ${buf.byteLength} bytes; the artifact is truncated or does not match its manifest`,
    );
  }
  // Copy into a fresh, aligned buffer: a Buffer's byteOffset need not be a multiple of 4.
  const data = new Float32Array(expected);
  new Uint8Array(data.buffer).set(buf);
  const allowNaN = opts.allowNaN === true;
  for (let i = 0; i < data.length; i++) {
    const x = data[i]!;
    if (!Number.isFinite(x) && !(allowNaN && Number.isNaN(x))) throw new ArtifactError(dir, name, `value ${i} is not a finite number`);
  }
  return data;
}

function assertLittleEndian(): void {
  if (endianness() !== 'LE') throw new Error('router artifacts are little-endian Float32; this machine is big-endian');
}

/**
 * Checks an artifact against the policy that uses it and maps each candidate backend to its column.
 * Refuses, naming both sides, when the embedder differs or a candidate's `as` is not a trained model.
 */
export function bindArtifact(
  dir: string,
  m: ArtifactManifest,
  embedder: Pick<Embedder, 'id' | 'dim'> | null,
  candidates: ReadonlyArray<{ backend: string; as: string }>,
  opts: { needModels: boolean } = { needModels: true },
): Map<string, number> {
  if (embedder === null) {
    throw new ArtifactError(
      dir,
      'embedder',
      `was trained with embedder '${m.embedder.id}' (dim ${m.embedder.dim}), but the policy declares no embedder`,
    );
  }
  if (embedder.id !== m.embedder.id || embedder.dim !== m.embedder.dim) {
    throw new ArtifactError(
      dir,
      'embedder',
      `was trained with embedder '${m.embedder.id}' (dim ${m.embedder.dim}), but the policy's embedder is '${embedder.id}' (dim ${embedder.dim}); use the same embedder settings or retrain`,
    );
  }
  const columns = new Map<string, number>();
  if (!opts.needModels) return columns;
  for (const c of candidates) {
    const col = m.models.indexOf(c.as);
    if (col < 0) {
      throw new ArtifactError(
        dir,
        'models',
        `candidate backend '${c.backend}' is known as '${c.as}', which this artifact was not trained on; trained models: ${m.models.join(', ')} (set the candidate's \`as\` to one of them)`,
      );
    }
    columns.set(c.backend, col);
  }
  return columns;
}

/** A candidate the policy did not bind at load is a routing bug: fail loudly rather than guess. */
export function columnOf(columns: ReadonlyMap<string, number>, backend: string, router: string): number {
  const col = columns.get(backend);
  if (col === undefined) {
    throw E.routingFailed(`router '${router}' was asked to score '${backend}', which is not one of the candidates it was loaded with`);
  }
  return col;
}

/** A request-time embedding that does not fit the artifact is a wiring bug: refuse, never guess. */
export function checkEmbedding(q: Float32Array | null, dim: number, router: string): Float32Array {
  if (q === null) throw E.routingFailed(`router '${router}' needs an embedding, but the query has none; give the policy an embedder`);
  if (q.length !== dim) throw E.routingFailed(`router '${router}' expects a ${dim}-dimensional embedding, got ${q.length}`);
  return q;
}
