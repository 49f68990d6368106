import { describe, expect, it } from 'vitest';
import lexical, { LexicalOptions, LexicalVectorizer } from '../../src/embedders/lexical.js';

const ctx = { resolvePath: (p: string) => p };
const make = (o: Partial<LexicalOptions> = {}) => new LexicalVectorizer(LexicalOptions.parse({ type: 'lexical', ...o }));
const cos = (a: Float32Array, b: Float32Array): number => a.reduce((s, x, i) => s + x * b[i]!, 0);
const norm = (a: Float32Array): number => Math.sqrt(cos(a, a));

describe('lexical embedder', () => {
  it('encodes every setting that changes vectors in its id', async () => {
    const e = await lexical.create(LexicalOptions.parse({ type: 'lexical' }), ctx);
    expect(e.id).toBe('lexical/v1/d512/w1-2/c3-5/ww0.5/m8192');
    expect(e.dim).toBe(512);
    const ids = [
      make({ dim: 1024 }),
      make({ word_ngram_max: 1 }),
      make({ char_ngram_min: 2 }),
      make({ char_ngram_max: 0 }),
      make({ word_weight: 0.3 }),
      make({ max_chars: 100 }),
    ].map((v) => v.id);
    expect(new Set([e.id, ...ids]).size).toBe(ids.length + 1);
    await e.close();
  });

  it('puts paraphrases closer than unrelated prompts', () => {
    const v = make();
    const a = v.vectorize('How do I sort a list in Python?');
    const b = v.vectorize('how to sort a python list');
    const c = v.vectorize('What is the capital of France?');
    expect(cos(a, b)).toBeGreaterThan(0.4);
    expect(cos(a, c)).toBeLessThan(0.25);
    expect(cos(a, b)).toBeGreaterThan(cos(a, c) + 0.3);
  });

  it('ignores case, spacing and Unicode compatibility forms', () => {
    const v = make();
    const a = v.vectorize('Ｆｕｌｌ ＷＩＤＴＨ text');
    const b = v.vectorize('full    width\n TEXT');
    expect(cos(a, b)).toBeCloseTo(1, 5);
  });

  it('reuses its buffers without leaking one text into the next', () => {
    const v = make();
    const first = v.vectorize('tort law negligence damages');
    v.vectorize('completely different words about cooking pasta');
    v.vectorize('');
    expect(Array.from(v.vectorize('tort law negligence damages'))).toEqual(Array.from(first));
  });

  it('gives unit vectors for empty, punctuation-only, huge and non-Latin text', () => {
    const v = make({ dim: 65_536 });
    for (const t of ['', '   \n\t', '?!...', 'x'.repeat(2_000_000), '数学の問題を解いてください 😀', '\u0000\uffff\ud800']) {
      const e = v.vectorize(t);
      expect(e.length).toBe(65_536);
      expect(norm(e)).toBeCloseTo(1, 5);
      expect(e.every(Number.isFinite)).toBe(true);
    }
    expect(cos(v.vectorize(''), v.vectorize('  '))).toBeCloseTo(1, 6);
  });

  it('hashes words only or characters only when the other group is off', () => {
    const words = make({ char_ngram_max: 0 });
    expect(cos(words.vectorize('sorting lists'), words.vectorize('sorted list'))).toBeCloseTo(0, 5); // no shared word
    const chars = make({ word_ngram_max: 0 });
    expect(cos(chars.vectorize('sorting lists'), chars.vectorize('sorted list'))).toBeGreaterThan(0.3); // shared n-grams
  });

  it('rejects options that would make no features or a bad dimension, naming the field', () => {
    const r1 = LexicalOptions.safeParse({ type: 'lexical', word_ngram_max: 0, char_ngram_max: 0 });
    expect(r1.success).toBe(false);
    expect(r1.error?.issues[0]?.path).toEqual(['word_ngram_max']);
    const r2 = LexicalOptions.safeParse({ type: 'lexical', char_ngram_min: 5, char_ngram_max: 3 });
    expect(r2.error?.issues[0]?.path).toEqual(['char_ngram_max']);
    expect(LexicalOptions.safeParse({ type: 'lexical', dim: 65_537 }).success).toBe(false);
    expect(LexicalOptions.safeParse({ type: 'lexical', dims: 64 }).success).toBe(false);
  });

  it('honours an already aborted signal and refuses work after close()', async () => {
    const e = await lexical.create(LexicalOptions.parse({ type: 'lexical', dim: 64 }), ctx);
    await expect(e.embed('hi', AbortSignal.abort())).rejects.toThrow(/abort/i);
    await e.close();
    await expect(e.embed('hi')).rejects.toThrow(/closed/);
  });
});
