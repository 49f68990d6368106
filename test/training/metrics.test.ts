import { describe, expect, it } from 'vitest';
import {
  accuracyAtCost,
  aiq,
  apgr,
  bootstrapSe,
  chooseByUtility,
  costToReach,
  cpt,
  p1Curve,
  p1Evaluate,
  p1OracleScores,
  p3Evaluate,
  quantiles,
  upperHull,
} from '../../src/training/metrics.js';
import { seededRandom } from '../../src/util/random.js';
import { bestHarmonicThreshold, knobForCost, meanCostAt, thresholdForShare } from '../../src/training/calibrate-router.js';

describe('P1 metrics', () => {
  // 10 prompts: the weak model fails the first five, the strong model never fails.
  const weak = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1];
  const strong = weak.map(() => 1);

  it('gives a perfect router the area worked out by hand', () => {
    const scores = weak.map((w) => 1 - w);
    const curve = p1Curve(scores, strong, weak);
    expect(curve).toHaveLength(11);
    expect(curve[0]).toEqual({ share: 1, quality: 1 });
    expect(curve[10]).toEqual({ share: 0, quality: 0.5 });
    // Points (0, 0.5), (0.5, 1), (1, 1): AUC 0.875, so APGR = (0.875 - 0.5) / (1 - 0.5).
    expect(apgr(curve, 1, 0.5)).toBeCloseTo(0.75, 12);
    expect(cpt(curve, 0.5, 1, 0.5)).toBeCloseTo(0.25, 12);
    expect(cpt(curve, 1, 1, 0.5)).toBeCloseTo(0.5, 12);
  });

  it('scores a router that ranks backwards below 0.5', () => {
    const scores = weak.map((w) => w);
    expect(apgr(p1Curve(scores, strong, weak), 1, 0.5)).toBeLessThan(0.5);
  });

  it('gives random scores about 0.5', () => {
    const next = seededRandom(7);
    const n = 20_000;
    const s = Array.from({ length: n }, () => (next() < 0.8 ? 1 : 0));
    const w = Array.from({ length: n }, () => (next() < 0.6 ? 1 : 0));
    const scores = Array.from({ length: n }, () => next());
    const r = p1Evaluate(scores, s, w, 0);
    expect(r.apgr).toBeGreaterThan(0.45);
    expect(r.apgr).toBeLessThan(0.55);
    expect(r.cpt50).toBeGreaterThan(0.4);
    expect(r.cpt50).toBeLessThan(0.6);
  });

  it('ranks the oracle above any router and takes linear quantiles like numpy', () => {
    const o = p1OracleScores(strong, weak);
    expect(Array.from(o)).toEqual(weak.map((w) => 1 - w));
    expect(quantiles([1, 2, 3, 4], [0, 0.5, 1 / 3, 1])).toEqual([1, 2.5, 2, 4]);
  });

  it('bootstraps the same standard error on every run, and a positive one', () => {
    const stat = (idx: Uint32Array) => idx.reduce((a, i) => a + weak[i]!, 0) / idx.length;
    const a = bootstrapSe(weak.length, stat, 100, 3);
    expect(a).toBe(bootstrapSe(weak.length, stat, 100, 3));
    expect(a).toBeGreaterThan(0.05); // sd of a mean of 10 coin flips is ~0.16
    expect(a).toBeLessThan(0.3);
  });
});

describe('P2 metrics', () => {
  const pts = [
    { cost: 0.1, accuracy: 0.5 },
    { cost: 0.2, accuracy: 0.6 },
    { cost: 0.5, accuracy: 0.55 }, // dominated
    { cost: 0.9, accuracy: 0.7 },
  ];

  it('keeps the upper convex hull and computes its area', () => {
    expect(upperHull(pts)).toEqual([pts[0], pts[1], pts[3]]);
    // (0.1..0.2: mean 0.55) x 0.1 + (0.2..0.9: mean 0.65) x 0.7 = 0.51, over a range of 0.8.
    expect(aiq(pts, 0.1, 0.9)).toBeCloseTo(0.6375, 12);
    expect(costToReach(pts, 0.65)).toBeCloseTo(0.55, 12);
    expect(costToReach(pts, 0.71)).toBeNull();
    expect(accuracyAtCost(pts, 0.9)).toBeCloseTo(0.7, 12);
  });

  it('drops points under the chord and cuts the hull after its best point, extending it flat', () => {
    expect(
      upperHull([
        { cost: 0.1, accuracy: 0.5 },
        { cost: 0.5, accuracy: 0.52 },
        { cost: 0.9, accuracy: 0.7 },
      ]),
    ).toHaveLength(2);
    const falling = [
      { cost: 0.1, accuracy: 0.5 },
      { cost: 0.5, accuracy: 0.8 },
      { cost: 0.9, accuracy: 0.7 },
    ];
    expect(upperHull(falling)).toHaveLength(2);
    expect(aiq(falling, 0.1, 0.9)).toBeCloseTo((0.4 * 0.65 + 0.4 * 0.8) / 0.8, 12);
  });

  it('routes by utility, cheaper model on ties, and finds the knob for a cost', () => {
    // Two prompts x two models (costs 0.1 and 0.9).
    const q = Float64Array.of(0.5, 0.9, 0.6, 0.6);
    const costs = [0.1, 0.9];
    expect(Array.from(chooseByUtility(q, 2, costs, 0))).toEqual([1, 0]);
    expect(Array.from(chooseByUtility(q, 2, costs, 1))).toEqual([0, 0]);
    expect(meanCostAt(q, 2, costs, 0)).toBeCloseTo(0.5, 12);
    const k = knobForCost(q, 2, costs, 0.1)!;
    expect(k).toBeGreaterThan(0.4);
    expect(k).toBeLessThan(0.51); // 0.4 / 0.8 = 0.5 is where prompt 1 switches
  });
});

describe('P3 and calibration', () => {
  it('computes ID, OOD and their harmonic mean', () => {
    const r = p3Evaluate(['law', 'law', 'health', 'ood', 'ood'], ['law', 'finance', 'health', 'ood', 'law']);
    expect(r.idAccuracy).toBeCloseTo(2 / 3, 12);
    expect(r.oodAccuracy).toBeCloseTo(0.5, 12);
    expect(r.score).toBeCloseTo((2 * (2 / 3) * 0.5) / (2 / 3 + 0.5), 12);
  });

  it('picks the guard threshold that best separates in-domain from out-of-domain scores', () => {
    const t = bestHarmonicThreshold(
      [0.9, 0.8, 0.7].map((score) => ({ score, correct: true })),
      [0.1, 0.2, 0.75],
    );
    expect(t.threshold).toBeGreaterThan(0.2);
    expect(t.threshold).toBeLessThan(0.7);
    expect(t.idAccuracy).toBe(1);
    expect(t.oodAccuracy).toBeCloseTo(2 / 3, 12);
  });

  it('finds the P1 threshold for a share of strong calls', () => {
    const scores = Array.from({ length: 100 }, (_, i) => i / 100);
    const t = thresholdForShare(scores, 0.3);
    expect(scores.filter((s) => s >= t).length).toBe(30);
  });
});
