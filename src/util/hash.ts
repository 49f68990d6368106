// Every non-cryptographic string hash of the project, in one place. The FNV-based ones are frozen into
// embedder ids and shipped artifacts; the seeded one drives the mock upstream's deterministic answers.
// Math.imul keeps everything in 32-bit integer arithmetic, which V8 compiles to plain machine ops.

export const FNV_OFFSET = 0x811c9dc5;
export const FNV_PRIME = 0x01000193;

/** murmur3's finaliser: spreads FNV's weak low/high bits so bucket and sign bits are independent. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A 53-bit key for a string (two independent 32-bit hashes in one pass), exact in a JS number.
 * With 10^4 cached entries the chance of any collision is about 10^8 / 2^54 ≈ 6e-9.
 */
export function hashText53(s: string, seed = 0): number {
  let a = (FNV_OFFSET ^ seed) >>> 0;
  let b = (0x9747b28c ^ Math.imul(seed, 0x5bd1e995) ^ s.length) >>> 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, FNV_PRIME);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  const hi = fmix32(a ^ s.length) & 0x1fffff; // 21 bits
  const lo = fmix32(b);
  return hi * 0x100000000 + lo;
}

/** A 32-bit string hash (used to salt ids and seeds). */
export function hashText32(s: string): number {
  let a = FNV_OFFSET;
  for (let i = 0; i < s.length; i++) a = Math.imul(a ^ s.charCodeAt(i), FNV_PRIME);
  return fmix32(a);
}

/** A seeded 32-bit hash (cyrb53's mixing, truncated), chainable: hashSeeded32(b, hashSeeded32(a)): cheap, well spread, stable across runs and platforms. */
export function hashSeeded32(text: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (h1 ^ h2) >>> 0;
}
