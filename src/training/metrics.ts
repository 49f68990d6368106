// The metrics of ../shared/datasets/PROTOCOLS.md, written to be recomputable from the per-prompt dumps.
// P1: quality/strong-share curve, APGR, CPT. P2: cost/accuracy hull, AIQ, cost to match. P3: ID/OOD accuracy.
import { seededRandom } from '../util/random.js';

export interface SharePoint {
  /** Share of prompts routed to the strong model, 0..1. */
  share: number;
  /** Mean quality of the routed mix. */
  quality: number;
}

export const mean = (xs: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return xs.length === 0 ? Number.NaN : s / xs.length;
};

/** numpy's default (linear) quantiles of `xs` at each q in `qs`. */
export function quantiles(xs: ArrayLike<number>, qs: readonly number[]): number[] {
  const a = Float64Array.from(xs as ArrayLike<number>).sort();
  if (a.length === 0) return qs.map(() => Number.NaN);
  return qs.map((q) => {
    const pos = q * (a.length - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, a.length - 1);
    return a[lo]! + (pos - lo) * (a[hi]! - a[lo]!);
  });
}

/** The 11 edges of 10 equal-count bins of the scores (PROTOCOLS.md P1). */
export const p1Edges = (scores: ArrayLike<number>, bins = 10): number[] =>
  quantiles(
    scores,
    Array.from({ length: bins + 1 }, (_, i) => i / bins),
  );

/**
 * P1 curve: at each edge route `score >= edge` to the strong model (last edge: `>`), record
 * (strong share, mean quality). Points come back in edge order (share falls from 1 to 0).
 */
export function p1Curve(scores: ArrayLike<number>, strong: ArrayLike<number>, weak: ArrayLike<number>, bins = 10): SharePoint[] {
  const n = scores.length;
  if (strong.length !== n || weak.length !== n) throw new Error(`p1Curve: ${n} scores but ${strong.length}/${weak.length} outcomes`);
  const edges = p1Edges(scores, bins);
  return edges.map((edge, e) => {
    const last = e === edges.length - 1;
    let k = 0;
    let q = 0;
    for (let i = 0; i < n; i++) {
      const s = scores[i]!;
      const toStrong = last ? s > edge : s >= edge;
      if (toStrong) k++;
      q += toStrong ? strong[i]! : weak[i]!;
    }
    return { share: k / n, quality: q / n };
  });
}

const byShare = (curve: readonly SharePoint[]): SharePoint[] =>
  curve
    .map((p, i) => ({ p, i }))
    .sort((a, b) => a.p.share - b.p.share || b.i - a.i)
    .map((x) => x.p);

/** Trapezoid area under quality over strong share. */
export function areaUnder(curve: readonly SharePoint[]): number {
  const pts = byShare(curve);
  let auc = 0;
  for (let i = 1; i < pts.length; i++) {
    const a = pts[i - 1]!;
    const b = pts[i]!;
    auc += ((b.share - a.share) * (a.quality + b.quality)) / 2;
  }
  return auc;
}

/** APGR = (AUC - weak) / (strong - weak), weak/strong = quality when every prompt goes to that model. */
export const apgr = (curve: readonly SharePoint[], strongQ: number, weakQ: number): number =>
  (areaUnder(curve) - weakQ) / (strongQ - weakQ);

/**
 * CPT(x): the strong share at which quality first reaches weak + x (strong - weak), interpolating
 * linearly along the curve in order of increasing share. null if it is never reached.
 */
export function cpt(curve: readonly SharePoint[], x: number, strongQ: number, weakQ: number): number | null {
  const target = weakQ + x * (strongQ - weakQ);
  const pts = byShare(curve);
  const first = pts[0];
  if (first === undefined) return null;
  if (first.quality >= target) return first.share;
  for (let i = 1; i < pts.length; i++) {
    const a = pts[i - 1]!;
    const b = pts[i]!;
    if (b.quality >= target) {
      if (b.quality === a.quality) return b.share;
      return a.share + ((target - a.quality) * (b.share - a.share)) / (b.quality - a.quality);
    }
  }
  return null;
}

/** A seeded PRNG, so bootstrap errors are the same on every run. */

/** Standard deviation of a statistic over `reps` bootstrap resamples of n items (seeded). */
export function bootstrapSe(n: number, stat: (idx: Uint32Array) => number, reps = 200, seed = 1): number {
  const next = seededRandom(seed);
  const idx = new Uint32Array(n);
  const vals: number[] = [];
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < n; i++) idx[i] = Math.floor(next() * n);
    const v = stat(idx);
    if (Number.isFinite(v)) vals.push(v);
  }
  const m = mean(vals);
  return Math.sqrt(vals.reduce((s, v) => s + (v - m) ** 2, 0) / Math.max(1, vals.length - 1));
}

const pick = (xs: ArrayLike<number>, idx: Uint32Array): Float64Array => {
  const out = new Float64Array(idx.length);
  for (let i = 0; i < idx.length; i++) out[i] = xs[idx[i]!]!;
  return out;
};

export interface P1Result {
  n: number;
  strongQuality: number;
  weakQuality: number;
  curve: SharePoint[];
  apgr: number;
  /** Bootstrap standard error of APGR over prompts (200 resamples, seed 1). */
  apgrSe: number;
  cpt50: number | null;
  cpt80: number | null;
}

/** Everything P1 reports for one router on one benchmark. */
export function p1Evaluate(scores: ArrayLike<number>, strong: ArrayLike<number>, weak: ArrayLike<number>, reps = 200): P1Result {
  const sQ = mean(strong);
  const wQ = mean(weak);
  const curve = p1Curve(scores, strong, weak);
  const apgrSe =
    reps > 0
      ? bootstrapSe(
          scores.length,
          (idx) => {
            const s = pick(strong, idx);
            const w = pick(weak, idx);
            return apgr(p1Curve(pick(scores, idx), s, w), mean(s), mean(w));
          },
          reps,
        )
      : Number.NaN;
  return {
    n: scores.length,
    strongQuality: sQ,
    weakQuality: wQ,
    curve,
    apgr: apgr(curve, sQ, wQ),
    apgrSe,
    cpt50: cpt(curve, 0.5, sQ, wQ),
    cpt80: cpt(curve, 0.8, sQ, wQ),
  };
}

/** Random routing: in expectation the straight line from all-weak to all-strong (APGR 0.5, CPT(x) = x). */
export const p1RandomCurve = (strongQ: number, weakQ: number): SharePoint[] => [
  { share: 1, quality: strongQ },
  { share: 0, quality: weakQ },
];

/** The oracle's score: how much better the strong model did on this very prompt. */
export const p1OracleScores = (strong: ArrayLike<number>, weak: ArrayLike<number>): Float64Array =>
  Float64Array.from({ length: strong.length }, (_, i) => strong[i]! - weak[i]!);

export * from './metrics-p2.js';

/** Binomial standard error of a share p over n trials. */
export const binomialSe = (p: number, n: number): number => (n > 0 ? Math.sqrt((p * (1 - p)) / n) : Number.NaN);

export interface P3Result {
  idN: number;
  oodN: number;
  /** Share of in-domain test prompts given their right domain. */
  idAccuracy: number;
  /** Share of out-of-domain test prompts flagged out-of-domain. */
  oodAccuracy: number;
  idSe: number;
  oodSe: number;
  /** Harmonic mean of the two. */
  score: number;
}

/** PROTOCOLS.md P3 from (true label, predicted label) pairs; 'ood' marks out-of-domain. */
export function p3Evaluate(truth: readonly string[], predicted: readonly string[]): P3Result {
  let idN = 0;
  let idOk = 0;
  let oodN = 0;
  let oodOk = 0;
  truth.forEach((t, i) => {
    const p = predicted[i];
    if (t === 'ood') {
      oodN++;
      if (p === 'ood') oodOk++;
    } else {
      idN++;
      if (p === t) idOk++;
    }
  });
  const idAccuracy = idOk / idN;
  const oodAccuracy = oodOk / oodN;
  const score = idAccuracy + oodAccuracy === 0 ? 0 : (2 * idAccuracy * oodAccuracy) / (idAccuracy + oodAccuracy);
  return { idN, oodN, idAccuracy, oodAccuracy, idSe: binomialSe(idAccuracy, idN), oodSe: binomialSe(oodAccuracy, oodN), score };
}
