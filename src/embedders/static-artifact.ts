import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import type { Vocabulary } from './sp-tokenizer.js';

// The static embedder's artifact folder: manifest.json, table.bin (one row per vocabulary piece, the
// piece's weight already folded in), vocab.json (the teacher's SentencePiece pieces and scores, copied
// byte for byte) and optionally projection.bin (the PCA basis back to the teacher's space, only for
// measuring agreement). Everything is checked against the manifest at load: a table trained for
// another vocabulary or damaged on disk must never embed silently.

export const STATIC_FORMAT = 'signalman-static-embedder/v1';
const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 as 64 lowercase hex digits');
const Count = z.number().int().nonnegative();

const Agreement = z.object({
  n: Count,
  float: z.number(),
  quantised: z.number(),
});

export const StaticManifest = z.object({
  format: z.literal(STATIC_FORMAT),
  dim: z.number().int().min(1).max(4096),
  rows: z.number().int().min(1),
  table: z.object({
    file: z.literal('table.bin'),
    // int8-row: rows x float32 scales (little-endian), then rows x dim int8; f32: rows x dim float32.
    encoding: z.enum(['int8-row', 'f32']),
    bytes: Count,
    sha256: Sha256,
  }),
  vocabulary: z.object({
    file: z.literal('vocab.json'),
    source: z.string(),
    sha256: Sha256,
    pieces: Count,
    reserved: Count,
  }),
  projection: z
    .object({ file: z.literal('projection.bin'), teacher_dim: z.number().int().min(1), bytes: Count, sha256: Sha256 })
    .nullable(),
  teacher: z.object({ id: z.string(), package: z.string(), version: z.string() }),
  tokenizer: z.literal('sentencepiece-unigram/nfkc/teacher-viterbi'),
  build: z.object({
    seed: z.number().int(),
    command: z.string(),
    data: z.array(z.object({ file: z.string(), sha256: z.string(), rows: Count, rule: z.string() })),
    pca: z.object({ fitted_on: z.string(), dims: z.number().int(), captured_energy_val: z.number() }),
    weighting: z.object({ kind: z.string(), a: z.number().nullable(), counted_on_tokens: Count }),
    /** A ridge-fitted linear map of pooled vectors onto the teacher's, folded into the rows. */
    linear_map: z.boolean(),
    /** Extra fine-tuning pairs made from the train texts themselves, or null. */
    extra_pairs: z.string().nullable(),
    finetune: z
      .object({
        epochs_run: Count,
        best_epoch: Count,
        lr: z.number(),
        l2: z.number(),
        batch: Count,
        fit_rows: Count,
        val_rows: Count,
        stopped: z.string(),
      })
      .nullable(),
  }),
  /** Mean cosine with the teacher's vectors in the teacher's space, per held-out set. */
  agreement: z.record(z.string(), Agreement),
});
export type StaticManifest = z.infer<typeof StaticManifest>;

export interface StaticTable {
  manifest: StaticManifest;
  dim: number;
  rows: number;
  /** Per-row scale (int8-row), or null for f32. */
  scales: Float32Array | null;
  /** rows x dim: int8 codes, or float32 values. */
  data: Int8Array | Float32Array;
  vocab: Vocabulary;
  /** dim x teacher_dim, row-major, when the artifact ships one. */
  projection: Float32Array | null;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** int8 per row: each row scaled so its largest magnitude is 127 (keeps small rows precise). */
export function quantizeRows(table: Float32Array, dim: number): { scales: Float32Array; codes: Int8Array } {
  const rows = table.length / dim;
  const scales = new Float32Array(rows);
  const codes = new Int8Array(table.length);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let k = 0; k < dim; k++) m = Math.max(m, Math.abs(table[r * dim + k]!));
    const s = m > 0 ? m / 127 : 0;
    scales[r] = s;
    if (s > 0) for (let k = 0; k < dim; k++) codes[r * dim + k] = Math.round(table[r * dim + k]! / s);
  }
  return { scales, codes };
}

/** The float rows an int8-row table stands for (to measure what quantising costs). */
export function dequantizeRows(scales: Float32Array, codes: Int8Array, dim: number): Float32Array {
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = codes[i]! * scales[(i / dim) | 0]!;
  return out;
}

const bytesOf = (a: Float32Array | Int8Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function encodeTable(table: Float32Array, dim: number, encoding: 'int8-row' | 'f32'): Uint8Array {
  if (encoding === 'f32') return bytesOf(table);
  const { scales, codes } = quantizeRows(table, dim);
  const out = new Uint8Array(scales.byteLength + codes.byteLength);
  out.set(bytesOf(scales), 0);
  out.set(bytesOf(codes), scales.byteLength);
  return out;
}

export interface StaticArtifactInput {
  /** rows x dim float rows (weights folded in). */
  table: Float32Array;
  dim: number;
  encoding: 'int8-row' | 'f32';
  /** The teacher's vocab.json, byte for byte. */
  vocabBytes: Uint8Array;
  vocabSource: string;
  reserved: number;
  projection: { data: Float32Array; teacherDim: number } | null;
  teacher: StaticManifest['teacher'];
  build: StaticManifest['build'];
  agreement: StaticManifest['agreement'];
}

/** Writes the folder; identical inputs give identical bytes (no timestamps, fixed key order). */
export async function writeStaticArtifact(dir: string, a: StaticArtifactInput): Promise<StaticManifest> {
  const rows = a.table.length / a.dim;
  if (!Number.isInteger(rows)) throw new Error(`table of ${a.table.length} numbers is not a whole number of ${a.dim}-d rows`);
  const table = encodeTable(a.table, a.dim, a.encoding);
  const proj = a.projection === null ? null : bytesOf(a.projection.data);
  const manifest: StaticManifest = {
    format: STATIC_FORMAT,
    dim: a.dim,
    rows,
    table: { file: 'table.bin', encoding: a.encoding, bytes: table.byteLength, sha256: sha256(table) },
    vocabulary: { file: 'vocab.json', source: a.vocabSource, sha256: sha256(a.vocabBytes), pieces: rows, reserved: a.reserved },
    projection:
      a.projection === null || proj === null
        ? null
        : { file: 'projection.bin', teacher_dim: a.projection.teacherDim, bytes: proj.byteLength, sha256: sha256(proj) },
    teacher: a.teacher,
    tokenizer: 'sentencepiece-unigram/nfkc/teacher-viterbi',
    build: a.build,
    agreement: a.agreement,
  };
  StaticManifest.parse(manifest);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'table.bin'), table);
  await writeFile(join(dir, 'vocab.json'), a.vocabBytes);
  if (proj !== null) await writeFile(join(dir, 'projection.bin'), proj);
  await writeFile(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

async function readChecked(dir: string, file: string, bytes: number | null, want: string): Promise<Buffer> {
  const where = join(dir, file);
  let buf: Buffer;
  try {
    buf = await readFile(where);
  } catch (e) {
    throw new Error(`${where}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)}); rebuild it with signalman distill`, {
      cause: e,
    });
  }
  if (bytes !== null && buf.byteLength !== bytes)
    throw new Error(`${where}: ${buf.byteLength} bytes, but manifest.json says ${bytes}; the file is truncated or from another build`);
  const got = sha256(buf);
  if (got !== want) throw new Error(`${where}: sha256 ${got} does not match manifest.json's ${want}; the file was changed or damaged`);
  return buf;
}

/** Copies a Buffer's bytes into a fresh aligned typed array (a Buffer may sit at any pool offset). */
function f32Of(buf: Buffer, offset: number, count: number): Float32Array {
  const out = new Float32Array(count);
  new Uint8Array(out.buffer).set(buf.subarray(offset, offset + count * 4));
  return out;
}

const VocabFile = z.array(z.tuple([z.string(), z.number().nullable()]));

/** Reads and checks an artifact folder; every refusal names the file and what is wrong with it. */
export async function loadStaticArtifact(dir: string): Promise<StaticTable> {
  if (endianness() !== 'LE') throw new Error(`${dir}: static tables are little-endian; this machine is big-endian`);
  const mpath = join(dir, 'manifest.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(mpath, 'utf8'));
  } catch (e) {
    throw new Error(`${mpath}: cannot read (${(e as Error).message}); build the artifact with signalman distill`, { cause: e });
  }
  const parsed = StaticManifest.safeParse(raw);
  if (!parsed.success)
    throw new Error(`${mpath}: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'manifest'}: ${i.message}`).join('; ')}`);
  const m = parsed.data;
  const { rows, dim } = m;
  const expected = m.table.encoding === 'f32' ? rows * dim * 4 : rows * 4 + rows * dim;
  if (m.table.bytes !== expected)
    throw new Error(
      `${mpath}: table.bytes is ${m.table.bytes}, but ${rows} rows x ${dim} dims as ${m.table.encoding} take ${expected}; the manifest is inconsistent`,
    );
  const tbuf = await readChecked(dir, m.table.file, expected, m.table.sha256);
  const vbuf = await readChecked(dir, m.vocabulary.file, null, m.vocabulary.sha256);
  const vparsed = VocabFile.safeParse(JSON.parse(vbuf.toString('utf8')));
  if (!vparsed.success) throw new Error(`${join(dir, m.vocabulary.file)}: not a list of [piece, score] pairs`);
  const vocab = vparsed.data;
  if (vocab.length !== rows)
    throw new Error(
      `${join(dir, m.vocabulary.file)}: ${vocab.length} pieces, but the table has ${rows} rows (manifest rows); they must match`,
    );
  let projection: Float32Array | null = null;
  if (m.projection !== null) {
    const want = dim * m.projection.teacher_dim * 4;
    const pbuf = await readChecked(dir, m.projection.file, want, m.projection.sha256);
    projection = f32Of(pbuf, 0, dim * m.projection.teacher_dim);
  }
  if (m.table.encoding === 'f32') return { manifest: m, dim, rows, scales: null, data: f32Of(tbuf, 0, rows * dim), vocab, projection };
  const scales = f32Of(tbuf, 0, rows);
  const codes = new Int8Array(rows * dim);
  new Uint8Array(codes.buffer).set(tbuf.subarray(rows * 4));
  return { manifest: m, dim, rows, scales, data: codes, vocab, projection };
}
