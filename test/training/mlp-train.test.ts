import { describe, expect, it } from 'vitest';
import { trainMlp, type TrainOptions, type TrainedMlp } from '../../src/training/mlp-train.js';
import { FirstLayer } from '../../src/training/first-layer.js';
import { seededRandom } from '../../src/util/random.js';

// The wasm first layer (first-layer.ts, mlp-kernels.ts) must give the plain-JS trainer's weights bit for
// bit: the shipped routers are rebuilt from their recipes and must not change. Sparse and dense inputs,
// -0 inputs, every output width class of the kernel's blocks (2, 4, 8, 16 and padding), hidden layers or
// none, dropout, tanh, zero sample weights, layers split with the helper thread, and enough steps for
// Adam's bias correction to reach 1 (the kernel without the division by it).

function rows(n: number, d: number, k: number, density: number, softmax: boolean) {
  const r = seededRandom(99);
  const X: Float32Array[] = [];
  const Y: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    const x = new Float32Array(d);
    for (let j = 0; j < d; j++) if (r() < density) x[j] = (r() * 2 - 1) * (r() < 0.1 ? 1e-3 : 1);
    if (r() < 0.05) x[0] = -0;
    X.push(x);
    const y = new Float32Array(k);
    if (softmax) y[Math.floor(r() * k)] = 1;
    else for (let o = 0; o < k; o++) y[o] = r() < 0.5 ? 1 : 0;
    Y.push(y);
  }
  return { X, Y };
}

const u32 = (a: Float32Array): number[] => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
const bits = (m: TrainedMlp): number[][] => m.weights.flatMap((l) => [u32(l.W), u32(l.b)]);

type Case = { n: number; d: number; k: number; density: number; opts: Omit<TrainOptions, 'sampleWeights'>; weighted?: boolean };

const CASES: Record<string, Case> = {
  'sparse, hidden 16, dropout, softmax': {
    n: 300,
    d: 50,
    k: 4,
    density: 0.2,
    opts: { hidden: [16], epochs: 3, lr: 0.01, batchSize: 32, l2: 1e-4, dropout: 0.2, output: 'softmax', seed: 1 },
  },
  'dense, no hidden layer, 3 sigmoid outputs, odd batch': {
    n: 300,
    d: 33,
    k: 3,
    density: 1,
    opts: { hidden: [], epochs: 3, lr: 0.01, batchSize: 7, l2: 2.5e-4, output: 'sigmoid', seed: 2 },
  },
  'no hidden layer, 57 softmax outputs (padded to 64)': {
    n: 200,
    d: 40,
    k: 57,
    density: 0.3,
    opts: { hidden: [], epochs: 2, lr: 0.01, batchSize: 64, l2: 5e-6, output: 'softmax', seed: 3 },
  },
  'two tanh layers (5, 7), dropout, no l2': {
    n: 200,
    d: 40,
    k: 2,
    density: 0.3,
    opts: { hidden: [5, 7], epochs: 3, lr: 0.003, batchSize: 16, l2: 0, activation: 'tanh', dropout: 0.3, output: 'sigmoid', seed: 4 },
  },
  'hidden 128 with sample weights, some 0': {
    n: 300,
    d: 200,
    k: 4,
    density: 0.1,
    opts: { hidden: [128], epochs: 2, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2, output: 'softmax', seed: 5 },
    weighted: true,
  },
  'one output, hidden 3': {
    n: 100,
    d: 10,
    k: 1,
    density: 0.5,
    opts: { hidden: [3], epochs: 4, lr: 0.05, batchSize: 10, output: 'sigmoid', seed: 6 },
  },
  // From 2^15 weights layer 0 is split with a helper thread (first-layer.ts): these three are above it.
  'helper thread: 2100 inputs x hidden 64, sample weights': {
    n: 300,
    d: 2100,
    k: 4,
    density: 0.1,
    opts: { hidden: [64], epochs: 3, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2, output: 'softmax', seed: 8 },
    weighted: true,
  },
  'helper thread: hidden (128, 8) tanh, odd batch': {
    n: 260,
    d: 1100,
    k: 3,
    density: 0.2,
    opts: { hidden: [128, 8], epochs: 2, lr: 0.002, batchSize: 33, l2: 1e-4, activation: 'tanh', dropout: 0.1, output: 'sigmoid', seed: 9 },
  },
  'helper thread: 4352 x 57 softmax, batches of one row': {
    n: 200,
    d: 4352,
    k: 57,
    density: 0.05,
    opts: { hidden: [], epochs: 2, lr: 0.01, batchSize: 1, l2: 5e-6, output: 'softmax', seed: 10 },
  },
  'hidden 9, 4200 Adam steps': {
    n: 400,
    d: 64,
    k: 4,
    density: 0.15,
    opts: { hidden: [9], epochs: 600, lr: 0.01, batchSize: 64, l2: 1e-4, output: 'softmax', seed: 7 },
  },
};

describe('trainMlp: wasm first layer', () => {
  it('runs here (wasm SIMD available), so the cases below compare two engines', () => {
    expect(FirstLayer.create([Float32Array.of(1, 0, 2)], new Float32Array(3 * 4), 4, 8)).not.toBeNull();
  });

  for (const [name, c] of Object.entries(CASES)) {
    it(`gives the JS loops' weights bit for bit: ${name}`, async () => {
      const { X, Y } = rows(c.n, c.d, c.k, c.density, c.opts.output === 'softmax');
      const r = seededRandom(5);
      const opts: TrainOptions = c.weighted ? { ...c.opts, sampleWeights: Float32Array.from(X, () => (r() < 0.1 ? 0 : r() * 2)) } : c.opts;
      const js = await trainMlp(X, Y, opts, 'js');
      const wasm = await trainMlp(X, Y, opts, 'auto');
      expect(bits(wasm)).toEqual(bits(js));
    });
  }
});
