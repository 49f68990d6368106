// The inner loop of exact kNN. A float32 scan of 10k x 512 rows reads 20 MB per query: ~5 ms in plain
// JS, and still ~1.7 ms with 128-bit SIMD because memory bandwidth, not arithmetic, is the limit. So the
// scan runs over an int8 copy of the rows (4x fewer bytes, 8 multiply-adds per instruction) in a small
// SIMD WebAssembly kernel, and each row gets a proven bound on its quantisation error. The caller then
// recomputes exact float similarities only for rows whose bound reaches the top k: the final neighbours
// are exactly those of a full float scan. The kernel is written out below as bytes (no toolchain, no
// download) and validated at load; plain JS is the fallback.

import {
  BLOCK,
  brIf,
  END,
  F64_PROMOTE_F32,
  f32load,
  f64c,
  get,
  I32_ADD,
  I32_EQZ,
  i32load,
  LOOP,
  set,
  stepLoop,
  tee,
  uleb,
  WASM_HEADER,
  wasmApi,
  wasmName,
  wasmSection,
  type WasmMemory,
} from '../util/wasm.js';

/** Exact dot product of q with row r; both search paths use this one function, so they agree bit for bit. */
export function rowDot(x: Float32Array, r: number, dim: number, q: Float32Array): number {
  const o = r * dim;
  const d4 = dim - (dim % 4);
  // Four accumulators break the add dependency chain.
  let a0 = 0,
    a1 = 0,
    a2 = 0,
    a3 = 0;
  let j = 0;
  for (; j < d4; j += 4) {
    a0 += x[o + j]! * q[j]!;
    a1 += x[o + j + 1]! * q[j + 1]!;
    a2 += x[o + j + 2]! * q[j + 2]!;
    a3 += x[o + j + 3]! * q[j + 3]!;
  }
  for (; j < dim; j++) a0 += x[o + j]! * q[j]!;
  return a0 + a1 + a2 + a3;
}

/** The k largest similarities, descending; ties keep the lower row first so results are deterministic. */
export function selectTopK(sims: Float32Array, rows: number, k: number, idx: Int32Array, sim: Float32Array): number {
  let n = 0;
  let floor = -Infinity;
  for (let r = 0; r < rows; r++) {
    const s = sims[r]!;
    if (n === k && !(s > floor)) continue;
    let j = n < k ? n++ : k - 1;
    while (j > 0 && sim[j - 1]! < s) {
      sim[j] = sim[j - 1]!;
      idx[j] = idx[j - 1]!;
      j--;
    }
    sim[j] = s;
    idx[j] = r;
    if (n === k) floor = sim[k - 1]!;
  }
  return n;
}

/**
 * The rows that can be among the k nearest: those whose upper bound (approximation + error bound) reaches
 * the k-th largest lower bound, in row order. Writes them to `out` (at least `rows` long) and returns how many.
 */
export interface Prefilter {
  candidates(q: Float32Array, k: number, out: Int32Array): number;
  /** Leading dimensions the approximate scan reads (the rest enter the bounds as a length). */
  readonly scanDim: number;
}

const WebAssembly = wasmApi;

/** Rows are padded to a multiple of 32 int8 values: the kernel takes two 16-byte steps per iteration. */
const PAD = 32;
const MAX_WASM_BYTES = 2 ** 31; // stay well inside wasm32's 4 GiB and V8's per-memory limit
/** Extra slack on every bound for float rounding of the scales (values are ~1e-7 relative). */
const ROUNDING_SLACK = 1e-5;
/** prefixDim(): scan a prefix only when the rows' mean length past it is at most this, in indexes this big. */
const MAX_MEAN_REST = 0.2;
const MIN_PREFIX_ROWS = 256;

/**
 * How many leading dimensions the int8 scan reads: all of them, unless the rows keep nearly all their
 * length there. Rows of a PCA-ordered embedding (the static table's) do: in the shipped kNN guards the
 * mean length past dimension 128 of 256 is under 0.2. Then each row's remaining length goes into its bound
 * (Cauchy-Schwarz: |q_rest . x_rest| <= |q_rest| |x_rest|), the scan reads half of each row, and the few
 * rows whose bound still reaches the k-th best exact similarity are scored exactly, as before. (p1-knn-guard,
 * synthetic prompts, in process: prefix 64 / 96 / 128 / all 256 dimensions: 51 / 26 / 24.5 / 38 µs a
 * search, 114 / 28 / 12 / 9 rows scored exactly; the looser 0.25 would pick 96.)
 */
export function prefixDim(vectors: Float32Array, rows: number, dim: number): number {
  const cuts = Math.floor(dim / 2 / PAD); // prefixes PAD, 2 PAD, ... up to half the row
  if (rows < MIN_PREFIX_ROWS || cuts === 0) return dim;
  // One pass (index load time): each row's length past every cut, summed per cut.
  const restSum = new Float64Array(cuts + 1);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = cuts, j = (r + 1) * dim - 1; c >= 1; c--) {
      for (const end = r * dim + c * PAD; j >= end; j--) ss += vectors[j]! * vectors[j]!;
      restSum[c] = restSum[c]! + Math.sqrt(ss);
    }
  }
  for (let c = 1; c <= cuts; c++) if (restSum[c]! / rows <= MAX_MEAN_REST) return c * PAD;
  return dim;
}

export function createInt8Prefilter(
  vectors: Float32Array,
  rows: number,
  dim: number,
  scanDim = prefixDim(vectors, rows, dim),
): Prefilter | null {
  if (WebAssembly === undefined || rows === 0) return null;
  if (!Number.isInteger(scanDim) || scanDim < 1 || scanDim > dim) throw new RangeError(`scanDim must be in 1..${dim}, got ${scanDim}`);
  const padDim = Math.ceil(scanDim / PAD) * PAD;
  const qBytes = padDim * 2;
  const outBytes = Math.ceil((rows * 4) / 64) * 64;
  // int16 query | int32 dots | int8 rows | per row f32: scale, L1 norm, approximation, error bound
  // | scanning a prefix, per row f64: length past it, upper bound
  const total = qBytes + outBytes + rows * padDim + 4 * outBytes + (scanDim < dim ? 4 * outBytes : 0);
  if (total > MAX_WASM_BYTES) return null;
  let exports: Record<string, unknown>;
  try {
    const bytes = int8DotModule();
    if (!WebAssembly.validate(bytes)) return null; // no SIMD in this runtime
    exports = new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports;
    const memory = exports['memory'] as WasmMemory;
    memory.grow(Math.ceil(total / 65_536) - memory.buffer.byteLength / 65_536);
  } catch {
    return null; // not enough address space: the JS scan still works
  }
  return new Int8Prefilter(exports, vectors, rows, dim, scanDim, padDim, qBytes, outBytes);
}

class Int8Prefilter implements Prefilter {
  private readonly run: (q: number, x: number, rows: number, rowBytes: number, out: number) => void;
  /** k = 1: every row's approximation and bound into approx/bound; returns the best lower bound. */
  private readonly bounds: (
    dots: number,
    scale: number,
    l1: number,
    approx: number,
    bound: number,
    rowBytes: number,
    sq: number,
    qL1: number,
  ) => number;
  private readonly at: { dots: number; scale: number; l1: number; approx: number; bound: number };
  private readonly q16: Int16Array;
  private readonly dots: Int32Array;
  /** Per row: the int8 scale (max |x| / 127) and the L1 norm of the quantised row. */
  private readonly scale: Float32Array;
  private readonly l1: Float32Array;
  private readonly approx: Float32Array;
  private readonly bound: Float32Array;
  /** The k largest lower bounds of a search, descending (grown to k on demand). */
  private top = new Float32Array(16);
  /** Largest |q| code such that no i32 lane can overflow: 127 * qMax * (padDim / 4) < 2^31. */
  private readonly qMax: number;
  private readonly xAt: number;
  /** Scanning a prefix (scanDim < dim): each row's upper bound of a search; where rows' lengths past it and the bounds are. */
  private readonly upper: Float64Array | null;
  private readonly restAt: number;
  private readonly upperAt: number;
  /** Over a prefix: every row's approximation and upper bound; returns the byte offset (4 a row) of the best approximation. */
  private readonly prefixBounds: (
    dots: number,
    scale: number,
    l1: number,
    rest: number,
    approx: number,
    upper: number,
    rowBytes: number,
    sq: number,
    halfQL1: number,
    halfSq: number,
    qRest: number,
  ) => number;
  /** A prefix search's k seed rows (best approximations), grown to k on demand. */
  private seedRow = new Int32Array(16);
  private seedApprox = new Float32Array(16);

  constructor(
    exports: Record<string, unknown>,
    private readonly vectors: Float32Array,
    private readonly rows: number,
    private readonly dim: number,
    readonly scanDim: number,
    private readonly padDim: number,
    qBytes: number,
    outBytes: number,
  ) {
    const buf = (exports['memory'] as WasmMemory).buffer;
    this.run = exports['dots'] as Int8Prefilter['run'];
    this.bounds = exports['bounds'] as Int8Prefilter['bounds'];
    this.prefixBounds = exports['prefixBounds'] as Int8Prefilter['prefixBounds'];
    this.q16 = new Int16Array(buf, 0, padDim);
    this.dots = new Int32Array(buf, qBytes, rows);
    this.xAt = qBytes + outBytes;
    const x8 = new Int8Array(buf, this.xAt, rows * padDim);
    const f32At = this.xAt + rows * padDim;
    this.at = { dots: qBytes, scale: f32At, l1: f32At + outBytes, approx: f32At + 2 * outBytes, bound: f32At + 3 * outBytes };
    this.scale = new Float32Array(buf, this.at.scale, rows);
    this.l1 = new Float32Array(buf, this.at.l1, rows);
    this.approx = new Float32Array(buf, this.at.approx, rows);
    this.bound = new Float32Array(buf, this.at.bound, rows);
    this.qMax = Math.min(16_383, Math.floor((2 ** 31 - 1) / (127 * (padDim / 4))));
    this.restAt = f32At + 4 * outBytes;
    this.upperAt = f32At + 6 * outBytes;
    const rest = scanDim < dim ? new Float64Array(buf, this.restAt, rows) : null;
    this.upper = scanDim < dim ? new Float64Array(buf, this.upperAt, rows) : null;
    for (let r = 0; r < rows; r++) {
      let max = 0;
      for (let j = 0; j < scanDim; j++) max = Math.max(max, Math.abs(vectors[r * dim + j]!));
      const s = max > 0 ? max / 127 : 1;
      let l1 = 0;
      for (let j = 0; j < scanDim; j++) {
        const code = Math.round(vectors[r * dim + j]! / s);
        x8[r * padDim + j] = code;
        l1 += Math.abs(code);
      }
      this.scale[r] = s;
      this.l1[r] = l1 * s;
      if (rest !== null) {
        let ss = 0;
        for (let j = scanDim; j < dim; j++) ss += vectors[r * dim + j]! * vectors[r * dim + j]!;
        rest[r] = Math.sqrt(ss);
      }
    }
  }

  candidates(q: Float32Array, k: number, out: Int32Array): number {
    if (this.upper !== null) return this.prefixCandidates(q, k, out, this.upper);
    let max = 0;
    let qL1 = 0;
    for (let j = 0; j < this.dim; j++) {
      const a = Math.abs(q[j]!);
      if (a > max) max = a;
      qL1 += a;
    }
    const sq = max > 0 ? max / this.qMax : 1;
    for (let j = 0; j < this.dim; j++) this.q16[j] = Math.round(q[j]! / sq);
    this.run(0, this.xAt, this.rows, this.padDim, this.q16.byteLength);
    if (k === 1) {
      // A guard's search: the pass below for one neighbour, its arithmetic done in wasm with the same
      // float64 operations and float32 roundings: the same rows come out (p1-knn-guard, 2,000 rows, in
      // process: 38 µs a query against 43 for the general pass, of which the int8 scan is 27).
      const { at, approx, bound } = this;
      const floor = this.bounds(at.dots, at.scale, at.l1, at.approx, at.bound, this.rows * 4, sq, qL1);
      let c = 0;
      for (let r = 0; r < this.rows; r++) if (approx[r]! + bound[r]! >= floor) out[c++] = r;
      return c;
    }
    if (this.top.length < k) this.top = new Float32Array(k);
    const { dots, scale, l1, approx, bound, top } = this;
    // One pass: each row's approximation and bound (exact - approx = sum q(x - x^) + sum (q - q^) x^, each
    // rounding error at most half a step), the k largest lower bounds so far (`top`, descending), and every
    // row whose upper bound reaches the k-th of them. That floor only rises, so the rows kept are a superset
    // of the answer, filtered once the floor is final; they stay in row order. Values are rounded to float32
    // as when they were stored between separate passes, so the rows chosen are the same (a guard search
    // over 2,000 rows: 66 -> 52 µs here, the wasm scan unchanged).
    let kept = 0;
    let n = 0;
    let floor = -Infinity;
    for (let r = 0; r < this.rows; r++) {
      const s = scale[r]!;
      const a = Math.fround(dots[r]! * sq * s);
      const b = Math.fround(0.5 * (s * qL1 + sq * l1[r]!) + ROUNDING_SLACK);
      approx[r] = a;
      bound[r] = b;
      const lo = Math.fround(a - b);
      if (n < k || lo > floor) {
        let j = n < k ? n++ : k - 1;
        while (j > 0 && top[j - 1]! < lo) {
          top[j] = top[j - 1]!;
          j--;
        }
        top[j] = lo;
        if (n === k) floor = top[k - 1]!;
      }
      if (a + b >= floor) out[kept++] = r;
    }
    let c = 0;
    for (let i = 0; i < kept; i++) {
      const r = out[i]!;
      if (approx[r]! + bound[r]! >= floor) out[c++] = r;
    }
    return c;
  }

  /**
   * Scanning a prefix: a row's upper bound is its prefix approximation + the int8 error bound + |q_rest| |x_rest|.
   * That last term makes lower bounds too loose to set the floor, so the floor is exact instead: the exact
   * similarities of the k rows with the best approximations (k rows reach it, so the k-th best of all does
   * too). Every row whose upper bound reaches it is a candidate: a superset of the answer, in row order.
   */
  private prefixCandidates(q: Float32Array, k: number, out: Int32Array, upper: Float64Array): number {
    const { rows, dim, scanDim, vectors } = this;
    let max = 0;
    let qL1 = 0;
    for (let j = 0; j < scanDim; j++) {
      const a = Math.abs(q[j]!);
      if (a > max) max = a;
      qL1 += a;
    }
    let qRest = 0;
    for (let j = scanDim; j < dim; j++) qRest += q[j]! * q[j]!;
    qRest = Math.sqrt(qRest);
    const sq = max > 0 ? max / this.qMax : 1;
    for (let j = 0; j < scanDim; j++) this.q16[j] = Math.round(q[j]! / sq);
    this.run(0, this.xAt, rows, this.padDim, this.q16.byteLength);
    const { at } = this;
    const best =
      this.prefixBounds(at.dots, at.scale, at.l1, this.restAt, at.approx, this.upperAt, rows * 4, sq, 0.5 * qL1, 0.5 * sq, qRest) >>> 2;
    const kk = Math.min(k, rows);
    if (this.seedRow.length < kk) {
      this.seedRow = new Int32Array(kk);
      this.seedApprox = new Float32Array(kk);
    }
    const { seedRow } = this;
    // A guard's search has one seed, the row with the best approximation; a router's, its k best.
    let n = 1;
    if (kk === 1) seedRow[0] = best;
    else n = selectTopK(this.approx, rows, kk, seedRow, this.seedApprox);
    // The searcher ranks float32 similarities: the floor is the k-th seed's, rounded the same way.
    let floor = Infinity;
    for (let i = 0; i < n; i++) floor = Math.min(floor, Math.fround(rowDot(vectors, seedRow[i]!, dim, q)));
    let c = 0;
    for (let r = 0; r < rows; r++) if (upper[r]! >= floor) out[c++] = r;
    return c;
  }
}

// (func (export "dots") (param $q i32) (param $x i32) (param $rows i32) (param $rowBytes i32) (param $out i32)
//   per row: int8 codes widened to i16, i32x4.dot_i16x8_s against the int16 query, two accumulators,
//   horizontal sum, i32.store to $out.
function int8DotModule(): Uint8Array {
  const Q = 0,
    X = 1,
    ROWS = 2,
    RB = 3,
    OUT = 4,
    J = 5,
    J2 = 6,
    XV = 7,
    A0 = 8,
    A1 = 9;
  const simd = (...op: number[]): number[] => [0xfd, ...op];
  const load = (offset: number) => simd(0x00, 4, offset);
  const EXT_LO = simd(0x87, 0x01); // i16x8.extend_low_i8x16_s
  const EXT_HI = simd(0x88, 0x01); // i16x8.extend_high_i8x16_s
  const DOT = simd(0xba, 0x01); // i32x4.dot_i16x8_s
  const ADD = simd(0xae, 0x01); // i32x4.add
  const lane = (n: number) => simd(0x1b, n); // i32x4.extract_lane
  const step = (a: number, xOff: number) => [
    ...get(X),
    ...get(J),
    0x6a,
    ...load(xOff),
    ...set(XV),
    ...get(a),
    ...get(XV),
    ...EXT_LO,
    ...get(Q),
    ...get(J2),
    0x6a,
    ...load(2 * xOff),
    ...DOT,
    ...ADD,
    ...get(XV),
    ...EXT_HI,
    ...get(Q),
    ...get(J2),
    0x6a,
    ...load(2 * xOff + 16),
    ...DOT,
    ...ADD,
    ...set(a),
  ];
  const body = [
    0x02,
    0x40, // block
    ...get(ROWS),
    0x45,
    0x0d,
    0, // rows == 0: done
    0x03,
    0x40, // loop over rows
    ...simd(0x0c, ...new Array<number>(16).fill(0)),
    ...tee(A0),
    ...set(A1),
    0x41,
    0,
    ...tee(J),
    ...set(J2),
    0x03,
    0x40, // loop over 32-byte steps
    ...step(A0, 0),
    ...step(A1, 16),
    ...get(J2),
    0x41,
    0xc0,
    0x00,
    0x6a,
    ...set(J2), // j2 += 64
    ...get(J),
    0x41,
    0x20,
    0x6a,
    ...tee(J), // j += 32
    ...get(RB),
    0x49,
    0x0d,
    0, // j < rowBytes: next step
    0x0b,
    ...get(OUT),
    ...get(A0),
    ...get(A1),
    ...ADD,
    ...tee(A0),
    ...lane(0),
    ...get(A0),
    ...lane(1),
    0x6a,
    ...get(A0),
    ...lane(2),
    0x6a,
    ...get(A0),
    ...lane(3),
    0x6a,
    0x36,
    2,
    0, // i32.store
    ...get(OUT),
    0x41,
    4,
    0x6a,
    ...set(OUT),
    ...get(X),
    ...get(RB),
    0x6a,
    ...set(X),
    ...get(ROWS),
    0x41,
    1,
    0x6b,
    ...tee(ROWS),
    0x0d,
    0, // next row while rows left
    0x0b, // end loop
    0x0b, // end block
    0x0b, // end func
  ];
  const locals = [2, 2, 0x7f, 3, 0x7b]; // $j $j2 : i32; $xv $a0 $a1 : v128
  const fn = [...uleb(locals.length + body.length), ...locals, ...body];
  const bounds = boundsFunction();
  const prefix = prefixBoundsFunction();
  return Uint8Array.from([
    ...WASM_HEADER,
    ...wasmSection(1, [3, 0x60, 5, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0, ...bounds.type, ...prefix.type]),
    ...wasmSection(3, [3, 0, 1, 2]),
    ...wasmSection(5, [1, 0x00, 1]),
    ...wasmSection(7, [
      4,
      ...wasmName('memory'),
      0x02,
      0,
      ...wasmName('dots'),
      0x00,
      0,
      ...wasmName('bounds'),
      0x00,
      1,
      ...wasmName('prefixBounds'),
      0x00,
      2,
    ]),
    ...wasmSection(10, [3, ...fn, ...bounds.code, ...prefix.code]),
  ]);
}

// Scalar opcodes the two bound passes below share.
const F64_MUL = [0xa2];
const F64_ADD = [0xa0];
const F32_DEMOTE = [0xb6]; // f32.demote_f64

// (func (export "bounds") (param $dots $scale $l1 $approx $bound $rowBytes i32) (param $sq $qL1 f64) (result f32)
//   per row, as candidates() computes it in JS: s = scale[r]; a = f32(f64(dots[r]) * sq * s);
//   b = f32(0.5 * (s * qL1 + sq * l1[r]) + slack); approx[r] = a; bound[r] = b; floor = max(floor, a - b)
//   (a float32 subtraction: the same as JS's fround of the float64 one). Returns floor.
function boundsFunction(): { type: number[]; code: number[] } {
  const [DOTS, SCALE, L1, APPROX, BOUND, RB, SQ, QL1] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [O, S, A, B, LO, FLOOR] = [8, 9, 10, 11, 12, 13];
  const F32 = 0x7d;
  const at = (base: number) => [...get(base), ...get(O), ...I32_ADD];
  const f32c = (x: number) => [0x43, ...new Uint8Array(Float32Array.of(x).buffer)];
  const body = [
    ...f32c(-Infinity),
    ...set(FLOOR),
    ...BLOCK,
    ...get(RB),
    ...I32_EQZ,
    ...brIf(0),
    ...LOOP,
    ...at(SCALE),
    ...f32load(),
    ...F64_PROMOTE_F32,
    ...set(S),
    // a = f32((f64(dots[r]) * sq) * s)
    ...at(DOTS),
    ...i32load(),
    0xb7, // f64.convert_i32_s
    ...get(SQ),
    ...F64_MUL,
    ...get(S),
    ...F64_MUL,
    ...F32_DEMOTE,
    ...set(A),
    // b = f32(0.5 * (s * qL1 + sq * l1[r]) + slack)
    ...f64c(0.5),
    ...get(S),
    ...get(QL1),
    ...F64_MUL,
    ...get(SQ),
    ...at(L1),
    ...f32load(),
    ...F64_PROMOTE_F32,
    ...F64_MUL,
    ...F64_ADD,
    ...F64_MUL,
    ...f64c(ROUNDING_SLACK),
    ...F64_ADD,
    ...F32_DEMOTE,
    ...set(B),
    ...at(APPROX),
    ...get(A),
    0x38, // f32.store
    2,
    0,
    ...at(BOUND),
    ...get(B),
    0x38,
    2,
    0,
    // lo = a - b; if (lo > floor) floor = lo
    ...get(A),
    ...get(B),
    0x93, // f32.sub
    ...tee(LO),
    ...get(FLOOR),
    0x5e, // f32.gt
    0x04,
    0x40, // if
    ...get(LO),
    ...set(FLOOR),
    ...END,
    ...stepLoop(O, 4, RB),
    ...END, // loop
    ...END, // block
    ...get(FLOOR),
  ];
  const decl = [3, 1, 0x7f, 1, 0x7c, 4, F32]; // $o : i32; $s : f64; $a $b $lo $floor : f32
  const code = [...decl, ...body, ...END];
  return { type: [0x60, 8, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7c, 0x7c, 1, F32], code: [...uleb(code.length), ...code] };
}

// (func (export "prefixBounds") (param $dots $scale $l1 $rest $approx $upper $rowBytes i32)
//   (param $sq $halfQL1 $halfSq $qRest f64) (result i32)
//   per row: a = f64(dots[r]) * sq * s; approx[r] = f32(a);
//   upper[r] = a + s * halfQL1 + halfSq * l1[r] + qRest * rest[r] + slack (rest and upper float64);
//   returns the byte offset (4 per row) of the first row with the largest a.
function prefixBoundsFunction(): { type: number[]; code: number[] } {
  const [DOTS, SCALE, L1, REST, APPROX, UPPER, RB, SQ, HALF_QL1, HALF_SQ, Q_REST] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const [O, P, BEST_ROW, S, A, BEST] = [11, 12, 13, 14, 15, 16];
  const at = (base: number, off: number) => [...get(base), ...get(off), ...I32_ADD];
  const f64load = [0x2b, 3, 0];
  const body = [
    ...f64c(-Infinity),
    ...set(BEST),
    ...BLOCK,
    ...get(RB),
    ...I32_EQZ,
    ...brIf(0),
    ...LOOP,
    ...at(SCALE, O),
    ...f32load(),
    ...F64_PROMOTE_F32,
    ...set(S),
    ...at(DOTS, O),
    ...i32load(),
    0xb7, // f64.convert_i32_s
    ...get(SQ),
    ...F64_MUL,
    ...get(S),
    ...F64_MUL,
    ...set(A),
    ...at(APPROX, O),
    ...get(A),
    ...F32_DEMOTE,
    0x38, // f32.store
    2,
    0,
    ...at(UPPER, P),
    ...get(A),
    ...get(S),
    ...get(HALF_QL1),
    ...F64_MUL,
    ...F64_ADD,
    ...get(HALF_SQ),
    ...at(L1, O),
    ...f32load(),
    ...F64_PROMOTE_F32,
    ...F64_MUL,
    ...F64_ADD,
    ...get(Q_REST),
    ...at(REST, P),
    ...f64load,
    ...F64_MUL,
    ...F64_ADD,
    ...f64c(ROUNDING_SLACK),
    ...F64_ADD,
    0x39, // f64.store
    3,
    0,
    ...get(A),
    ...get(BEST),
    0x64, // f64.gt
    0x04,
    0x40, // if
    ...get(A),
    ...set(BEST),
    ...get(O),
    ...set(BEST_ROW),
    ...END,
    ...get(P),
    0x41,
    8,
    ...I32_ADD,
    ...set(P), // p += 8
    ...stepLoop(O, 4, RB),
    ...END, // loop
    ...END, // block
    ...get(BEST_ROW),
  ];
  const decl = [2, 3, 0x7f, 3, 0x7c]; // $o $p $bestRow : i32; $s $a $best : f64
  const code = [...decl, ...body, ...END];
  return {
    type: [0x60, 11, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7c, 0x7c, 0x7c, 0x7c, 1, 0x7f],
    code: [...uleb(code.length), ...code],
  };
}
