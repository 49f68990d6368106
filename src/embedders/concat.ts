import { z } from 'zod';
import { defineEmbedder, type Embedder, type EmbedderContext } from './types.js';
import { cacheSizeOption, isSparseEmbedder, isSyncEmbedder, noteVectorRewrite, rememberNonZeros, type SyncEmbedder } from './common.js';
import lexical, { LexicalOptions } from './lexical.js';
import useLite, { UseLiteOptions } from './use-lite.js';
import onnx, { OnnxOptions } from './onnx.js';
import remote, { RemoteOptions } from './remote.js';
import staticTable, { StaticOptions } from './static.js';
import shape, { ShapeOptions } from './shape.js';

// Several embedders side by side in one vector, so one artifact (which names one embedder) can read
// several signals, e.g. hashed n-grams plus a sentence encoder. Members are built through their plugins
// directly, not the registry: the registry lists this plugin, and importing it back would be a cycle.

const MemberOptions = z.discriminatedUnion('type', [
  LexicalOptions,
  UseLiteOptions,
  OnnxOptions,
  RemoteOptions,
  StaticOptions,
  ShapeOptions,
]);
type MemberOptions = z.infer<typeof MemberOptions>;

export const ConcatOptions = z
  .object({
    type: z.literal('concat'),
    members: z
      .array(MemberOptions)
      .min(2)
      .prefault([{ type: 'lexical', dim: 4096 }, { type: 'use-lite' }])
      .describe('Embedders whose vectors are joined, in this order (lexical, use-lite, onnx, remote, static, shape; not concat).'),
    weights: z
      .array(z.number().positive().finite())
      .optional()
      .describe("Relative share of each member in the vector's squared length (default: equal); one per member."),
    cache_size: cacheSizeOption,
  })
  .strict()
  .refine((o) => o.weights === undefined || o.weights.length === o.members.length, {
    message: 'weights must have one entry per member',
    path: ['weights'],
  });
export type ConcatOptions = z.infer<typeof ConcatOptions>;

export interface ConcatEmbedder extends Embedder {
  readonly members: readonly Embedder[];
  /** Raw weights, one per member (equal when none were given). */
  readonly weights: readonly number[];
  /** Joins one vector per member (each of that member's dim) into this embedder's vector. */
  combine(parts: readonly Float32Array[]): Float32Array;
}

export const isConcatEmbedder = (e: Embedder): e is ConcatEmbedder =>
  Array.isArray((e as Partial<ConcatEmbedder>).members) && typeof (e as Partial<ConcatEmbedder>).combine === 'function';

function createMember(o: MemberOptions, ctx: EmbedderContext): Promise<Embedder> {
  switch (o.type) {
    case 'lexical':
      return lexical.create(o, ctx);
    case 'use-lite':
      return useLite.create(o, ctx);
    case 'onnx':
      return onnx.create(o, ctx);
    case 'remote':
      return remote.create(o, ctx);
    case 'static':
      return staticTable.create(o, ctx);
    case 'shape':
      return shape.create(o, ctx);
  }
}

/**
 * Member i is scaled by sqrt(w_i / sum w): unit members give a unit result, and in a dot product each
 * member's cosine counts with weight w_i / sum w. The result is renormalised so that a member that
 * returns a zero vector (no features) still leaves a unit vector.
 *
 * One dense pass writes the scaled non-zeros, sums their squares (in index order, as normalizeInPlace
 * does, so the bits are the same) and lists where they are; the renormalisation then touches only those.
 * A lexical 4096 member is ~90% zeros: ~32 -> ~12 µs per 4352-d vector here (in isolation).
 */
let nonZero = new Int32Array(4096);
/** A member's vector, dense, or as its non-zeros in index order (SparseEmbedder.embedSparse). */
type Part = Float32Array | { n: number; idx: Int32Array; val: Float32Array };
/**
 * A concat's own output, rewritten by each call (EmbedderContext.reuseVectors): `n` non-zeros at `nz`.
 * Why: a fresh 66 KB vector per prompt cost `expert` 10-20% of its CPU on a scoring thread, most of it in
 * the scavenges V8 starts for that much external memory (bench/shipped-decisions.ts --thread).
 */
export interface ConcatBuffer {
  readonly out: Float32Array;
  readonly nz: Int32Array;
  n: number;
}
export const concatBuffer = (dim: number): ConcatBuffer => ({ out: new Float32Array(dim), nz: new Int32Array(dim), n: 0 });

export function combineVectors(
  parts: readonly Part[],
  dims: readonly number[],
  weights: readonly number[],
  into?: ConcatBuffer,
): Float32Array {
  let total = 0;
  let size = 0;
  for (let i = 0; i < dims.length; i++) {
    total += weights[i]!;
    size += dims[i]!;
    const p = parts[i]!;
    // Checked before anything is written: a reused buffer must not be left half rewritten.
    if (p instanceof Float32Array && p.length !== dims[i])
      throw new Error(`concat member ${i} gave a ${p.length}-d vector, expected ${dims[i]}`);
  }
  let out: Float32Array;
  let nz: Int32Array;
  if (into === undefined) {
    out = new Float32Array(size);
    if (nonZero.length < size) nonZero = new Int32Array(size);
    nz = nonZero;
  } else {
    if (into.out.length !== size) throw new Error(`concat buffer holds ${into.out.length} values, expected ${size}`);
    ({ out, nz } = into);
    noteVectorRewrite();
    // Back to all zeros: only the last vector's listed non-zeros were not.
    for (let j = 0; j < into.n; j++) out[nz[j]!] = 0;
    into.n = 0;
  }
  let n = 0;
  let ss = 0;
  let at = 0;
  let hasSparse = false;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    const d = dims[i]!;
    const s = Math.sqrt(weights[i]! / total);
    if (!(p instanceof Float32Array)) {
      hasSparse = true;
      // The same values in the same order as the dense loop below, without walking the zeros.
      const { idx, val } = p;
      for (let j = 0; j < p.n; j++) {
        const x = val[j]!;
        if (x === 0) continue;
        const y = Math.fround(x * s);
        const k = at + idx[j]!;
        out[k] = y;
        if (y !== 0) {
          ss += y * y;
          nz[n++] = k;
        }
      }
      at += d;
      continue;
    }
    for (let k = 0; k < d; k++) {
      const x = p[k]!;
      if (x === 0) continue; // `out` starts at zero
      const y = Math.fround(x * s);
      out[at + k] = y;
      if (y !== 0) {
        ss += y * y;
        nz[n++] = at + k;
      }
    }
    at += d;
  }
  if (ss > 0 && Number.isFinite(ss)) {
    const inv = 1 / Math.sqrt(ss);
    for (let j = 0; j < n; j++) {
      const i = nz[j]!;
      out[i] = out[i]! * inv;
    }
  }
  if (into !== undefined) {
    into.n = n;
    // A view, not a copy: the buffer's list is rewritten with it.
    if (hasSparse) rememberNonZeros(out, nz.subarray(0, n));
  } else if (hasSparse) rememberNonZeros(out, nz.slice(0, n));
  return out;
}

/** `m` with a one-entry memo: the same text twice in a row is embedded once (vectors are shared, never mutated). */
function rememberLast(m: SyncEmbedder): SyncEmbedder {
  let lastText: string | null = null;
  let lastVec: Float32Array | null = null;
  const embedSync = (text: string): Float32Array => {
    if (text !== lastText || lastVec === null) {
      lastVec = m.embedSync(text);
      lastText = text;
    }
    return lastVec;
  };
  return {
    id: m.id,
    dim: m.dim,
    embedSync,
    embed: async (text, signal) => {
      signal?.throwIfAborted();
      return embedSync(text);
    },
    embedMany: (texts, onProgress) => m.embedMany(texts, onProgress),
    close: () => {
      lastText = null;
      lastVec = null;
      return m.close();
    },
  };
}

export async function createConcatEmbedder(o: ConcatOptions, ctx: EmbedderContext): Promise<ConcatEmbedder> {
  const members: Embedder[] = [];
  try {
    // Members always hand out vectors of their own: a guard on one member keeps its vector past the concat's.
    for (const m of o.members) members.push(await createMember(m, { resolvePath: ctx.resolvePath }));
  } catch (e) {
    await Promise.allSettled(members.map((m) => m.close()));
    throw e;
  }
  // A guard on one member (routers/compile.ts) embeds the prompt with that member before the policy's
  // vector is made; remembering each on-thread member's last text and vector lets the concat reuse it.
  for (let i = 0; i < members.length; i++) {
    const m = members[i]!;
    if (isSyncEmbedder(m) && !isSparseEmbedder(m)) members[i] = rememberLast(m);
  }
  const weights = o.weights ?? o.members.map(() => 1);
  const dims = members.map((m) => m.dim);
  const combine = (parts: readonly Float32Array[]): Float32Array => combineVectors(parts, dims, weights);
  // Members that all compute on this thread (lexical, static) make a concat that does too: no promise per member.
  const syncMembers = members.every(isSyncEmbedder) ? (members as SyncEmbedder[]) : null;
  // A sparse member (lexical) hands over its non-zeros only: no dense 4096-wide array per prompt.
  const parts = syncMembers?.map((m): ((text: string) => Part) => (isSparseEmbedder(m) ? (t) => m.embedSparse(t) : (t) => m.embedSync(t)));
  // Only prompts embedded one at a time (embed / embedSync) write into it; embedMany's vectors are kept.
  const reused = parts !== undefined && ctx.reuseVectors === true ? concatBuffer(dims.reduce((s, d) => s + d, 0)) : undefined;
  const embedSync =
    parts === undefined
      ? undefined
      : {
          embedSync: (text: string): Float32Array =>
            combineVectors(
              parts.map((f) => f(text)),
              dims,
              weights,
              reused,
            ),
        };
  return {
    ...embedSync,
    id: `concat/v1/(${members.map((m) => m.id).join('+')})/w${weights.join(',')}`,
    dim: dims.reduce((s, d) => s + d, 0),
    members,
    weights,
    combine,
    embed: async (text, signal) => {
      if (embedSync === undefined) return combine(await Promise.all(members.map((m) => m.embed(text, signal))));
      signal?.throwIfAborted();
      return embedSync.embedSync(text);
    },
    async embedMany(texts, onProgress) {
      // Progress is that of the slowest member.
      const done = members.map(() => 0);
      const per = await Promise.all(
        members.map((m, i) =>
          m.embedMany(
            texts,
            onProgress === undefined
              ? undefined
              : (n) => {
                  done[i] = n;
                  onProgress(Math.min(...done));
                },
          ),
        ),
      );
      return texts.map((_, r) => combine(per.map((vs) => vs[r]!)));
    },
    close: async () => {
      await Promise.all(members.map((m) => m.close()));
    },
  };
}

export default defineEmbedder({
  type: 'concat',
  options: ConcatOptions,
  create: (opts, ctx) => createConcatEmbedder(opts, ctx),
});
