// The graphs `signalman train` writes (training/onnx-export.ts: Gemm + activation layers, or an ensemble
// of such networks over slices of the input, each times a prior table and a weight, summed) run here
// without onnxruntime. Why: an onnxruntime-node call costs ~20 µs before any arithmetic (tensor, N-API,
// a setImmediate hop, a node at a time), and its dense first layer reads every weight row although a
// hashed n-gram vector is ~90% zeros: the P3 guard's 4352 x 128 layer is 2.2 MB a call, which under load
// comes from L3 or memory. Here the input's nonzero entries are listed once and the wasm kernel of
// util/mlp-kernels.ts (the trainer's own forward kernel) adds only their weight rows; the small layers
// after it run in JS. Arithmetic is f64 over the file's f32 weights, in the order of the trainer's JS
// forward pass (util/mlp-forward.ts, the same function), so results equal what `eval` scores up to the f32
// rounding of an ensemble's part weights.
// Anything this reader does not recognise stays with onnxruntime (OnnxMlp decides, after checking that
// both agree on probe inputs).
import onnxProto from 'onnx-proto';
import { knownNonZeros } from '../embedders/common.js';
import { forward, type MlpSpec } from '../util/mlp-forward.js';
import { instantiateMlpKernels, kernelMemory, mlpKernelModule, type MlpKernels } from '../util/mlp-kernels.js';

const { onnx } = onnxProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type NodeProto = onnxProto.onnx.INodeProto;

interface Layer {
  /** inDim x outDim, row-major, as exported. */
  W: Float32Array;
  b: Float32Array;
}

/** One network: layers read [start, end) of the input. */
interface Member {
  start: number;
  end: number;
  layers: Layer[];
  activation: 'relu' | 'tanh' | null;
  output: 'sigmoid' | 'softmax' | null;
  /** Ensemble parts: the prior table (outputs x graph outputs) and the part's weight. */
  table: Float32Array | null;
  weight: number | null;
}

export interface ExportedGraph {
  inputDim: number;
  outputDim: number;
  members: Member[];
  /** The parts are summed (an ensemble) rather than one network giving 'y'. */
  ensemble: boolean;
}

type Value =
  | { kind: 'x' }
  | { kind: 'slice'; start: number; end: number }
  | { kind: 'net'; m: Member; at: 'affine' | 'hidden' | 'out' | 'table' }
  | { kind: 'part'; m: Member }
  | { kind: 'sum'; parts: Member[] };

/** The graph as networks and parts, or why it is not one this reader runs (onnxruntime keeps it). */
export function readExportedGraph(bytes: Uint8Array): ExportedGraph | string {
  let g;
  try {
    g = onnx.ModelProto.decode(bytes).graph;
  } catch (err) {
    return `not an ONNX model (${err instanceof Error ? err.message : String(err)})`;
  }
  if (!g) return 'no graph';
  const xIn = (g.input ?? []).find((i) => i.name === 'x');
  const inputDim = Number(xIn?.type?.tensorType?.shape?.dim?.[1]?.dimValue ?? 0);
  if (!(inputDim > 0)) return "input 'x' has no fixed width";
  const init = new Map((g.initializer ?? []).map((t) => [t.name ?? '', t]));
  const values = new Map<string, Value>([['x', { kind: 'x' }]]);
  const used = new Set<string>();
  // Each value feeds exactly one node (x aside): a network state is mutated as its chain grows.
  const take = (name: string | undefined): Value | string => {
    if (name === undefined) return 'a node lacks an input';
    const v = values.get(name);
    if (v === undefined) return `'${name}' is not a value this reader knows`;
    if (name !== 'x') {
      if (used.has(name)) return `'${name}' is read twice`;
      used.add(name);
    }
    return v;
  };
  for (const node of g.node ?? []) {
    const r = step(node, take, init, inputDim);
    if (typeof r === 'string') return `${node.opType} '${node.name}': ${r}`;
    const out = node.output ?? [];
    if (out.length !== 1) return `${node.opType} '${node.name}' has ${out.length} outputs`;
    values.set(out[0]!, r);
  }
  const y = values.get('y');
  if (y === undefined || g.output?.length !== 1 || g.output[0]!.name !== 'y') return "no single output 'y'";
  let members: Member[];
  if (y.kind === 'net' && y.at === 'out' && y.m.start === 0 && y.m.end === inputDim) members = [y.m];
  else if (y.kind === 'sum') members = y.parts;
  else return "'y' is neither a network's output nor a sum of weighted parts";
  const outs = members.map((m) => (m.table ? m.table.length / m.layers.at(-1)!.b.length : m.layers.at(-1)!.b.length));
  if (outs.some((o) => o !== outs[0])) return 'the parts give different numbers of outputs';
  return { inputDim, outputDim: outs[0]!, members, ensemble: y.kind === 'sum' };
}

function step(
  node: NodeProto,
  take: (n: string | undefined) => Value | string,
  init: Map<string, TensorProto>,
  inputDim: number,
): Value | string {
  const input = node.input ?? [];
  const a = take(input[0]);
  if (typeof a === 'string') return a;
  const attrs = new Map((node.attribute ?? []).map((t) => [t.name ?? '', t]));
  switch (node.opType) {
    case 'Slice': {
      if (a.kind !== 'x') return 'slices something other than x';
      const [starts, ends, axes, steps] = [1, 2, 3, 4].map((i) => ints(init.get(input[i] ?? '')));
      if (starts?.length !== 1 || ends?.length !== 1) return 'needs one start and one end';
      if (axes !== undefined && !(axes.length === 1 && (axes[0] === 1 || axes[0] === -1))) return 'slices an axis other than 1';
      if (steps !== undefined && !(steps.length === 1 && steps[0] === 1)) return 'has a step';
      const start = starts[0]!;
      const end = Math.min(ends[0]!, inputDim);
      if (!(start >= 0 && end > start)) return `slice [${start}, ${end}) is empty or negative`;
      return { kind: 'slice', start, end };
    }
    case 'Gemm': {
      for (const [k, t] of attrs) {
        const v = t.type === onnx.AttributeProto.AttributeType.FLOAT ? t.f : Number(t.i ?? 0);
        if (!((k === 'alpha' || k === 'beta') && v === 1) && !((k === 'transA' || k === 'transB') && v === 0)) return `attribute ${k}=${v}`;
      }
      const W = floats(init.get(input[1] ?? ''));
      const b = floats(init.get(input[2] ?? ''));
      const dims = init.get(input[1] ?? '')?.dims?.map(Number);
      if (!W || !b || dims?.length !== 2 || dims[1] !== b.length) return 'needs a 2-D weight and a matching bias';
      let m: Member;
      if (a.kind === 'x' || a.kind === 'slice') {
        const [start, end] = a.kind === 'x' ? [0, inputDim] : [a.start, a.end];
        m = { start, end, layers: [], activation: null, output: null, table: null, weight: null };
        if (dims[0] !== end - start) return `weight has ${dims[0]} rows for ${end - start} inputs`;
      } else if (a.kind === 'net' && a.at === 'hidden') {
        m = a.m;
        if (dims[0] !== m.layers.at(-1)!.b.length) return 'weight rows do not match the previous layer';
      } else return 'reads something other than x, a slice or a hidden layer';
      m.layers.push({ W, b });
      return { kind: 'net', m, at: 'affine' };
    }
    case 'Relu':
    case 'Tanh': {
      if (a.kind !== 'net' || a.at !== 'affine') return 'follows something other than a Gemm';
      const act = node.opType === 'Relu' ? 'relu' : 'tanh';
      if (a.m.activation !== null && a.m.activation !== act) return 'mixes activations in one network';
      a.m.activation = act;
      return { kind: 'net', m: a.m, at: 'hidden' };
    }
    case 'Sigmoid':
    case 'Softmax': {
      if (a.kind !== 'net' || a.at !== 'affine') return 'follows something other than a Gemm';
      const axis = attrs.get('axis');
      if (node.opType === 'Softmax' && axis !== undefined && Number(axis.i) !== 1 && Number(axis.i) !== -1) return 'softmax over axis 0';
      a.m.output = node.opType === 'Sigmoid' ? 'sigmoid' : 'softmax';
      return { kind: 'net', m: a.m, at: 'out' };
    }
    case 'MatMul': {
      if (a.kind !== 'net' || a.at !== 'out') return "multiplies something other than a network's output";
      const table = floats(init.get(input[1] ?? ''));
      const dims = init.get(input[1] ?? '')?.dims?.map(Number);
      if (!table || dims?.length !== 2 || dims[0] !== a.m.layers.at(-1)!.b.length) return 'table rows do not match the outputs';
      a.m.table = table;
      return { kind: 'net', m: a.m, at: 'table' };
    }
    case 'Mul': {
      if (a.kind !== 'net' || (a.at !== 'out' && a.at !== 'table')) return "scales something other than a network's output";
      const w = floats(init.get(input[1] ?? ''));
      if (w?.length !== 1) return 'scales by something other than one constant';
      a.m.weight = w[0]!;
      return { kind: 'part', m: a.m };
    }
    case 'Sum': {
      const parts: Member[] = [];
      for (let i = 0; i < input.length; i++) {
        const v = i === 0 ? a : take(input[i]);
        if (typeof v === 'string') return v;
        if (v.kind !== 'part') return 'sums something other than weighted parts';
        parts.push(v.m);
      }
      return { kind: 'sum', parts };
    }
    default:
      return 'an operator this reader does not run';
  }
}

function floats(t: TensorProto | undefined): Float32Array | undefined {
  if (t === undefined || t.dataType !== onnx.TensorProto.DataType.FLOAT) return undefined;
  if (t.rawData && t.rawData.length > 0) {
    const out = new Float32Array(t.rawData.length / 4);
    new Uint8Array(out.buffer).set(t.rawData); // little-endian, as the ONNX spec and every Node platform
    return out;
  }
  return Float32Array.from(t.floatData ?? []);
}

function ints(t: TensorProto | undefined): number[] | undefined {
  if (t === undefined || t.dataType !== onnx.TensorProto.DataType.INT64) return undefined;
  if (t.rawData && t.rawData.length > 0) {
    const v = new BigInt64Array(new Uint8Array(t.rawData).buffer);
    return Array.from(v, Number);
  }
  return (t.int64Data ?? []).map(Number);
}

// ---- execution -------------------------------------------------------------------------------------

/** The first position in idx[0..count) holding a value >= v (idx is ascending). */
function lowerBound(idx: Int32Array, count: number, v: number): number {
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (idx[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Outputs of a block of the kernel are held in registers; the widest block a layer fills at least once. */
const blockFor = (outDim: number): number => (outDim >= 16 ? 16 : outDim >= 8 ? 8 : outDim >= 4 ? 4 : 2);
const align = (n: number): number => Math.ceil(n / 16) * 16;

interface Placed {
  m: Member;
  kernel: MlpKernels;
  /** Byte address of the first layer's row 0 minus start rows, so absolute input indices address it. */
  wBase: number;
  rowBytes: number;
  outP: number;
  /** The member as the trainer's forward() takes it, and its activations (f64 scratch per layer). */
  spec: MlpSpec;
  acts: Float64Array[];
  /** The member's result rounded to f32, as the trainer's predict() returns it. */
  h: Float32Array;
}

/** Runs an ExportedGraph: synchronous, no allocation beyond the returned vector. */
export class MlpPlan {
  private constructor(
    private readonly graph: ExportedGraph,
    private readonly placed: Placed[],
    private readonly idx: Int32Array,
    private readonly xv: Float32Array,
    private readonly idxAt: number,
    private readonly xAt: number,
    private readonly out: Float64Array,
    private readonly outAt: number,
    private readonly bias: Float64Array[],
    private readonly y: Float64Array,
  ) {}

  /** null when this runtime has no wasm SIMD or shared memory. */
  static create(graph: ExportedGraph): MlpPlan | null {
    const n = graph.inputDim;
    const geo = graph.members.map((m) => {
      const outDim = m.layers[0]!.b.length;
      const block = blockFor(outDim);
      return { block, outP: Math.ceil(outDim / block) * block };
    });
    const maxOutP = Math.max(...geo.map((g) => g.outP));
    let at = 0;
    const idxAt = at;
    at = align(at + 4 * n);
    const xAt = at;
    at = align(at + 4 * n);
    const outAt = at;
    at = align(at + 8 * maxOutP);
    const wAt = graph.members.map((m, k) => {
      const here = at;
      at = align(at + 4 * (m.end - m.start) * geo[k]!.outP);
      return here;
    });
    const memory = kernelMemory(Math.ceil(at / 65_536) + 1);
    if (memory === null) return null;
    const kernels = new Map<number, MlpKernels>();
    for (const { block } of geo) {
      if (kernels.has(block)) continue;
      const bytes = mlpKernelModule(block);
      const k = bytes && instantiateMlpKernels(bytes, memory);
      if (!k) return null;
      kernels.set(block, k);
    }
    const buf = memory.buffer;
    const placed = graph.members.map((m, k): Placed => {
      const { W, b } = m.layers[0]!;
      const { outP, block } = geo[k]!;
      const rows = new Float32Array(buf, wAt[k]!, (m.end - m.start) * outP);
      for (let i = 0; i < m.end - m.start; i++) rows.set(W.subarray(i * b.length, (i + 1) * b.length), i * outP);
      return {
        m,
        kernel: kernels.get(block)!,
        wBase: wAt[k]! - m.start * outP * 4,
        rowBytes: outP * 4,
        outP,
        spec: {
          inputDim: m.end - m.start,
          hidden: m.layers.slice(0, -1).map((l) => l.b.length),
          outputDim: m.layers.at(-1)!.b.length,
          activation: m.activation ?? 'relu',
          output: m.output ?? 'sigmoid',
        },
        acts: m.layers.map((l) => new Float64Array(l.b.length)),
        h: new Float32Array(m.layers.at(-1)!.b.length),
      };
    });
    const bias = placed.map((p) => {
      const v = new Float64Array(p.outP);
      v.set(p.m.layers[0]!.b);
      return v;
    });
    return new MlpPlan(
      graph,
      placed,
      new Int32Array(buf, idxAt, n),
      new Float32Array(buf, xAt, n),
      idxAt,
      xAt,
      new Float64Array(buf, outAt, maxOutP),
      outAt,
      bias,
      new Float64Array(graph.outputDim),
    );
  }

  get inputDim(): number {
    return this.graph.inputDim;
  }

  run(x: Float32Array): Float32Array {
    const { idx, xv, placed, y } = this;
    // The nonzero inputs once, in index order: each member's slice is a contiguous run of them. A concat
    // vector comes with its list (a pass over 4352 inputs costs ~10 µs); any other is scanned.
    let count = 0;
    const known = knownNonZeros(x);
    if (known !== undefined) {
      for (let j = 0; j < known.length; j++) {
        const i = known[j]!;
        const v = x[i]!;
        if (v !== 0) {
          idx[count] = i;
          xv[count++] = v;
        }
      }
    } else {
      for (let i = 0; i < x.length; i++) {
        const v = x[i]!;
        if (v !== 0) {
          idx[count] = i;
          xv[count++] = v;
        }
      }
    }
    const result = new Float32Array(this.graph.outputDim);
    if (this.graph.ensemble) y.fill(0);
    for (let k = 0; k < placed.length; k++) {
      const p = placed[k]!;
      const m = p.m;
      // Members' slices may start anywhere and overlap: each is the run of entries in [start, end).
      const lo = lowerBound(idx, count, m.start);
      const hi = lowerBound(idx, count, m.end);
      this.out.set(this.bias[k]!);
      p.kernel.forward(p.wBase, p.rowBytes, this.idxAt + 4 * lo, this.xAt + 4 * lo, hi - lo, this.outAt);
      const h = this.finish(p, x);
      if (!this.graph.ensemble) {
        result.set(h);
        return result;
      }
      const w = m.weight!;
      const t = m.table;
      const outDim = y.length;
      if (t === null) for (let o = 0; o < outDim; o++) y[o] = y[o]! + w * h[o]!;
      else {
        for (let o = 0; o < outDim; o++) {
          let s = 0;
          for (let c = 0; c < h.length; c++) s += h[c]! * t[c * outDim + o]!;
          y[o] = y[o]! + w * s;
        }
      }
    }
    result.set(y);
    return result;
  }

  /** Layer 0's affine part is in `out`; the rest is the trainer's own forward(). Returns p.h. */
  private finish(p: Placed, x: Float32Array): Float32Array {
    const first = p.acts[0]!;
    for (let o = 0; o < first.length; o++) first[o] = this.out[o]!;
    forward(p.spec, p.m.layers, x, p.acts, null, true);
    p.h.set(p.acts[p.acts.length - 1]!);
    return p.h;
  }
}
