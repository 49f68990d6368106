import { z } from 'zod';
import type { Embedder } from './types.js';

// Options and helpers every embedder plugin shares. Option fields here do not change vectors,
// except `max_chars`, which each plugin writes into its id.

/** Size of the LRU of embeddings kept in front of this embedder (read by the config compiler, see cache.ts). */
export const cacheSizeOption = z
  .number()
  .int()
  .min(0)
  .max(1_000_000)
  .optional()
  .describe(
    "Entries in the LRU cache of embeddings in front of this embedder, keyed by a hash of the text; 0 disables it. Default: as many vectors as fit in 16 MiB, at most 10,000 (a 4352-d concat vector is 17 KB). Kept on the event loop only: scoring threads (server.routing_threads) see a text after the policy's score cache missed it, and keep no vectors.",
  );

/**
 * The embed cache's default capacity: a memory budget, not a count. 10,000 entries of a 4352-d concat
 * vector held 174 MB on every thread that scores (the event loop and each scoring thread).
 */
export const CACHE_BUDGET_BYTES = 16 * 2 ** 20;
export const defaultCacheEntries = (dim: number): number => Math.max(1, Math.min(10_000, Math.floor(CACHE_BUDGET_BYTES / (4 * dim))));

/** Safety limit on text length inside the embedder (the policy's `prompt.max_chars` usually cuts earlier). */
export const maxCharsOption = (def: number) =>
  z
    .number()
    .int()
    .min(16)
    .max(1_000_000)
    .default(def)
    .describe('Longer texts are cut (head and tail kept, surrogate pairs intact) before embedding; part of the embedder id.');

/**
 * Divides `v` by its L2 norm in place; a zero vector is left as it is and false is returned. Zeros are
 * skipped: adding +0 to the sum or scaling a zero changes nothing, so the result is bit for bit that of
 * the dense loop, and a mostly-zero vector (lexical 4096 inside a concat) no longer pays a 4-cycle add
 * chain per element (17 -> ~4 µs for a 4352-d concat vector here).
 */
export function normalizeInPlace(v: Float32Array): boolean {
  let s = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (x !== 0) s += x * x;
  }
  if (!(s > 0) || !Number.isFinite(s)) return false;
  const inv = 1 / Math.sqrt(s);
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (x !== 0) v[i] = x * inv;
  }
  return true;
}

/** The error an aborted embed() rejects with: the signal's reason when there is one. */
export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/**
 * Request-path texts allowed to wait for a worker-pool model. Past it, a request is refused at once with a
 * 503 `overloaded` instead of queueing into ever-growing latency (training's embedMany is not bounded).
 */
export const maxQueueOption = z
  .number()
  .int()
  .min(1)
  .max(100_000)
  .default(256)
  .describe('Most request texts waiting for the model; more are refused with 503 overloaded rather than queued.');

/** An embedder that computes on the calling thread (lexical, static): `embed` is `embedSync` behind a promise. */
export type SyncEmbedder = Embedder & { embedSync(text: string): Float32Array };

export const isSyncEmbedder = (e: Embedder): e is SyncEmbedder => typeof (e as Partial<SyncEmbedder>).embedSync === 'function';

/** An embedder whose vectors are mostly zeros can also give just the non-zeros, in index order. */
export interface SparseEmbedder {
  /** embedSync(text)'s non-zero entries: idx[0..n) ascending, val their values; valid until the next call. */
  embedSparse(text: string): { n: number; idx: Int32Array; val: Float32Array };
}

/**
 * Where a vector's non-zeros are, when whoever made it listed them (a concat of a sparse member): a router
 * reading the vector (mlp-plan.ts) then skips its own pass over the zeros. A vector is not mutated once
 * handed out, except by an embedder that rewrites its one buffer (below), which lists it again; weak keys,
 * so the list goes with the vector.
 */
const nonZeroLists = new WeakMap<Float32Array, Int32Array>();
export const rememberNonZeros = (v: Float32Array, idx: Int32Array): void => void nonZeroLists.set(v, idx);
export const knownNonZeros = (v: Float32Array): Int32Array | undefined => nonZeroLists.get(v);

/**
 * Embedders made with EmbedderContext.reuseVectors may write each vector over their last one. Each such
 * rewrite bumps this count (per thread), so a memo keyed by a vector's identity (routers/mlp.ts) holds only
 * while it is unchanged: within one decision, never from one to the next.
 */
let rewrites = 0;
export const vectorRewrites = (): number => rewrites;
export const noteVectorRewrite = (): void => {
  rewrites++;
};

export const isSparseEmbedder = (e: Embedder): e is Embedder & SparseEmbedder =>
  typeof (e as Partial<SparseEmbedder>).embedSparse === 'function';

/** Wraps a synchronous vectorizer as an Embedder; `progressEvery` paces embedMany's progress calls. */
export function syncEmbedder(v: { id: string; dim: number; vectorize(text: string): Float32Array }, progressEvery: number): SyncEmbedder {
  let closed = false;
  const embedSync = (text: string): Float32Array => {
    if (closed) throw new Error(`embedder ${v.id} is closed`);
    return v.vectorize(text);
  };
  return {
    id: v.id,
    dim: v.dim,
    embedSync,
    embed: async (text, signal) => {
      signal?.throwIfAborted();
      return embedSync(text);
    },
    embedMany: async (texts, onProgress) => {
      const out: Float32Array[] = [];
      for (let i = 0; i < texts.length; i++) {
        out.push(embedSync(texts[i]!));
        if (onProgress && ((i + 1) % progressEvery === 0 || i + 1 === texts.length)) onProgress(i + 1);
      }
      return out;
    },
    close: async () => {
      closed = true;
    },
  };
}
