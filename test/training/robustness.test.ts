import { describe, expect, it } from 'vitest';
import { agreement, clusteredApgrSe, meanAgreement, sampleRows } from '../../src/training/robustness.js';
import { p1Evaluate } from '../../src/training/metrics.js';
import { seededRandom } from '../../src/util/random.js';

describe('agreement between decisions on original and shaped prompts', () => {
  it('counts equal decisions, with the binomial standard error', () => {
    const a = agreement([1, 0, 1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 0, 1, 1, 0]);
    expect(a.n).toBe(8);
    expect(a.rate).toBe(0.75);
    expect(a.se).toBeCloseTo(Math.sqrt((0.75 * 0.25) / 8), 12);
    expect(agreement(['law', 'ood', 'health'], ['law', 'ood', 'health']).rate).toBe(1);
    expect(agreement(['law', 'ood'], ['finance', 'law']).rate).toBe(0);
    expect(() => agreement([1, 2], [1])).toThrow(/2 decisions against 1/);
  });

  it('averages per-row shares (a knob sweep) with the SE of that mean over rows', () => {
    const m = meanAgreement([1, 0.5, 0, 0.5]);
    expect(m.rate).toBe(0.5);
    // sqrt(sum of squared deviations) / n = sqrt(0.25 + 0 + 0.25 + 0) / 4
    expect(m.se).toBeCloseTo(Math.sqrt(0.5) / 4, 12);
  });

  it('pools copies of one row as one cluster: a wider SE than if they were independent', () => {
    // Two rows, four copies each: row 0's copies all agree, row 1's all disagree.
    const same = [1, 1, 1, 1, 0, 0, 0, 0];
    const plain = agreement(same, [1, 1, 1, 1, 1, 1, 1, 1]);
    const clustered = agreement(same, [1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1]);
    expect(clustered.rate).toBe(plain.rate);
    expect(plain.se).toBeCloseTo(Math.sqrt(0.25 / 8), 12);
    // residual sums per row: +2 and -2; sqrt(8) / 8
    expect(clustered.se).toBeCloseTo(Math.sqrt(8) / 8, 12);
    // One copy per row: the same as the binomial SE.
    expect(agreement([1, 0, 1], [1, 1, 1], [5, 6, 7]).se).toBeCloseTo(Math.sqrt(((2 / 3) * (1 / 3)) / 3), 12);
  });
});

describe('clusteredApgrSe', () => {
  const next = seededRandom(7);
  const n = 300;
  const strong = Float64Array.from({ length: n }, () => Number(next() < 0.8));
  const weak = Float64Array.from({ length: n }, () => Number(next() < 0.65));
  const scores = Float64Array.from({ length: n }, (_, i) => strong[i]! - weak[i]! + next());

  it('is the plain bootstrap SE when every row is its own cluster', () => {
    const ids = Array.from({ length: n }, (_, i) => i);
    expect(clusteredApgrSe(scores, strong, weak, ids, 50)).toBeCloseTo(p1Evaluate(scores, strong, weak, 50).apgrSe, 12);
  });

  it('does not shrink when each row is pooled four times (a naive bootstrap would halve it)', () => {
    const rep = <T extends ArrayLike<number>>(x: T) => Float64Array.from({ length: 4 * n }, (_, k) => x[k % n]!);
    const clusters = Array.from({ length: 4 * n }, (_, k) => k % n);
    const one = p1Evaluate(scores, strong, weak, 100).apgrSe;
    const pooled = clusteredApgrSe(rep(scores), rep(strong), rep(weak), clusters, 100);
    const naive = p1Evaluate(rep(scores), rep(strong), rep(weak), 100).apgrSe;
    expect(pooled).toBeGreaterThan(0.8 * one);
    expect(naive).toBeLessThan(0.7 * one);
  });
});

describe('sampleRows', () => {
  const ds = { rows: Array.from({ length: 50 }, (_, i) => ({ id: `r/${i}` })) } as unknown as Parameters<typeof sampleRows>[0];
  const idx = Array.from({ length: 50 }, (_, i) => i).filter((i) => i % 2 === 1);

  it('keeps every row without a sample size, and a stable, file-ordered subset with one', () => {
    expect(sampleRows(ds, idx)).toEqual(idx);
    const s = sampleRows(ds, idx, 10);
    expect(s).toHaveLength(10);
    expect(s).toEqual([...s].sort((a, b) => a - b));
    expect(s.every((i) => idx.includes(i))).toBe(true);
    expect(sampleRows(ds, idx, 10)).toEqual(s);
    expect(sampleRows(ds, idx, 10)).not.toEqual(idx.slice(0, 10)); // by hash, not the first rows
  });
});
