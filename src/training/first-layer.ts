import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import {
  ADAM_B1,
  ADAM_B2,
  instantiateMlpKernels,
  kernelMemory,
  mlpKernelModule,
  type MlpKernels,
  type WasmMemory,
} from '../util/mlp-kernels.js';

// Layer 0 of an MLP in training, run by the wasm kernels of mlp-kernels.ts: its weights and Adam moments
// live in the kernels' memory, with every training row's nonzero inputs (CSR, built once). Per batch,
// forwardBatch() computes layer 0 for all of the batch's rows (mlp-train.ts then finishes each row in
// JS and writes its layer-0 delta to the row's slot); update() sorts the batch's nonzero inputs by
// input (in batch order within one) and has the kernel sum each weight's gradient over the batch rows
// in the order the JS loop did and apply Adam to it right away. The gradient never goes to memory, and
// inputs no batch row has get the same g = 0 update as before.
//
// Large layers split both kernels with a helper thread running a second instance on the same (shared)
// memory: rows of the batch for the forward pass, a range of inputs for gradient + Adam. Each weight
// and each row is still computed by exactly one thread with the same operations, so the bits do not
// depend on the split. P3's 4352 x 128 layer, batches of 64: 5.0 ms a batch on one thread, 3.0 ms
// with the helper (the JS rest of each row, ~0.65 ms a batch, stays on the main thread).

const MAX_WASM_BYTES = 2 ** 31; // as routers/knn-scan.ts: well inside wasm32's 4 GiB
const PAGE = 65_536;
/**
 * Layers with fewer weights train on one thread: the two hand-overs cost ~0.1 ms a batch, more than the
 * helper saves below ~128 x 64 dense inputs in batches of 64 (measured: 256 x 128 goes 1.66 -> 1.42 ms a
 * batch with it, 128 x 16 0.35 -> 0.47 ms).
 */
const HELPER_MIN_WEIGHTS = 2 ** 15;
/** Control block at the start of the memory: Int32 [seq, op, done, state] then Float64 args. */
const CTRL_BYTES = 128;
const OP_EXIT = 0;
const OP_FORWARD = 1;
const OP_GRAD_ADAM = 2;
const OP_GRAD_ADAM_C1 = 3;

/** The widest block (outputs held in registers) the layer fills at least once. */
const blockFor = (outDim: number): number => (outDim >= 16 ? 16 : outDim >= 8 ? 8 : outDim >= 4 ? 4 : 2);

type Regions = 'W' | 'M' | 'V' | 'outs' | 'D' | 'slots' | 'start' | 'crow' | 'cx' | 'idx' | 'x';

// The helper: plain JS (no TypeScript, so it runs the same from dist/ and under vitest), its own
// instance of the kernels on the shared memory, and a loop waiting on the control block.
const HELPER = `
const { workerData } = require('node:worker_threads');
const { bytes, memory } = workerData;
const ctrl = new Int32Array(memory.buffer, 0, 4);
const args = new Float64Array(memory.buffer, 16, 13);
let k;
try {
  k = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports;
  Atomics.store(ctrl, 3, 1);
} catch {
  Atomics.store(ctrl, 3, -1);
}
Atomics.notify(ctrl, 3);
let seen = 0;
while (k !== undefined) {
  Atomics.wait(ctrl, 0, seen);
  const seq = Atomics.load(ctrl, 0);
  if (seq === seen) continue;
  seen = seq;
  const op = ctrl[1];
  if (op === ${OP_EXIT}) break;
  try {
    if (op === ${OP_FORWARD}) {
      const [W, rb, idx, x, slots, q0, q1, outs, stride] = args;
      const s = new Int32Array(memory.buffer, slots, 2 * q1);
      for (let q = q0; q < q1; q++) k.forward(W, rb, idx + 4 * s[2 * q], x + 4 * s[2 * q], s[2 * q + 1] - s[2 * q], outs + q * stride);
    } else {
      (op === ${OP_GRAD_ADAM} ? k.gradAdam : k.gradAdamC1)(...args);
    }
  } catch {
    Atomics.store(ctrl, 3, -1);
  }
  Atomics.store(ctrl, 2, seq);
  Atomics.notify(ctrl, 2);
}
`;

/** A helper thread on the kernels' memory; run() hands it one job and waits for it. */
class Helper {
  private seq = 0;
  private stopped = false;
  private constructor(
    private readonly worker: Worker,
    private readonly ctrl: Int32Array,
    private readonly args: Float64Array,
  ) {}

  /** Started and ready, or null (no second core, or it did not start within 10 s). */
  static start(bytes: Uint8Array, memory: WasmMemory): Helper | null {
    if (availableParallelism() < 2) return null;
    const ctrl = new Int32Array(memory.buffer, 0, 4);
    let worker: Worker;
    try {
      worker = new Worker(HELPER, { eval: true, workerData: { bytes, memory } });
    } catch {
      return null;
    }
    worker.unref();
    // Blocking here is what makes the hand-over cheap later: the helper only ever touches the memory.
    Atomics.wait(ctrl, 3, 0, 10_000);
    if (Atomics.load(ctrl, 3) !== 1) {
      void worker.terminate();
      return null;
    }
    return new Helper(worker, ctrl, new Float64Array(memory.buffer, 16, 13));
  }

  /** Hands the helper `op` with `args`, runs `own` meanwhile, and waits for the helper. */
  run(op: number, args: readonly number[], own: () => void): void {
    const { ctrl } = this;
    this.args.set(args);
    ctrl[1] = op;
    const seq = ++this.seq;
    Atomics.store(ctrl, 0, seq);
    Atomics.notify(ctrl, 0);
    own();
    for (let done = Atomics.load(ctrl, 2); done !== seq; done = Atomics.load(ctrl, 2)) Atomics.wait(ctrl, 2, done);
    if (Atomics.load(ctrl, 3) !== 1) throw new Error('training: the wasm helper thread failed');
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.ctrl[1] = OP_EXIT;
    Atomics.store(this.ctrl, 0, ++this.seq);
    Atomics.notify(this.ctrl, 0);
    void this.worker.terminate();
  }
}

export class FirstLayer {
  private readonly outs: Float64Array[];
  private readonly deltas: Float64Array[];
  /** (from, to) of each slot's entries in the CSR of all rows, in the kernels' memory. */
  private readonly slots: Int32Array;
  /** After update(): input i's batch entries are start[i] .. start[i + 1]. */
  private readonly start: Int32Array;
  /** Layer 0's weights, inDim rows of outP (padded). */
  private readonly W: Float32Array;

  private constructor(
    private readonly k: MlpKernels,
    private readonly helper: Helper | null,
    memory: WasmMemory,
    private readonly inDim: number,
    private readonly outDim: number,
    private readonly outP: number,
    private readonly at: Record<Regions, number>,
    private readonly rowStart: Int32Array,
    batchSize: number,
  ) {
    const buf = memory.buffer;
    this.outs = Array.from({ length: batchSize }, (_, q) => new Float64Array(buf, at.outs + q * outP * 8, outDim));
    this.deltas = Array.from({ length: batchSize }, (_, q) => new Float64Array(buf, at.D + q * outP * 8, outDim));
    this.slots = new Int32Array(buf, at.slots, 2 * batchSize);
    this.start = new Int32Array(buf, at.start, inDim + 2);
    this.W = new Float32Array(buf, at.W, inDim * outP);
  }

  /**
   * Copies `W0` (inDim x outDim) and the nonzero inputs of every row of X into a new kernel instance;
   * null when wasm SIMD is missing or the rows do not fit (the caller keeps the JS loops).
   */
  static create(X: readonly Float32Array[], W0: Float32Array, outDim: number, batchSize: number): FirstLayer | null {
    const inDim = X[0]!.length;
    const block = blockFor(outDim);
    const outP = Math.ceil(outDim / block) * block;
    const rowStart = new Int32Array(X.length + 1);
    let total = 0;
    let widest = 0;
    for (let r = 0; r < X.length; r++) {
      const x = X[r]!;
      let nz = 0;
      for (let i = 0; i < inDim; i++) if (x[i] !== 0) nz++;
      total += nz;
      widest = Math.max(widest, nz);
      rowStart[r + 1] = total; // wraps only past 2^31 entries, which the size check below refuses
    }
    const batchNz = Math.min(batchSize, X.length) * widest;
    const sizes: Record<Regions, number> = {
      W: inDim * outP * 4,
      M: inDim * outP * 4,
      V: inDim * outP * 4,
      outs: batchSize * outP * 8,
      D: batchSize * outP * 8,
      slots: batchSize * 8,
      start: (inDim + 2) * 4,
      crow: batchNz * 4,
      cx: batchNz * 4,
      idx: total * 4,
      x: total * 4,
    };
    const at = {} as Record<Regions, number>;
    let bytes = CTRL_BYTES;
    for (const [name, size] of Object.entries(sizes) as Array<[Regions, number]>) {
      at[name] = bytes;
      bytes += Math.ceil(size / 16) * 16;
    }
    if (bytes > MAX_WASM_BYTES) return null;
    const module = mlpKernelModule(block);
    const memory = module === null ? null : kernelMemory(Math.ceil(bytes / PAGE));
    const k = module === null || memory === null ? null : instantiateMlpKernels(module, memory);
    if (k === null || memory === null || module === null) return null;
    const buf = memory.buffer;
    const W = new Float32Array(buf, at.W, inDim * outP);
    for (let i = 0; i < inDim; i++) W.set(W0.subarray(i * outDim, (i + 1) * outDim), i * outP);
    const idx = new Int32Array(buf, at.idx, total);
    const xs = new Float32Array(buf, at.x, total);
    let n = 0;
    for (const x of X) {
      for (let i = 0; i < inDim; i++) {
        const v = x[i]!;
        if (v === 0) continue; // as the JS loops: exact zeros (either sign) add nothing
        idx[n] = i;
        xs[n++] = v;
      }
    }
    const helper = inDim * outP >= HELPER_MIN_WEIGHTS ? Helper.start(module, memory) : null;
    return new FirstLayer(k, helper, memory, inDim, outDim, outP, at, rowStart, batchSize);
  }

  /** Layer 0's affine part (b + x W, before the activation) for the batch: slot q is training row rows[q], q < used. */
  forwardBatch(rows: Int32Array, used: number, b: Float32Array): void {
    const { at, rowStart, slots, outs, outP } = this;
    for (let q = 0; q < used; q++) {
      const r = rows[q]!;
      slots[2 * q] = rowStart[r]!;
      slots[2 * q + 1] = rowStart[r + 1]!;
      const out = outs[q]!;
      for (let o = 0; o < this.outDim; o++) out[o] = b[o]!;
    }
    const run = (q0: number, q1: number): void => {
      for (let q = q0; q < q1; q++) {
        const from = slots[2 * q]!;
        this.k.forward(at.W, outP * 4, at.idx + from * 4, at.x + from * 4, slots[2 * q + 1]! - from, at.outs + q * outP * 8);
      }
    };
    const half = used >> 1;
    if (this.helper === null || half === 0) run(0, used);
    else this.helper.run(OP_FORWARD, [at.W, outP * 4, at.idx, at.x, at.slots, half, used, at.outs, outP * 8], () => run(0, half));
  }

  /** Slot q's layer-0 output (outDim values) after forwardBatch. */
  out(q: number): Float64Array {
    return this.outs[q]!;
  }

  /** Slot q's layer-0 delta (outDim values; the padding stays 0). */
  delta(q: number): Float64Array {
    return this.deltas[q]!;
  }

  /** Gradient of the batch's `used` slots (as left by forwardBatch) and Adam step t for W, as adamStep in mlp-train.ts. */
  update(used: number, t: number, lr: number, l2: number, norm: number): void {
    const { at, k, inDim, outP } = this;
    k.gather(at.slots, used, at.idx, at.x, at.start, at.crow, at.cx, inDim, at.D, outP * 8);
    const c1 = 1 - ADAM_B1 ** t;
    const c2 = 1 - ADAM_B2 ** t;
    const rb = outP * 4;
    const kernel = c1 === 1 ? k.gradAdamC1 : k.gradAdam;
    const range = (i0: number, i1: number): number[] => [
      at.W + i0 * rb,
      at.M + i0 * rb,
      at.V + i0 * rb,
      i1 - i0,
      rb,
      at.start + i0 * 4,
      at.crow,
      at.cx,
      norm,
      2 * l2,
      c1,
      c2,
      lr,
    ];
    if (this.helper === null) {
      kernel(...(range(0, inDim) as Parameters<MlpKernels['gradAdam']>));
      return;
    }
    const split = this.split();
    this.helper.run(c1 === 1 ? OP_GRAD_ADAM_C1 : OP_GRAD_ADAM, range(split, inDim), () =>
      kernel(...(range(0, split) as Parameters<MlpKernels['gradAdam']>)),
    );
  }

  /**
   * The input where the work of gradient + Adam halves: each input costs its Adam update (one unit) plus
   * its batch entries (ENTRY units each). Measured on P3: Adam 1.47 ms for 557k weights, gradient
   * 1.1 ms for ~48k entries x 128 outputs, so an entry costs ~ (1.1 / 48k) / (1.47 / 4352) ~ 0.07 of an input.
   */
  private split(): number {
    const ENTRY = 0.07;
    const { start, inDim } = this;
    const cost = (i: number): number => i + ENTRY * start[i]!;
    const half = cost(inDim) / 2;
    let lo = 0;
    let hi = inDim;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cost(mid) < half) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Layer 0's weights, inDim x outDim, copied out of the kernels' memory; stops the helper thread. */
  weights(): Float32Array {
    this.close();
    const out = new Float32Array(this.inDim * this.outDim);
    for (let i = 0; i < this.inDim; i++) out.set(this.W.subarray(i * this.outP, i * this.outP + this.outDim), i * this.outDim);
    return out;
  }

  close(): void {
    this.helper?.stop();
  }
}
