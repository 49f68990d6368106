import { describe, expect, it } from 'vitest';
import { SHAPE_DIM, ShapeOptions, ShapeVectorizer } from '../../src/embedders/shape.js';
import { createConcatEmbedder, ConcatOptions } from '../../src/embedders/concat.js';

// The shape embedder's groups, in vector order: log2(1 + chars) knots 0..14, log2(lines) 0..7, digit share
// (5 knots), symbol share (5), non-ASCII share (3).
const GROUPS = { chars: [0, 15], lines: [15, 23], digits: [23, 28], symbols: [28, 33], nonAscii: [33, 36] } as const;
const group = (v: Float32Array, g: keyof typeof GROUPS): number[] => Array.from(v.subarray(...GROUPS[g]));
const v = (text: string, maxChars = 8192) => new ShapeVectorizer(maxChars).vectorize(text);

describe('shape embedder', () => {
  it('writes each feature as a two-hot between its nearest knots', () => {
    expect(SHAPE_DIM).toBe(36);
    // 47 characters: log2(48) = 5.585, so knots 5 and 6 share the weight 0.415 : 0.585.
    const c = group(v('x'.repeat(47)), 'chars');
    expect(c.filter((x) => x !== 0)).toHaveLength(2);
    expect(c[6]! / c[5]!).toBeCloseTo((Math.log2(48) - 5) / (6 - Math.log2(48)), 5);
    // Shares past the last knot (all digits) or at the first (none) are one-hot at that end.
    expect(group(v('12345'), 'digits').map((x) => x > 0)).toEqual([false, false, false, false, true]);
    expect(group(v('hello'), 'digits').map((x) => x > 0)).toEqual([true, false, false, false, false]);
    // Every group's weights sum to 1 before the vector is normalised, so the groups weigh the same.
    const x = v('Is 7 prime?\nWhy?');
    const sums = Object.keys(GROUPS).map((g) => group(x, g as keyof typeof GROUPS).reduce((s, y) => s + y, 0));
    for (const s of sums) expect(s).toBeCloseTo(sums[0]!, 6);
  });

  it('tells long from short, code from prose and Latin from other scripts', () => {
    const argmax = (xs: number[]) => xs.indexOf(Math.max(...xs));
    expect(argmax(group(v('Hi!'), 'chars'))).toBe(2);
    expect(argmax(group(v('word '.repeat(400)), 'chars'))).toBe(11);
    expect(argmax(group(v('line\n'.repeat(40)), 'lines'))).toBe(5);
    expect(argmax(group(v('if (a[i] <= b) { x = y * 2; }'), 'symbols'))).toBe(4);
    expect(argmax(group(v('Explain why the sky is blue.'), 'symbols'))).toBe(0);
    expect(argmax(group(v('数学の問題を解いてください'), 'nonAscii'))).toBe(2);
  });

  it('reads the length whole and the character shares from the first max_chars characters', () => {
    const text = 'a'.repeat(100) + '1'.repeat(100);
    expect(group(v(text, 100), 'chars')).toEqual(group(v(text), 'chars'));
    expect(group(v(text, 100), 'digits')[0]).toBeGreaterThan(0.4); // no digit among the first 100
    expect(group(v(text), 'digits')[4]).toBeGreaterThan(0.4); // half digits
    expect(new ShapeVectorizer(100).id).not.toBe(new ShapeVectorizer(8192).id);
  });

  it('is a concat member like any other, and its options are checked', async () => {
    expect(ShapeOptions.safeParse({ type: 'shape', max_chars: 8 }).success).toBe(false);
    const e = await createConcatEmbedder(
      ConcatOptions.parse({ type: 'concat', members: [{ type: 'lexical', dim: 64 }, { type: 'shape' }], weights: [1, 0.25] }),
      { resolvePath: (p) => p },
    );
    const x = await e.embed('What is 2 + 2?');
    expect(e.dim).toBe(64 + SHAPE_DIM);
    let tail = 0;
    for (let i = 64; i < x.length; i++) tail += x[i]! * x[i]!;
    expect(tail).toBeCloseTo(0.25 / 1.25, 5); // the member's share of the squared length is its weight's
    await e.close();
  });
});
