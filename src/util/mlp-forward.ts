// An MLP's forward pass in f64, one fixed order of operations: training and eval (training/mlp-train.ts)
// and the gateway's plan of a trained graph (routers/mlp-plan.ts) run this one function, so the gateway
// computes what eval scored.

export interface MlpSpec {
  inputDim: number;
  hidden: number[];
  outputDim: number;
  activation: 'relu' | 'tanh';
  output: 'sigmoid' | 'softmax';
}

export interface MlpLayer {
  /** in x out, row-major: W[i * out + o]. */
  W: Float32Array;
  b: Float32Array;
}

/**
 * Forward pass shared by training, predict() and tests. `acts[l]` receives layer l's output. With
 * `firstDone`, acts[0] already holds layer 0's affine part (b + x W, from the wasm kernel).
 */
export function forward(
  spec: MlpSpec,
  layers: readonly MlpLayer[],
  x: Float32Array,
  acts: Float64Array[],
  keep: Float64Array[] | null,
  firstDone = false,
): void {
  let input: ArrayLike<number> = x;
  let inDim = spec.inputDim;
  for (let l = 0; l < layers.length; l++) {
    const { W, b } = layers[l]!;
    const out = acts[l]!;
    const outDim = b.length;
    if (l > 0 || !firstDone) {
      for (let o = 0; o < outDim; o++) out[o] = b[o]!;
      for (let i = 0; i < inDim; i++) {
        const xi = input[i]!;
        if (xi === 0) continue;
        const row = i * outDim;
        for (let o = 0; o < outDim; o++) out[o] = out[o]! + xi * W[row + o]!;
      }
    }
    const last = l === layers.length - 1;
    if (!last) {
      const relu = spec.activation === 'relu';
      const mask = keep?.[l];
      for (let o = 0; o < outDim; o++) {
        const v = relu ? (out[o]! > 0 ? out[o]! : 0) : Math.tanh(out[o]!);
        out[o] = mask === undefined ? v : v * mask[o]!;
      }
    } else if (spec.output === 'sigmoid') {
      for (let o = 0; o < outDim; o++) out[o] = 1 / (1 + Math.exp(-out[o]!));
    } else {
      let max = -Infinity;
      for (let o = 0; o < outDim; o++) max = Math.max(max, out[o]!);
      let sum = 0;
      for (let o = 0; o < outDim; o++) sum += out[o] = Math.exp(out[o]! - max);
      for (let o = 0; o < outDim; o++) out[o] = out[o]! / sum;
    }
    input = out;
    inDim = outDim;
  }
}
