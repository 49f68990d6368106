// P2 (PROTOCOLS.md): (mean cost, accuracy) points of a cost-knob sweep, their non-decreasing upper
// convex hull (any two settings can be mixed at random, so every hull point is reachable), AIQ,
// accuracy at a cost and the cheapest cost that reaches an accuracy.

export interface CostPoint {
  cost: number;
  accuracy: number;
}

/** Non-decreasing upper convex hull, left to right, ending at the most accurate point. */
export function upperHull(points: readonly CostPoint[]): CostPoint[] {
  const pts = [...points]
    .filter((p) => Number.isFinite(p.cost) && Number.isFinite(p.accuracy))
    .sort((a, b) => a.cost - b.cost || b.accuracy - a.accuracy);
  const hull: CostPoint[] = [];
  for (const p of pts) {
    const prev = hull[hull.length - 1];
    if (prev !== undefined && prev.cost === p.cost) continue; // same cost, less accurate
    // Pop while the last turn is not clockwise (the middle point lies on or under the chord).
    while (hull.length >= 2) {
      const a = hull[hull.length - 2]!;
      const b = hull[hull.length - 1]!;
      const cross = (b.cost - a.cost) * (p.accuracy - a.accuracy) - (b.accuracy - a.accuracy) * (p.cost - a.cost);
      if (cross >= 0) hull.pop();
      else break;
    }
    hull.push(p);
  }
  // Past the best point the hull falls; a router would never pay more for less, so cut it there.
  let best = 0;
  for (let i = 1; i < hull.length; i++) if (hull[i]!.accuracy > hull[best]!.accuracy) best = i;
  return hull.slice(0, best + 1);
}

/** Hull accuracy at `cost`: linear between hull points, flat after the last, 0 before the first. */
export function hullAt(hull: readonly CostPoint[], cost: number): number {
  const first = hull[0];
  if (first === undefined || cost < first.cost) return 0;
  for (let i = 1; i < hull.length; i++) {
    const a = hull[i - 1]!;
    const b = hull[i]!;
    if (cost <= b.cost) return a.accuracy + ((cost - a.cost) * (b.accuracy - a.accuracy)) / (b.cost - a.cost);
  }
  return hull[hull.length - 1]!.accuracy;
}

/**
 * AIQ: area under the hull from `lo` to `hi`, the hull extended flat to `hi`, divided by (hi - lo).
 * `lo`/`hi` are the cheapest and dearest model prices, the same for every router compared.
 */
export function aiq(points: readonly CostPoint[], lo: number, hi: number): number {
  const hull = upperHull(points);
  if (hull.length === 0 || hi <= lo) return Number.NaN;
  // Breakpoints: range ends plus every hull vertex inside; the hull is linear in between.
  const xs = [lo, ...hull.map((p) => p.cost).filter((c) => c > lo && c < hi), hi];
  let area = 0;
  for (let i = 1; i < xs.length; i++) {
    const a = xs[i - 1]!;
    const b = xs[i]!;
    // Nothing is reachable below the cheapest point: that stretch adds no area.
    if (a < hull[0]!.cost) continue;
    area += ((b - a) * (hullAt(hull, a) + hullAt(hull, b))) / 2;
  }
  return area / (hi - lo);
}

/** The cheapest cost at which the hull reaches `accuracy`, or null if it never does. */
export function costToReach(points: readonly CostPoint[], accuracy: number): number | null {
  const hull = upperHull(points);
  const first = hull[0];
  if (first === undefined) return null;
  if (first.accuracy >= accuracy) return first.cost;
  for (let i = 1; i < hull.length; i++) {
    const a = hull[i - 1]!;
    const b = hull[i]!;
    if (b.accuracy >= accuracy) return a.cost + ((accuracy - a.accuracy) * (b.cost - a.cost)) / (b.accuracy - a.accuracy);
  }
  return null;
}

/** The hull's accuracy at a given mean cost. */
export const accuracyAtCost = (points: readonly CostPoint[], cost: number): number => hullAt(upperHull(points), cost);

/**
 * Routes each prompt to argmax_j (quality[i][j] - knob * cost[j]); ties go to the cheaper model, then
 * the first. `quality` is row-major n x m. Returns the chosen model index per prompt.
 */
export function chooseByUtility(quality: Float32Array | Float64Array, m: number, costs: readonly number[], knob: number): Uint16Array {
  const n = quality.length / m;
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    let bestU = -Infinity;
    for (let j = 0; j < m; j++) {
      const u = quality[i * m + j]! - knob * costs[j]!;
      if (u > bestU + 1e-12 || (Math.abs(u - bestU) <= 1e-12 && costs[j]! < costs[best]!)) {
        best = j;
        bestU = u;
      }
    }
    out[i] = best;
  }
  return out;
}

/** (mean cost, accuracy) of a set of choices against the true 0/1 (or graded) outcomes. */
export function pointOf(
  choice: Uint16Array,
  truth: Float32Array | Float64Array,
  m: number,
  costs: readonly number[],
  idx?: Uint32Array,
): CostPoint {
  const n = idx?.length ?? choice.length;
  let c = 0;
  let a = 0;
  for (let k = 0; k < n; k++) {
    const i = idx === undefined ? k : idx[k]!;
    const j = choice[i]!;
    c += costs[j]!;
    a += truth[i * m + j]!;
  }
  return { cost: c / n, accuracy: a / n };
}

/** The single models' points: the "zero router". */
export function singleModelPoints(truth: Float32Array | Float64Array, m: number, costs: readonly number[]): CostPoint[] {
  const n = truth.length / m;
  return costs.map((cost, j) => {
    let a = 0;
    for (let i = 0; i < n; i++) a += truth[i * m + j]!;
    return { cost, accuracy: a / n };
  });
}

/** Default cost-knob grid: 0, then log-spaced from 0.01 to 30 (utility = quality - knob x price). */
export const DEFAULT_KNOBS: readonly number[] = [
  0,
  ...Array.from({ length: 32 }, (_, i) => Number((0.01 * Math.pow(3000, i / 31)).toPrecision(3))),
];
