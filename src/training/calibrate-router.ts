import { chooseByUtility, quantiles } from './metrics.js';

// Picking a router's operating point from data the router was not tested on: the P1 score threshold
// for a share of strong-model calls, the P2 cost knob for a mean cost, and the P3 guard threshold.

/** Threshold t such that about `share` of the scores satisfy score >= t (P1 routes those to the strong model). */
export function thresholdForShare(scores: ArrayLike<number>, share: number): number {
  if (!(share >= 0 && share <= 1)) throw new Error(`target share must be in 0..1, got ${share}`);
  if (share <= 0) return Infinity;
  return quantiles(scores, [1 - share])[0]!;
}

/** Share of scores at or above t. */
export function shareAbove(scores: ArrayLike<number>, t: number): number {
  let k = 0;
  for (let i = 0; i < scores.length; i++) if (scores[i]! >= t) k++;
  return scores.length === 0 ? 0 : k / scores.length;
}

/** Mean cost of routing by argmax(quality - knob x cost). */
export function meanCostAt(quality: Float32Array | Float64Array, m: number, costs: readonly number[], knob: number): number {
  const choice = chooseByUtility(quality, m, costs, knob);
  let c = 0;
  for (const j of choice) c += costs[j]!;
  return c / choice.length;
}

/**
 * The smallest knob whose mean cost is at most `target` (mean cost never rises with the knob),
 * by bisection; null when even the largest knob tried costs more.
 */
export function knobForCost(
  quality: Float32Array | Float64Array,
  m: number,
  costs: readonly number[],
  target: number,
  maxKnob = 1e4,
): number | null {
  if (meanCostAt(quality, m, costs, 0) <= target) return 0;
  if (meanCostAt(quality, m, costs, maxKnob) > target) return null;
  let lo = 0;
  let hi = maxKnob;
  for (let it = 0; it < 60; it++) {
    const mid = (lo + hi) / 2;
    if (meanCostAt(quality, m, costs, mid) <= target) hi = mid;
    else lo = mid;
  }
  return hi;
}

export interface HarmonicThreshold {
  threshold: number;
  /** Harmonic mean of ID and OOD accuracy at that threshold. */
  score: number;
  idAccuracy: number;
  oodAccuracy: number;
}

/**
 * Guard threshold maximising the harmonic mean of ID accuracy (right domain and score >= t) and OOD
 * accuracy (score < t). Candidates lie midway between neighbouring distinct scores.
 */
export function bestHarmonicThreshold(
  inDomain: ReadonlyArray<{ score: number; correct: boolean }>,
  ood: readonly number[],
  /** Thresholds below this are not considered (e.g. 0 for probabilities). */
  floor = -Infinity,
): HarmonicThreshold {
  if (inDomain.length === 0 || ood.length === 0) throw new Error('bestHarmonicThreshold needs in-domain and out-of-domain scores');
  const all = [...new Set([...inDomain.map((x) => x.score), ...ood])].sort((a, b) => a - b);
  const cands = [all[0]! - 1e-6, ...all.slice(1).map((v, i) => (v + all[i]!) / 2), all[all.length - 1]! + 1e-6].filter((t) => t >= floor);
  if (Number.isFinite(floor)) cands.unshift(floor);
  const idSorted = inDomain
    .filter((x) => x.correct)
    .map((x) => x.score)
    .sort((a, b) => a - b);
  const oodSorted = [...ood].sort((a, b) => a - b);
  let best: HarmonicThreshold = { threshold: cands[0]!, score: -1, idAccuracy: 0, oodAccuracy: 0 };
  let i = 0; // correct in-domain scores below t
  let o = 0; // ood scores below t
  for (const t of cands) {
    while (i < idSorted.length && idSorted[i]! < t) i++;
    while (o < oodSorted.length && oodSorted[o]! < t) o++;
    const idAcc = (idSorted.length - i) / inDomain.length;
    const oodAcc = o / ood.length;
    const h = idAcc + oodAcc === 0 ? 0 : (2 * idAcc * oodAcc) / (idAcc + oodAcc);
    if (h > best.score) best = { threshold: t, score: h, idAccuracy: idAcc, oodAccuracy: oodAcc };
  }
  return best;
}
