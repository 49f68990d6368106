import type { Embedder } from './types.js';
import { hashText53 } from '../util/hash.js';
import { Lru } from '../util/lru.js';
import { abortReason, isSyncEmbedder } from './common.js';

// Stage 5 of the request path. One cache per embedder instance, so the key needs only the text:
// a 53-bit hash (see hash.ts for the collision odds), which keeps prompts themselves out of memory.
// Concurrent misses for one text share a single embed() call; it is cancelled only when every
// caller waiting on it has aborted.

export interface CachedEmbedding {
  vec: Float32Array;
  /** True when served from the cache (or joined an embed already in flight for the same text). */
  hit: boolean;
}

export interface EmbedCacheStats {
  size: number;
  capacity: number;
  hits: number;
  misses: number;
}

interface Pending {
  promise: Promise<Float32Array>;
  waiters: number;
  controller: AbortController;
}

/**
 * A request's cancellation as embedCached takes it: an AbortSignal, or a flag whose `signal` is made on
 * first read (upstream/cancel.ts), read here only when an embed runs off this thread: making an
 * AbortController for every routed request cost ~2% of the gateway's CPU.
 */
export type CancelSource = AbortSignal | { readonly aborted: boolean; readonly signal: AbortSignal };

const signalOf = (c: CancelSource | undefined): AbortSignal | undefined => (c === undefined || c instanceof AbortSignal ? c : c.signal);

export interface CachedEmbedder extends Embedder {
  /** The vector for `text`, and whether it came from the cache. Vectors are shared: do not mutate them. */
  embedCached(text: string, cancel?: CancelSource): Promise<CachedEmbedding>;
  stats(): EmbedCacheStats;
  /** The wrapped embedder. */
  readonly inner: Embedder;
}

/** Wraps `inner` in an LRU of `capacity` vectors (0 = no caching, but the same interface). */
export function withEmbedCache(inner: Embedder, capacity: number): CachedEmbedder {
  if (!Number.isInteger(capacity) || capacity < 0)
    throw new RangeError(`embed cache capacity must be a non-negative integer, got ${capacity}`);
  const lru = new Lru<number, Float32Array>(capacity);
  const pending = new Map<number, Pending>();
  let hits = 0;
  let misses = 0;
  // An embedder that computes on this thread finishes before any other request runs, so there is nothing
  // in flight to share or cancel: a miss is one call (no AbortController, pending entry or extra promise).
  const sync = isSyncEmbedder(inner) ? inner : null;

  const remember = (key: number, vec: Float32Array): void => lru.set(key, vec);

  const join = (p: Pending, key: number, signal: AbortSignal | undefined): Promise<Float32Array> => {
    p.waiters++;
    if (!signal) return p.promise;
    if (signal.aborted) {
      leave(p, key);
      return Promise.reject(abortReason(signal));
    }
    return new Promise<Float32Array>((resolve, reject) => {
      const onAbort = (): void => {
        leave(p, key);
        reject(abortReason(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      p.promise.then(
        (v) => {
          signal.removeEventListener('abort', onAbort);
          resolve(v);
        },
        (e: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      );
    });
  };

  const leave = (p: Pending, key: number): void => {
    if (--p.waiters > 0) return;
    if (pending.get(key) === p) pending.delete(key);
    p.controller.abort();
  };

  const embedCached = async (text: string, cancel?: CancelSource): Promise<CachedEmbedding> => {
    if (cancel?.aborted === true) signalOf(cancel)!.throwIfAborted();
    const key = hashText53(text);
    const vec = lru.get(key);
    if (vec !== undefined) {
      hits++;
      return { vec, hit: true };
    }
    const inflight = pending.get(key);
    if (inflight !== undefined) {
      hits++;
      return { vec: await join(inflight, key, signalOf(cancel)), hit: true };
    }
    misses++;
    if (sync !== null) {
      const v = sync.embedSync(text);
      remember(key, v);
      return { vec: v, hit: false };
    }
    const controller = new AbortController();
    const p: Pending = { promise: inner.embed(text, controller.signal), waiters: 0, controller };
    pending.set(key, p);
    p.promise.then(
      (v) => {
        if (pending.get(key) === p) pending.delete(key);
        remember(key, v);
      },
      () => {
        if (pending.get(key) === p) pending.delete(key);
      },
    );
    return { vec: await join(p, key, signalOf(cancel)), hit: false };
  };

  return {
    id: inner.id,
    dim: inner.dim,
    inner,
    embedCached,
    embed: async (text, signal) => (await embedCached(text, signal)).vec,
    // Bulk work (training, eval) goes straight through: it would only evict the serving set.
    embedMany: (texts, onProgress) => inner.embedMany(texts, onProgress),
    stats: () => ({ size: lru.size, capacity, hits, misses }),
    close: async () => {
      lru.clear();
      pending.clear();
      await inner.close();
    },
  };
}
