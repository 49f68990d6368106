// POST …/embeddings: deterministic unit vectors. Words are feature-hashed (each word adds ±1 at a few
// hashed positions), so texts that share words get similar vectors: a router trained on mock
// embeddings sees real structure, not noise.
import { z } from 'zod';
import { type GenSettings, parseBody, type Reply } from './common.js';
import { hashSeeded32 } from '../util/hash.js';
import { seededRandom } from '../util/random.js';
import { estimateTokens } from './text.js';

export const EmbeddingBody = z.looseObject({
  model: z.string().min(1),
  input: z.union([
    z.string(),
    z.array(z.string()).min(1),
    z.array(z.number().int()).min(1),
    z.array(z.array(z.number().int()).min(1)).min(1),
  ]),
  dimensions: z.number().int().min(1).max(8192).nullish(),
  encoding_format: z.enum(['float', 'base64']).nullish(),
});
export type EmbeddingBody = z.infer<typeof EmbeddingBody>;

const SLOTS_PER_WORD = 4;

function embed(words: string[], dim: number, modelSeed: number): Float32Array {
  const acc = new Float64Array(dim);
  for (const w of words) {
    let h = hashSeeded32(w, modelSeed);
    for (let k = 0; k < SLOTS_PER_WORD; k++) {
      acc[h % dim]! += h & 0x80000000 ? -1 : 1;
      h = hashSeeded32(String(k), h);
    }
  }
  let norm = 0;
  for (let i = 0; i < dim; i++) norm += acc[i]! * acc[i]!;
  if (norm === 0) {
    // Empty input (or cancelling words): a fixed pseudo-random direction, still a unit vector.
    const rnd = seededRandom(modelSeed ^ 0x5bd1e995);
    for (let i = 0; i < dim; i++) acc[i] = rnd() * 2 - 1;
    norm = 0;
    for (let i = 0; i < dim; i++) norm += acc[i]! * acc[i]!;
  }
  const inv = 1 / Math.sqrt(norm);
  const out = new Float32Array(dim);
  for (let i = 0; i < dim; i++) out[i] = acc[i]! * inv;
  return out;
}

function inputs(input: EmbeddingBody['input']): { words: string[]; tokens: number }[] {
  const text = (t: string) => ({ words: t.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [], tokens: estimateTokens(t.length) });
  const ids = (a: number[]) => ({ words: a.map(String), tokens: a.length });
  if (typeof input === 'string') return [text(input)];
  if (input.every((x) => typeof x === 'string')) return (input as string[]).map(text);
  if (input.every((x) => typeof x === 'number')) return [ids(input as number[])];
  return (input as number[][]).map(ids);
}

/** Little-endian float32 bytes, base64: what the `openai` client requests by default and decodes. */
function toBase64(v: Float32Array): string {
  const buf = Buffer.allocUnsafe(v.length * 4);
  for (let i = 0; i < v.length; i++) buf.writeFloatLE(v[i]!, i * 4);
  return buf.toString('base64');
}

export function embeddings(raw: unknown, s: GenSettings): Reply {
  const b = parseBody(EmbeddingBody, raw, 'embeddings');
  const dim = b.dimensions ?? s.embeddingDim;
  const base64 = b.encoding_format === 'base64';
  const modelSeed = hashSeeded32(b.model);
  let promptTokens = 0;
  const data = inputs(b.input).map((inp, index) => {
    promptTokens += inp.tokens;
    const v = embed(inp.words, dim, modelSeed);
    return { object: 'embedding', index, embedding: base64 ? toBase64(v) : Array.from(v) };
  });
  const body = { object: 'list', data, model: b.model, usage: { prompt_tokens: promptTokens, total_tokens: promptTokens } };
  return { kind: 'json', body: JSON.stringify(body) };
}
