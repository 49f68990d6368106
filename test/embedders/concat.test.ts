import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import concat, { combineVectors, concatBuffer, ConcatOptions, isConcatEmbedder } from '../../src/embedders/concat.js';
import { knownNonZeros, normalizeInPlace, vectorRewrites } from '../../src/embedders/common.js';
import lexical, { LexicalOptions } from '../../src/embedders/lexical.js';
import { readDataset, rowText } from '../../src/training/dataset.js';
import { embedDataset, rowOf } from '../../src/training/embed-cache.js';

const ctx = { resolvePath: (p: string) => p };
const A = { type: 'lexical', dim: 64 } as const;
const B = { type: 'lexical', dim: 32, word_ngram_max: 0 } as const;
const make = (weights?: number[]) =>
  concat.create(ConcatOptions.parse({ type: 'concat', members: [A, B], ...(weights ? { weights } : {}) }), ctx);
const norm = (v: Float32Array): number => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

describe('concat embedder', () => {
  it('is the weighted concatenation of its members, unit length, with dims summed', async () => {
    const e = await make([3, 1]);
    const a = await lexical.create(LexicalOptions.parse(A), ctx);
    const b = await lexical.create(LexicalOptions.parse(B), ctx);
    expect(e.dim).toBe(96);
    expect(isConcatEmbedder(e)).toBe(true);
    expect(isConcatEmbedder(a)).toBe(false);
    const text = 'What is the statute of limitations for a tort?';
    const v = await e.embed(text);
    const va = await a.embed(text);
    const vb = await b.embed(text);
    expect(norm(v)).toBeCloseTo(1, 5);
    for (let i = 0; i < 64; i++) expect(v[i]).toBeCloseTo(va[i]! * Math.sqrt(0.75), 6);
    for (let i = 0; i < 32; i++) expect(v[64 + i]).toBeCloseTo(vb[i]! * Math.sqrt(0.25), 6);
    const [m] = await e.embedMany([text]);
    expect(Array.from(m!)).toEqual(Array.from(v));
    await Promise.all([e.close(), a.close(), b.close()]);
  });

  it('combines and normalises bit for bit as the plain dense loops do (zeros skipped, nothing else changed)', () => {
    // The dense reference: every element scaled, then every element's square summed in index order.
    const dense = (parts: Float32Array[], weights: number[]): Float32Array => {
      const total = weights.reduce((s, w) => s + w, 0);
      const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
      let at = 0;
      parts.forEach((p, i) => {
        for (let k = 0; k < p.length; k++) out[at + k] = p[k]! * Math.sqrt(weights[i]! / total);
        at += p.length;
      });
      let ss = 0;
      for (const x of out) ss += x * x;
      const inv = 1 / Math.sqrt(ss);
      for (let k = 0; k < out.length; k++) out[k] = out[k]! * inv;
      return out;
    };
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5;
    for (let t = 0; t < 50; t++) {
      // A sparse member (a hashed lexical vector) beside a dense one, not quite unit length.
      const sparse = Float32Array.from({ length: 512 }, () => (rnd() > 0.4 ? rnd() : 0));
      const dense2 = Float32Array.from({ length: 48 }, () => rnd());
      const weights = [1 + (t % 3), 1];
      expect(combineVectors([sparse, dense2], [512, 48], weights)).toEqual(dense([sparse, dense2], weights));
      const copy = sparse.slice();
      normalizeInPlace(copy);
      expect(copy).toEqual(dense([sparse], [1]));
    }
    // No features at all: the zero vector stays zero rather than turning into NaN.
    expect(Array.from(combineVectors([new Float32Array(4), new Float32Array(2)], [4, 2], [1, 1]))).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it("joins a lexical member's non-zeros into the same bits as its dense vector (dataset prompts)", async () => {
    const opts = { type: 'lexical', dim: 4096 } as const;
    const e = await concat.create(ConcatOptions.parse({ type: 'concat', members: [opts, B], weights: [2, 1] }), ctx);
    const lex = lexical.create(LexicalOptions.parse(opts), ctx);
    const small = lexical.create(LexicalOptions.parse(B), ctx);
    const [a, b] = await Promise.all([lex, small]);
    const ds = await readDataset(join(import.meta.dirname, '../../../shared/datasets/routellm/mmlu.jsonl'));
    const texts = ['', '!!!', 'the '.repeat(3000), ...ds.rows.slice(0, 1500).map((r) => r.prompt)];
    for (const text of texts) {
      const want = combineVectors([await a.embed(text), await b.embed(text)], [4096, 32], [2, 1]);
      expect(Buffer.from((await e.embed(text)).buffer).equals(Buffer.from(want.buffer)), JSON.stringify(text.slice(0, 40))).toBe(true);
    }
    await Promise.all([e.close(), a.close(), b.close()]);
  });

  it('writes every prompt into one buffer when the caller keeps none (a scoring thread), with the same bits', async () => {
    const opts = ConcatOptions.parse({ type: 'concat', members: [{ type: 'lexical', dim: 4096 }, B], weights: [2, 1] });
    const [fresh, reusing] = await Promise.all([concat.create(opts, ctx), concat.create(opts, { ...ctx, reuseVectors: true })]);
    // Long then short, empty, repeated: what the last prompt left behind must not show through.
    const texts = ['the quick brown fox '.repeat(200), 'hi', '', '!!!', 'What is a tort?', 'What is a tort?', 'a'];
    const buffer = await reusing.embed('warm-up');
    for (const t of texts) {
      const before = vectorRewrites();
      const v = await reusing.embed(t);
      expect(v).toBe(buffer);
      expect(vectorRewrites()).toBe(before + 1);
      const want = await fresh.embed(t);
      expect(Buffer.from(v.buffer).equals(Buffer.from(want.buffer)), JSON.stringify(t.slice(0, 20))).toBe(true);
      expect(Array.from(knownNonZeros(v)!)).toEqual(Array.from(knownNonZeros(want)!));
    }
    // Vectors asked for together are kept by the caller: each its own array, none of them the buffer.
    const many = await reusing.embedMany(texts);
    expect(new Set([buffer, ...many]).size).toBe(texts.length + 1);
    // A member of the wrong size is refused before anything is written.
    const reused = concatBuffer(6);
    combineVectors([Float32Array.of(1, 0, 0, 0), Float32Array.of(0, 1)], [4, 2], [1, 1], reused);
    const kept = Array.from(reused.out);
    expect(() => combineVectors([Float32Array.of(0, 0, 1, 0), new Float32Array(3)], [4, 2], [1, 1], reused)).toThrow(
      /member 1 gave a 3-d vector/,
    );
    expect(Array.from(reused.out)).toEqual(kept);
    await Promise.all([fresh.close(), reusing.close()]);
  });

  it('names its members and weights in its id', async () => {
    const [eq, w] = await Promise.all([make(), make([2, 1])]);
    expect(eq.id).toBe('concat/v1/(lexical/v1/d64/w1-2/c3-5/ww0.5/m8192+lexical/v1/d32/w1-0/c3-5/ww0/m8192)/w1,1');
    expect(w.id).not.toBe(eq.id);
  });

  it('rejects weights that do not match the members, fewer than two members and nested concats', () => {
    expect(ConcatOptions.safeParse({ type: 'concat', members: [A, B], weights: [1] }).success).toBe(false);
    expect(ConcatOptions.safeParse({ type: 'concat', members: [A] }).success).toBe(false);
    expect(ConcatOptions.safeParse({ type: 'concat', members: [A, { type: 'concat' }] }).success).toBe(false);
    expect(ConcatOptions.safeParse({ type: 'concat', members: [A, B], weights: [1, 0] }).success).toBe(false);
  });

  it("embeds datasets through each member's own cache entry, never one of its own", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-concat-'));
    const file = join(dir, 'd.jsonl');
    const row = (id: string, prompt: string) =>
      JSON.stringify({ id, benchmark: 'x', category: 'c', prompt, scores: { a: 1 }, contaminated: false });
    writeFileSync(file, `${row('r1', 'hello there')}\n${row('r2', 'what is a tort')}\n`);
    const cacheDir = join(dir, 'cache');
    const ds = await readDataset(file);
    const e = await make([1, 2]);
    const m = await embedDataset(e, ds, { cacheDir, progress: false });
    expect(
      readdirSync(cacheDir)
        .filter((f) => f.endsWith('.f32'))
        .sort(),
    ).toHaveLength(2);
    expect(readdirSync(cacheDir).some((f) => f.startsWith('concat'))).toBe(false);
    expect(m.dim).toBe(96);
    for (let i = 0; i < 2; i++) {
      const want = await e.embed(rowText(ds.rows[i]!));
      const got = rowOf(m, i);
      for (let k = 0; k < 96; k++) expect(got[k]).toBeCloseTo(want[k]!, 6);
    }
    // Member entries are the ones a plain lexical embedder of the same options reads.
    const a = await lexical.create(LexicalOptions.parse(A), ctx);
    const ma = await embedDataset(a, ds, { cacheDir, progress: false });
    expect(readdirSync(cacheDir).filter((f) => f.endsWith('.f32'))).toHaveLength(2);
    expect(rowOf(m, 1)[0]).toBeCloseTo(rowOf(ma, 1)[0]! * Math.sqrt(1 / 3), 6);
  });
});
