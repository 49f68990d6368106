// Redis keys and stream entries of online learning, under the telemetry key prefix (default `signalman:`).
// Kept here rather than in telemetry/redis-keys.ts: they belong to the runtime's learning, not to records.
//
//   {p}emb:<request id>          string  the request's embedding, little-endian Float32 bytes; EX embedding_ttl_s
//   {p}emb-pending:<policy>      zset    request ids with a kept embedding, score = ms; trimmed to max_pending
//                                        (the evicted ids' emb keys are deleted) and to embedding_ttl_s
//   {p}learn:<policy>            stream  learned rows, XADD MAXLEN ~ max_rows; fields req, backend, score, emb
//
// In a Redis Cluster the prefix needs a hash tag (as telemetry already requires), since one XREAD tails
// every policy's stream and one script trims an index and deletes embedding keys.
import type { LiveRow } from '../routers/types.js';

export interface LearnKeys {
  emb(requestId: string): string;
  pending(policy: string): string;
  rows(policy: string): string;
}

export const learnKeys = (prefix: string): LearnKeys => ({
  emb: (id) => `${prefix}emb:${id}`,
  pending: (policy) => `${prefix}emb-pending:${policy}`,
  rows: (policy) => `${prefix}learn:${policy}`,
});

/** A learned row and its position: a stream id (`<ms>-<seq>`) with Redis, a counter without. */
export interface LearnedEntry {
  id: string;
  row: LiveRow;
}

/** Embedding bytes as stored (a copy: the caller's vector may be a shared cache entry). */
export const embeddingBytes = (e: Float32Array): Buffer => Buffer.from(new Uint8Array(e.buffer, e.byteOffset, e.byteLength));

/** Stored bytes back to a vector, or null when they cannot be one. */
export function bytesEmbedding(b: Buffer): Float32Array | null {
  if (b.byteLength === 0 || b.byteLength % 4 !== 0) return null;
  const out = new Float32Array(b.byteLength / 4);
  new Uint8Array(out.buffer).set(b); // aligned copy: a Buffer's offset need not be a multiple of 4
  return out;
}

/** The fields of one learn-stream entry. */
export const entryFields = (requestId: string, backend: string, score: number, embedding: Buffer): Array<string | Buffer> => [
  'req',
  requestId,
  'backend',
  backend,
  'score',
  String(score),
  'emb',
  embedding,
];

/** A stream entry as XRANGE/XREAD return it (Buffer replies), or null when it is not a usable row. */
export function decodeEntry(id: Buffer, fields: Buffer[]): LearnedEntry | null {
  const f = new Map<string, Buffer>();
  for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!.toString(), fields[i + 1]!);
  const backend = f.get('backend')?.toString();
  const score = Number(f.get('score')?.toString());
  const emb = f.get('emb');
  const embedding = emb === undefined ? null : bytesEmbedding(emb);
  if (backend === undefined || !(score >= 0 && score <= 1) || embedding === null) return null;
  return { id: id.toString(), row: { embedding, scores: new Map([[backend, score]]) } };
}

/** Orders stream ids `<ms>-<seq>` (numbers, not strings: '9-0' < '10-0'). */
export function compareIds(a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am - bm || as - bs;
}
