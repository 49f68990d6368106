// A small multi-layer perceptron trained with Adam, in plain JS. Why not tfjs: without tfjs-node its
// CPU backend took 7.4 s per epoch on 7k x 512 rows here (a minute and more per model), and its fit()
// shuffles with Math.random and reuses one dropout mask per seed, so runs were not reproducible. This
// trainer draws every random number from one seeded generator and sums in a fixed order: the same
// seed gives bit-identical weights. Zero inputs are skipped in the first layer (hashed text features
// are sparse), which is most of the work; it runs in WebAssembly (first-layer.ts) with the same bits.
import { seededRandom } from '../util/random.js';
import { ADAM_B1, ADAM_B2, ADAM_EPS } from '../util/mlp-kernels.js';
import { FirstLayer } from './first-layer.js';
import { forward, type MlpLayer, type MlpSpec } from '../util/mlp-forward.js';

export type { MlpLayer, MlpSpec };

export interface TrainedMlp {
  spec: MlpSpec;
  weights: MlpLayer[];
  predict(x: Float32Array): Float32Array;
}

export interface TrainOptions {
  hidden: number[];
  activation?: 'relu' | 'tanh';
  output: 'sigmoid' | 'softmax';
  epochs: number;
  lr: number;
  batchSize: number;
  /** Adds l2 * sum(W^2) over weight matrices (not biases) to the loss. */
  l2?: number;
  /** Inverted dropout on hidden activations during training. */
  dropout?: number;
  seed: number;
  sampleWeights?: Float32Array;
  onEpoch?: (epoch: number, loss: number) => void;
}

const EPS = 1e-7;

export function makeMlp(spec: MlpSpec, weights: MlpLayer[]): TrainedMlp {
  const dims = [spec.inputDim, ...spec.hidden, spec.outputDim];
  if (weights.length !== dims.length - 1)
    throw new Error(`MLP: ${weights.length} layers of weights for ${dims.length - 1} layers in the spec`);
  weights.forEach((w, l) => {
    if (w.W.length !== dims[l]! * dims[l + 1]! || w.b.length !== dims[l + 1]!) {
      throw new Error(`MLP: layer ${l} weights do not match ${dims[l]} -> ${dims[l + 1]}`);
    }
  });
  const acts = dims.slice(1).map((d) => new Float64Array(d));
  return {
    spec,
    weights,
    predict(x: Float32Array): Float32Array {
      if (x.length !== spec.inputDim) throw new Error(`MLP expects ${spec.inputDim} inputs, got ${x.length}`);
      forward(spec, weights, x, acts, null);
      return Float32Array.from(acts[acts.length - 1]!);
    },
  };
}

function validate(X: readonly Float32Array[], Y: readonly Float32Array[], o: TrainOptions): void {
  if (X.length === 0) throw new Error('trainMlp: no training rows');
  if (Y.length !== X.length) throw new Error(`trainMlp: ${X.length} inputs but ${Y.length} targets`);
  const inDim = X[0]!.length;
  const outDim = Y[0]!.length;
  X.forEach((x, i) => {
    if (x.length !== inDim) throw new Error(`trainMlp: input ${i} has length ${x.length}, expected ${inDim}`);
  });
  Y.forEach((y, i) => {
    if (y.length !== outDim) throw new Error(`trainMlp: target ${i} has length ${y.length}, expected ${outDim}`);
    for (const v of y) if (!(v >= 0 && v <= 1)) throw new Error(`trainMlp: target ${i} has value ${v}; targets must be in 0..1`);
  });
  if (o.sampleWeights && o.sampleWeights.length !== X.length) {
    throw new Error(`trainMlp: ${o.sampleWeights.length} sample weights for ${X.length} rows`);
  }
  if (!(o.epochs >= 1 && o.batchSize >= 1 && o.lr > 0)) throw new Error('trainMlp: epochs and batchSize must be >= 1 and lr > 0');
  if (o.dropout !== undefined && !(o.dropout >= 0 && o.dropout < 1))
    throw new Error(`trainMlp: dropout must be in [0, 1), got ${o.dropout}`);
  if (o.hidden.some((h) => !Number.isInteger(h) || h < 1))
    throw new Error(`trainMlp: hidden sizes must be positive integers, got ${o.hidden.join(',')}`);
}

/**
 * `engine`: 'auto' runs layer 0 in the wasm kernels (first-layer.ts) when this runtime has them, 'js'
 * always uses the plain loops below; both give the same bits (test/training/mlp-train.test.ts).
 */
export async function trainMlp(
  X: Float32Array[],
  Y: Float32Array[],
  opts: TrainOptions,
  engine: 'auto' | 'js' = 'auto',
): Promise<TrainedMlp> {
  validate(X, Y, opts);
  const spec: MlpSpec = {
    inputDim: X[0]!.length,
    hidden: [...opts.hidden],
    outputDim: Y[0]!.length,
    activation: opts.activation ?? 'relu',
    output: opts.output,
  };
  const rand = seededRandom(opts.seed);
  const dims = [spec.inputDim, ...spec.hidden, spec.outputDim];
  const L = dims.length - 1;
  const layers: MlpLayer[] = [];
  for (let l = 0; l < L; l++) {
    const fanIn = dims[l]!;
    const fanOut = dims[l + 1]!;
    // He-uniform before ReLU, Glorot-uniform otherwise.
    const limit = l < L - 1 && spec.activation === 'relu' ? Math.sqrt(6 / fanIn) : Math.sqrt(6 / (fanIn + fanOut));
    const W = new Float32Array(fanIn * fanOut);
    for (let i = 0; i < W.length; i++) W[i] = (rand() * 2 - 1) * limit;
    layers.push({ W, b: new Float32Array(fanOut) });
  }
  // Layer 0's weights, moments and gradient live in the kernels' memory when they run (none here).
  const fast = engine === 'auto' ? FirstLayer.create(X, layers[0]!.W, dims[1]!, opts.batchSize) : null;
  const own = (l: number, len: number): number => (fast !== null && l === 0 ? 0 : len);
  const grads = layers.map((w, l) => ({ W: new Float64Array(own(l, w.W.length)), b: new Float64Array(w.b.length) }));
  const m1 = layers.map((w, l) => ({ W: new Float32Array(own(l, w.W.length)), b: new Float32Array(w.b.length) }));
  const m2 = layers.map((w, l) => ({ W: new Float32Array(own(l, w.W.length)), b: new Float32Array(w.b.length) }));
  const acts: Float64Array[] = dims.slice(1).map((d) => new Float64Array(d));
  const deltas: Float64Array[] = dims.slice(1).map((d) => new Float64Array(d));
  const rate = opts.dropout ?? 0;
  // Each row's dropout masks, drawn for the whole batch first (in row order, as before: nothing else
  // draws random numbers within a batch) so that layer 0 can run for all of its rows at once.
  const keeps = rate > 0 ? Array.from({ length: opts.batchSize }, () => spec.hidden.map((h) => new Float64Array(h))) : null;
  const batchRows = new Int32Array(opts.batchSize);
  const batchWeights = new Float64Array(opts.batchSize);
  const l2 = opts.l2 ?? 0;
  const n = X.length;
  const order = Int32Array.from({ length: n }, (_, i) => i);
  let step = 0;

  try {
    for (let epoch = 0; epoch < opts.epochs; epoch++) {
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        const t = order[i]!;
        order[i] = order[j]!;
        order[j] = t;
      }
      let lossSum = 0;
      let weightSum = 0;
      for (let start = 0; start < n; start += opts.batchSize) {
        const end = Math.min(n, start + opts.batchSize);
        for (const g of grads) {
          g.W.fill(0);
          g.b.fill(0);
        }
        let batchWeight = 0;
        let used = 0;
        for (let p = start; p < end; p++) {
          const row = order[p]!;
          const w = opts.sampleWeights ? opts.sampleWeights[row]! : 1;
          if (w === 0) continue;
          batchWeight += w;
          if (keeps) for (const k of keeps[used]!) for (let o = 0; o < k.length; o++) k[o] = rand() < rate ? 0 : 1 / (1 - rate);
          batchRows[used] = row;
          batchWeights[used++] = w;
        }
        fast?.forwardBatch(batchRows, used, layers[0]!.b);
        for (let q = 0; q < used; q++) {
          const row = batchRows[q]!;
          const w = batchWeights[q]!;
          const keep = keeps === null ? null : keeps[q]!;
          const x = X[row]!;
          const y = Y[row]!;
          if (fast !== null) {
            // Layer 0's output is the kernels'; its delta goes to the row's slot for fast.update.
            acts[0] = fast.out(q);
            deltas[0] = fast.delta(q);
          }
          forward(spec, layers, x, acts, keep, fast !== null);
          lossSum += w * lossOf(spec, acts[L - 1]!, y);
          // Output delta: (p - y) for sigmoid + BCE (mean over outputs) and for softmax + cross-entropy.
          const out = acts[L - 1]!;
          const dOut = deltas[L - 1]!;
          const scale = spec.output === 'sigmoid' ? w / spec.outputDim : w;
          for (let o = 0; o < out.length; o++) dOut[o] = (out[o]! - y[o]!) * scale;
          for (let l = L - 1; l >= 0; l--) {
            const input: ArrayLike<number> = l === 0 ? x : acts[l - 1]!;
            const inDim = dims[l]!;
            const outDim = dims[l + 1]!;
            const d = deltas[l]!;
            const g = grads[l]!;
            for (let o = 0; o < outDim; o++) g.b[o] = g.b[o]! + d[o]!;
            if (l === 0 && fast !== null) break; // fast.update adds layer 0's W gradient
            for (let i = 0; i < inDim; i++) {
              const xi = input[i]!;
              if (xi === 0) continue;
              const r = i * outDim;
              for (let o = 0; o < outDim; o++) g.W[r + o] = g.W[r + o]! + xi * d[o]!;
            }
            if (l === 0) break;
            // Delta for the hidden layer below: W d, times the activation's derivative (and the mask).
            const W = layers[l]!.W;
            const below = deltas[l - 1]!;
            const a = acts[l - 1]!;
            for (let i = 0; i < inDim; i++) {
              if (spec.activation === 'relu' && a[i]! <= 0) {
                below[i] = 0;
                continue;
              }
              let s = 0;
              const r = i * outDim;
              for (let o = 0; o < outDim; o++) s += W[r + o]! * d[o]!;
              const mask = keep ? keep[l - 1]![i]! : 1;
              if (mask === 0) below[i] = 0;
              else if (spec.activation === 'relu') below[i] = s * mask;
              else {
                const t = a[i]! / mask; // undo the mask to recover tanh(z)
                below[i] = s * (1 - t * t) * mask;
              }
            }
          }
        }
        weightSum += batchWeight;
        if (batchWeight === 0) continue;
        step++;
        adamStep(layers, grads, m1, m2, step, opts.lr, l2, 1 / batchWeight, fast === null ? 0 : 1);
        fast?.update(used, step, opts.lr, l2, 1 / batchWeight);
      }
      opts.onEpoch?.(epoch, weightSum > 0 ? lossSum / weightSum : 0);
      // Yield between epochs so a CLI progress bar and signals stay responsive during long runs.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    fast?.close();
  }
  if (fast !== null) layers[0]!.W = fast.weights();
  return makeMlp(spec, layers);
}

function lossOf(spec: MlpSpec, p: Float64Array, y: Float32Array): number {
  let loss = 0;
  if (spec.output === 'sigmoid') {
    for (let o = 0; o < p.length; o++) {
      const q = Math.min(1 - EPS, Math.max(EPS, p[o]!));
      loss -= y[o]! * Math.log(q) + (1 - y[o]!) * Math.log(1 - q);
    }
    return loss / p.length;
  }
  for (let o = 0; o < p.length; o++) if (y[o]! > 0) loss -= y[o]! * Math.log(Math.max(EPS, p[o]!));
  return loss;
}

type Grad = { W: Float64Array; b: Float64Array };
type Moment = { W: Float32Array; b: Float32Array };

/** Adam with L2 decay; the W of layers below `fromW` are updated elsewhere (first-layer.ts, the same rule). */
function adamStep(
  layers: MlpLayer[],
  grads: Grad[],
  m1: Moment[],
  m2: Moment[],
  t: number,
  lr: number,
  l2: number,
  norm: number,
  fromW: number,
): void {
  const b1 = ADAM_B1;
  const b2 = ADAM_B2;
  const c1 = 1 - b1 ** t;
  const c2 = 1 - b2 ** t;
  const update = (p: Float32Array, g: Float64Array, m: Float32Array, v: Float32Array, decay: number) => {
    for (let i = 0; i < p.length; i++) {
      const gi = g[i]! * norm + decay * p[i]!;
      m[i] = b1 * m[i]! + (1 - b1) * gi;
      v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
      p[i] = p[i]! - (lr * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + ADAM_EPS);
    }
  };
  layers.forEach((layer, l) => {
    if (l >= fromW) update(layer.W, grads[l]!.W, m1[l]!.W, m2[l]!.W, 2 * l2);
    update(layer.b, grads[l]!.b, m1[l]!.b, m2[l]!.b, 0);
  });
}
