// Ensembles of small networks that still ship as ONE model.onnx for the `mlp` router: each part reads
// a slice of the input vector (one member of a concat embedder, or all of it), runs its own MLP, and
// the parts' outputs are mixed with fixed weights. A part may end in a fixed table:
// - category prior: a softmax over categories (e.g. MMLU subjects) times each category's mean outcome
//   per model on the train rows;
// - joint: a softmax over the joint 0/1 outcomes of all models (for two: both wrong, only the second
//   right, only the first, both) times the 0/1 table of who is right, which learns the prompts where
//   the models differ directly;
// - centroid prior: spherical k-means centroids of the train vectors, a softmax over cosine /
//   temperature to them, times each cluster's mean outcomes (a smoothed nearest-neighbour estimate).
// Weights sum to 1 and every part gives values in 0..1, so the mix is still a predicted P(correct) per
// model, which is what the gateway's utility rule expects.
import { makeMlp, trainMlp, type MlpSpec, type TrainOptions, type TrainedMlp } from './mlp-train.js';
import { seededRandom } from '../util/random.js';

export interface EnsemblePart {
  /** The part reads input[start, end). */
  start: number;
  end: number;
  mlp: TrainedMlp;
  /** mlp outputs x ensemble outputs, row-major; when set the part's output is mlp(x) @ table. */
  table?: Float32Array;
  weight: number;
}

export interface EnsembleGraph {
  parts: EnsemblePart[];
}

/** A trained ensemble; `weights` is empty (the parts hold them) and `spec` describes the whole. */
export interface TrainedEnsemble extends TrainedMlp {
  ensemble: EnsembleGraph;
}

export const isEnsemble = (m: TrainedMlp): m is TrainedEnsemble => (m as Partial<TrainedEnsemble>).ensemble !== undefined;

/** Every row of a (rows x cols) table is a distribution: then softmax x table is one too. */
const isStochastic = (t: Float32Array, cols: number): boolean => {
  for (let r = 0; r < t.length; r += cols) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += t[r + c]!;
    if (!(Math.abs(s - 1) < 1e-6)) return false;
  }
  return true;
};

/**
 * Checks the parts fit together and builds the combined predictor. `output` 'softmax': the parts are
 * classifiers (softmax MLPs, each with no table or a table of distributions, e.g. fine classes summed
 * into their labels) and the mix, a weighted mean of their probabilities, is one.
 */
export function makeEnsemble(
  inputDim: number,
  outputDim: number,
  parts: EnsemblePart[],
  output: 'sigmoid' | 'softmax' = 'sigmoid',
): TrainedEnsemble {
  if (parts.length === 0) throw new Error('ensemble: no parts');
  const total = parts.reduce((s, p) => s + p.weight, 0);
  if (!(Math.abs(total - 1) < 1e-6) || parts.some((p) => !(p.weight > 0))) {
    throw new Error(`ensemble: part weights must be positive and sum to 1, got ${parts.map((p) => p.weight).join(', ')}`);
  }
  parts.forEach((p, k) => {
    if (!(p.start >= 0 && p.end <= inputDim && p.end > p.start))
      throw new Error(`ensemble part ${k}: slice [${p.start}, ${p.end}) is outside 0..${inputDim}`);
    if (p.mlp.spec.inputDim !== p.end - p.start)
      throw new Error(`ensemble part ${k}: its MLP takes ${p.mlp.spec.inputDim} inputs, the slice has ${p.end - p.start}`);
    const out = p.table === undefined ? p.mlp.spec.outputDim : p.table.length / p.mlp.spec.outputDim;
    if (p.table !== undefined && p.table.length !== p.mlp.spec.outputDim * outputDim) {
      throw new Error(`ensemble part ${k}: table has ${p.table.length} entries, expected ${p.mlp.spec.outputDim} x ${outputDim}`);
    }
    if (out !== outputDim) throw new Error(`ensemble part ${k}: gives ${out} outputs, the ensemble ${outputDim}`);
    if (output === 'softmax' && (p.mlp.spec.output !== 'softmax' || (p.table !== undefined && !isStochastic(p.table, outputDim))))
      throw new Error(`ensemble part ${k}: a softmax ensemble mixes softmax MLPs, with no table or one whose rows are distributions`);
  });
  const spec: MlpSpec = { inputDim, hidden: [], outputDim, activation: 'relu', output };
  return {
    spec,
    weights: [],
    ensemble: { parts },
    predict(x: Float32Array): Float32Array {
      if (x.length !== inputDim) throw new Error(`ensemble expects ${inputDim} inputs, got ${x.length}`);
      const y = new Float64Array(outputDim);
      for (const p of parts) {
        const h = p.mlp.predict(x.subarray(p.start, p.end));
        if (p.table === undefined) {
          for (let o = 0; o < outputDim; o++) y[o] = y[o]! + p.weight * h[o]!;
        } else {
          for (let o = 0; o < outputDim; o++) {
            let s = 0;
            for (let c = 0; c < h.length; c++) s += h[c]! * p.table[c * outputDim + o]!;
            y[o] = y[o]! + p.weight * s;
          }
        }
      }
      return Float32Array.from(y);
    },
  };
}

/** One part of an ensemble recipe. */
export interface EnsembleMemberRecipe {
  /** Which slice of the input: index of a concat embedder's member, or 'all'. */
  input: number | 'all';
  /**
   * quality: the MLP predicts the targets (in a softmax ensemble: classifies). category-prior: a softmax classifier of each row's
   * category (needs categories), whose output is multiplied by each category's mean target; in a softmax
   * ensemble, whose categories are finer classes of the labels, that sums each label's classes.
   * joint: a softmax over the 2^m joint 0/1 outcomes of the m targets (needs 0/1 targets, m <= 4),
   * whose output is multiplied by the 0/1 table of each outcome's targets: a P(correct) per model.
   * centroid-prior: k-means clusters of the train vectors (no mlp settings; `clusters`, `temperature`).
   */
  kind: 'quality' | 'category-prior' | 'joint' | 'centroid-prior';
  /** Network settings; every kind but centroid-prior needs them. */
  mlp?: Omit<TrainOptions, 'output' | 'seed' | 'sampleWeights' | 'onEpoch'>;
  /**
   * category-prior: classify (category, joint 0/1 outcome of the targets) pairs instead of categories, so
   * a linear member gets a direction per outcome within each category; the table is then each pair's outcome.
   */
  joint?: boolean;
  /** centroid-prior: number of clusters and softmax temperature over cosine similarities. */
  clusters?: number;
  temperature?: number;
  seed: number;
  weight: number;
}

export interface EnsembleFitInput {
  /** Training vectors (full width) and their 0..1 targets. */
  X: readonly Float32Array[];
  Y: readonly Float32Array[];
  /** Category of each training row; needed by category-prior members. */
  categories?: readonly string[];
  /** [start, end) of each concat member in the input vector (one slice of all for other embedders). */
  slices: ReadonlyArray<readonly [number, number]>;
  /**
   * 'softmax': a classifier; Y are one-hot labels and every member is a 'quality' or 'category-prior'
   * member whose MLP ends in a softmax (trained with `sampleWeights`, if any). Default 'sigmoid'.
   */
  output?: 'sigmoid' | 'softmax';
  sampleWeights?: Float32Array;
  onEpoch?: (member: number, epoch: number) => void;
}

/** Trains each member on its slice and joins them. Deterministic: each member has its own seed. */
export async function trainEnsemble(members: readonly EnsembleMemberRecipe[], input: EnsembleFitInput): Promise<TrainedEnsemble> {
  const inputDim = input.X[0]!.length;
  const outputDim = input.Y[0]!.length;
  const output = input.output ?? 'sigmoid';
  if (output === 'softmax' && members.some((m) => m.kind !== 'quality' && m.kind !== 'category-prior'))
    throw new Error("ensemble: a softmax ensemble (a classifier) takes 'quality' and 'category-prior' members only");
  if (output === 'sigmoid' && input.sampleWeights !== undefined) throw new Error('ensemble: sample weights are for softmax ensembles only');
  const parts: EnsemblePart[] = [];
  for (const [k, m] of members.entries()) {
    const slice = m.input === 'all' ? ([0, inputDim] as const) : input.slices[m.input];
    if (slice === undefined)
      throw new Error(`ensemble member ${k} reads input ${String(m.input)}, the embedder has ${input.slices.length} parts`);
    const [start, end] = slice;
    const Xs = input.X.map((x) => x.subarray(start, end));
    if (m.kind === 'centroid-prior') {
      parts.push(centroidPrior(Xs, input.Y, m, start, end));
      input.onEpoch?.(k, 0);
      continue;
    }
    if (m.mlp === undefined) throw new Error(`ensemble member ${k} (${m.kind}) has no mlp settings`);
    const onEpoch = input.onEpoch === undefined ? undefined : (e: number) => input.onEpoch!(k, e);
    const common = { ...m.mlp, seed: m.seed, ...(onEpoch === undefined ? {} : { onEpoch }) };
    const weights = input.sampleWeights === undefined ? {} : { sampleWeights: input.sampleWeights };
    if (m.kind === 'quality') {
      const mlp = await trainMlp(Xs, [...input.Y], { ...common, output, ...weights });
      parts.push({ start, end, mlp, weight: m.weight });
      continue;
    }
    if (m.kind === 'joint') {
      if (outputDim > 4) throw new Error(`ensemble member ${k}: a joint-outcome member takes at most 4 targets, got ${outputDim}`);
      const classes = 2 ** outputDim;
      // Class c has target o right when bit (outputDim - 1 - o) of c is set: for two models 0 = both
      // wrong, 1 = only the second right, 2 = only the first, 3 = both.
      const table = new Float32Array(classes * outputDim);
      for (let c = 0; c < classes; c++) for (let o = 0; o < outputDim; o++) table[c * outputDim + o] = (c >> (outputDim - 1 - o)) & 1;
      const oneHot = input.Y.map((y, i) => {
        const v = new Float32Array(classes);
        v[jointOutcome(y, k, i)] = 1;
        return v;
      });
      const mlp = await trainMlp(Xs, oneHot, { ...common, output: 'softmax' });
      parts.push({ start, end, mlp, table, weight: m.weight });
      continue;
    }
    const given = input.categories;
    if (given === undefined || given.length !== input.X.length)
      throw new Error(`ensemble member ${k} is a category prior but the rows have no categories`);
    const cats = m.joint === true ? given.map((c, i) => `${c}|${jointOutcome(input.Y[i]!, k, i)}`) : given;
    const labels = [...new Set(cats)].sort();
    const index = new Map(labels.map((c, i) => [c, i]));
    const oneHot = cats.map((c) => {
      const v = new Float32Array(labels.length);
      v[index.get(c)!] = 1;
      return v;
    });
    // Each category's mean target on the train rows: what the prior predicts for a sure category.
    const table = new Float32Array(labels.length * outputDim);
    const counts = new Float64Array(labels.length);
    const sums = new Float64Array(labels.length * outputDim);
    cats.forEach((c, i) => {
      const r = index.get(c)!;
      counts[r] = counts[r]! + 1;
      for (let o = 0; o < outputDim; o++) sums[r * outputDim + o] = sums[r * outputDim + o]! + input.Y[i]![o]!;
    });
    for (let r = 0; r < labels.length; r++)
      for (let o = 0; o < outputDim; o++) table[r * outputDim + o] = sums[r * outputDim + o]! / counts[r]!;
    const mlp = await trainMlp(Xs, oneHot, { ...common, output: 'softmax', ...weights });
    parts.push({ start, end, mlp, table, weight: m.weight });
  }
  return makeEnsemble(inputDim, outputDim, parts, output);
}

/** The joint 0/1 outcome of a row's targets as a number (first target the highest bit). */
function jointOutcome(y: Float32Array, member: number, row: number): number {
  let c = 0;
  for (let o = 0; o < y.length; o++) {
    if (y[o] !== 0 && y[o] !== 1)
      throw new Error(`ensemble member ${member}: a joint-outcome member needs 0/1 targets; row ${row} has ${y[o]}`);
    c = c * 2 + y[o]!;
  }
  return c;
}

const K_MEANS_ITERATIONS = 20;

/**
 * Spherical k-means (seeded: the first centroids are distinct random rows), then a softmax layer
 * whose weights are centroid / temperature, and a table of each cluster's soft-assigned mean target
 * with one pseudo-row at the overall mean (so a small cluster does not claim certainty).
 */
function centroidPrior(
  X: readonly Float32Array[],
  Y: readonly Float32Array[],
  m: EnsembleMemberRecipe,
  start: number,
  end: number,
): EnsemblePart {
  const K = m.clusters ?? 64;
  const tau = m.temperature ?? 0.05;
  const n = X.length;
  const d = end - start;
  const outputDim = Y[0]!.length;
  if (!(Number.isInteger(K) && K >= 2 && K <= n)) throw new Error(`centroid prior: clusters must be a whole number in 2..${n}, got ${K}`);
  if (!(tau > 0)) throw new Error(`centroid prior: temperature must be > 0, got ${tau}`);
  const rand = seededRandom(m.seed);
  const pick = new Set<number>();
  while (pick.size < K) pick.add(Math.floor(rand() * n));
  const C = [...pick].map((i) => Float64Array.from(X[i]!));
  const dot = (x: Float32Array, c: Float64Array): number => {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[j]! * c[j]!;
    return s;
  };
  const nearest = (x: Float32Array): number => {
    let best = 0;
    let bestS = -Infinity;
    C.forEach((c, k) => {
      const s = dot(x, c);
      if (s > bestS) {
        best = k;
        bestS = s;
      }
    });
    return best;
  };
  for (let it = 0; it < K_MEANS_ITERATIONS; it++) {
    const sums = C.map(() => new Float64Array(d));
    const counts = new Int32Array(K);
    for (const x of X) {
      const k = nearest(x);
      counts[k] = counts[k]! + 1;
      const s = sums[k]!;
      for (let j = 0; j < d; j++) s[j] = s[j]! + x[j]!;
    }
    sums.forEach((s, k) => {
      if (counts[k] === 0) return; // an empty cluster keeps its centroid
      const norm = Math.hypot(...s);
      if (norm > 0) for (let j = 0; j < d; j++) C[k]![j] = s[j]! / norm;
    });
  }
  const W = new Float32Array(d * K);
  C.forEach((c, k) => {
    for (let j = 0; j < d; j++) W[j * K + k] = c[j]! / tau;
  });
  const mlp = makeMlp({ inputDim: d, hidden: [], outputDim: K, activation: 'relu', output: 'softmax' }, [{ W, b: new Float32Array(K) }]);
  const mass = new Float64Array(K).fill(1);
  const sums = new Float64Array(K * outputDim);
  const overall = new Float64Array(outputDim);
  Y.forEach((y) => y.forEach((v, o) => (overall[o] = overall[o]! + v / n)));
  for (let k = 0; k < K; k++) for (let o = 0; o < outputDim; o++) sums[k * outputDim + o] = overall[o]!;
  X.forEach((x, i) => {
    const a = mlp.predict(x);
    for (let k = 0; k < K; k++) {
      mass[k] = mass[k]! + a[k]!;
      for (let o = 0; o < outputDim; o++) sums[k * outputDim + o] = sums[k * outputDim + o]! + a[k]! * Y[i]![o]!;
    }
  });
  const table = Float32Array.from(sums, (v, i) => v / mass[Math.floor(i / outputDim)]!);
  return { start, end, mlp, table, weight: m.weight };
}
