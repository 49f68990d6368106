// The first layer of an MLP is most of its training time: for the P3 guard (4352 inputs x 128, 49k
// rows, 30 epochs, trained twice) the plain-JS loops took 22.6 s an epoch, ~11 of the 15 minutes of
// `npm run eval`. These kernels do its work in 128-bit SIMD WebAssembly: 3.8 s an epoch (2.3 s with
// first-layer.ts's helper thread). They are written out below as bytes (no toolchain, no download; the
// way routers/knn-scan.ts does it) and validated at load; mlp-train.ts keeps the JS loops as the
// fallback and as the reference.
//
// They give the JS trainer's weights bit for bit: every value is computed in f64 with the same
// operations in the same order as the JS (whose arithmetic is f64), f32 values are promoted on load
// and rounded to nearest on store exactly as a Float32Array store rounds, and IEEE add, mul, div and
// sqrt are correctly rounded in both. Two lanes compute two independent weights; no sum is split.
//
// Layout: W, m and v are inDim rows of `outP` f32 (the layer's outputs padded with zero columns to a
// whole number of BLOCKs; padded weights stay exactly 0 under Adam since their gradient and value are
// 0). A block of outputs is held in registers while a row's (or a batch column's) nonzero inputs
// stream past it.

import {
  BLOCK,
  brIf,
  END,
  F64,
  F64_PROMOTE_F32,
  F64X2_ADD,
  F64X2_DIV,
  F64X2_MUL,
  F64X2_SPLAT,
  F64X2_SQRT,
  F64X2_SUB,
  f64c,
  f32load,
  func,
  get,
  I32,
  I32_ADD,
  I32_EQZ,
  I32_LT_U,
  I32_MUL,
  i32c,
  i32load,
  loadF32x2,
  LOOP,
  set,
  simd,
  stepLoop,
  storeF32x2,
  tee,
  uleb,
  V128,
  V128_ZERO,
  v128load,
  v128store,
  WASM_HEADER,
  wasmName,
  wasmSection,
  wasmApi,
  type WasmMemory,
} from './wasm.js';

/** Kernel entry points; every pointer is a byte offset into the memory given at instantiation. */
export interface MlpKernels {
  /**
   * out[o] += x[k] * W[idx[k]][o] for k = 0..count-1 in order, all o < outP (out: f64, preset to the
   * bias; idx: i32 input index; x: f32).
   */
  forward(W: number, outBytesF32: number, idx: number, x: number, count: number, out: number): void;
  /**
   * The batch's nonzero inputs sorted by input: slots holds (from, to) element offsets into idx / x for
   * each of `used` rows; afterwards start[i]..start[i+1] (start: inDim + 2 i32) are the entries of input i,
   * in slot order, with row = byte address of the slot's D row (dBase + q * dRowBytes) and x its value.
   */
  gather(
    slots: number,
    used: number,
    idx: number,
    x: number,
    start: number,
    row: number,
    cx: number,
    inDim: number,
    dBase: number,
    dRowBytes: number,
  ): void;
  /**
   * For each input i: g = sum over k in start[i]..start[i+1] (in order) of x[k] * D_k[o], where D_k is
   * the f64 row at byte address row[k]; then Adam on W[i], m[i], v[i] with that g (0 for inputs no row
   * of the batch has): gi = g*norm + decay*w, as mlp-train.ts's adamStep. gradAdamC1 is the same
   * without the division m / c1, for c1 === 1 (x / 1 === x exactly), which it is from Adam step 356 on
   * (0.9^t < 2^-54): Adam over P3's 557k weights 2.16 -> 1.47 ms.
   */
  gradAdam(
    W: number,
    M: number,
    V: number,
    inDim: number,
    outBytesF32: number,
    start: number,
    row: number,
    x: number,
    norm: number,
    decay: number,
    c1: number,
    c2: number,
    lr: number,
  ): void;
  gradAdamC1: MlpKernels['gradAdam'];
}

export type { WasmMemory };
const WebAssembly = wasmApi;

/** Adam's constants, written as in mlp-train.ts so the f64 values are the same. */
export const ADAM_B1 = 0.9;
export const ADAM_B2 = 0.999;
export const ADAM_EPS = 1e-8;

/** Largest memory the module accepts, in 64 KiB pages (wasm32's 4 GiB). */
const MAX_PAGES = 65_536;

/**
 * The module for blocks of `block` outputs (2, 4, 8 or 16): it imports its memory as env.memory,
 * shared (a helper thread runs a second instance on it); null when this runtime lacks wasm SIMD or
 * shared memory.
 */
export function mlpKernelModule(block: number): Uint8Array | null {
  if (WebAssembly === undefined || ![2, 4, 8, 16].includes(block)) return null;
  const bytes = mlpModule(block);
  try {
    return WebAssembly.validate(bytes) ? bytes : null;
  } catch {
    return null;
  }
}

/** A shared memory of `pages` pages for the kernels, or null when it cannot be had. */
export function kernelMemory(pages: number): WasmMemory | null {
  if (WebAssembly === undefined || pages > MAX_PAGES) return null;
  try {
    return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  } catch {
    return null; // not enough address space
  }
}

export function instantiateMlpKernels(bytes: Uint8Array, memory: WasmMemory): MlpKernels | null {
  if (WebAssembly === undefined) return null;
  try {
    const ex = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports;
    return {
      forward: ex['forward'] as MlpKernels['forward'],
      gather: ex['gather'] as MlpKernels['gather'],
      gradAdam: ex['gradAdam'] as MlpKernels['gradAdam'],
      gradAdamC1: ex['gradAdamC1'] as MlpKernels['gradAdam'],
    };
  } catch {
    return null;
  }
}

// ---- encoding --------------------------------------------------------------------------------------

/** acc[j] += x * (the f64 pair `load(j)` reads at local `addr`), for each of `pairs` accumulators from local `acc`. */
const madPairs = (pairs: number, acc: number, x: number, addr: number, load: (j: number) => number[]): number[] =>
  Array.from({ length: pairs }, (_, j) => [
    ...get(acc + j),
    ...get(x),
    ...get(addr),
    ...load(j),
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...set(acc + j),
  ]).flat();

// ---- kernels ---------------------------------------------------------------------------------------

function forwardFunc(block: number) {
  // params
  const W = 0,
    RB = 1,
    IDX = 2,
    X = 3,
    COUNT = 4,
    OUT = 5;
  // locals
  const OB = 6, // byte offset of the block in a W row (f32)
    K = 7, // byte offset into idx / x
    END_K = 8,
    WP = 9,
    XV = 10,
    A = 11; // block / 2 accumulators
  const pairs = block / 2;
  const body = [
    ...get(COUNT),
    ...I32_EQZ,
    0x04,
    0x40, // if count == 0: nothing to add
    0x0f, // return
    ...END,
    ...get(COUNT),
    ...i32c(4),
    ...I32_MUL,
    ...set(END_K),
    ...i32c(0),
    ...set(OB),
    ...LOOP, // blocks of outputs
    ...Array.from({ length: pairs }, (_, j) => [
      ...get(OUT),
      ...get(OB),
      ...i32c(1),
      0x74,
      ...I32_ADD,
      ...v128load(16 * j),
      ...set(A + j),
    ]).flat(),
    ...i32c(0),
    ...set(K),
    ...LOOP, // nonzero inputs, in order
    ...get(X),
    ...get(K),
    ...I32_ADD,
    ...f32load(),
    ...F64_PROMOTE_F32,
    ...F64X2_SPLAT,
    ...set(XV),
    ...get(W),
    ...get(IDX),
    ...get(K),
    ...I32_ADD,
    ...i32load(),
    ...get(RB),
    ...I32_MUL,
    ...I32_ADD,
    ...get(OB),
    ...I32_ADD,
    ...set(WP),
    ...madPairs(pairs, A, XV, WP, (j) => loadF32x2(8 * j)),
    ...stepLoop(K, 4, END_K),
    ...END,
    ...Array.from({ length: pairs }, (_, j) => [
      ...get(OUT),
      ...get(OB),
      ...i32c(1),
      0x74,
      ...I32_ADD,
      ...get(A + j),
      ...v128store(16 * j),
    ]).flat(),
    ...stepLoop(OB, 4 * block, RB),
    ...END,
  ];
  return func(
    [I32, I32, I32, I32, I32, I32],
    [
      [4, I32],
      [1 + pairs, V128],
    ],
    body,
  );
}

function gradAdamFunc(block: number, c1IsOne: boolean) {
  // params
  const W = 0,
    M = 1,
    V = 2,
    IN = 3,
    RB = 4,
    START = 5,
    ROW = 6,
    X = 7,
    NORM = 8,
    DECAY = 9,
    C1 = 10,
    C2 = 11,
    LR = 12;
  // locals
  const I = 13, // byte offset into start (4 per input)
    END_I = 14,
    OFF = 15, // byte offset of the current row of W, m, v
    OB = 16,
    K = 17,
    END_K = 18,
    BEGIN_K = 19,
    DP = 20,
    S_NORM = 21, // v128 from here
    S_DECAY = 22,
    S_C1 = 23,
    S_C2 = 24,
    S_LR = 25,
    XV = 26,
    GI = 27,
    MV = 28,
    VV = 29,
    PV = 30,
    A = 31;
  const pairs = block / 2;
  const splat = (from: number, to: number) => [...get(from), ...F64X2_SPLAT, ...set(to)];
  const splatConst = (x: number) => [...f64c(x), ...F64X2_SPLAT];
  const addr = (base: number) => [...get(base), ...get(OFF), ...I32_ADD, ...get(OB), ...I32_ADD];
  // One pair of weights at byte offset 8j of the block: exactly adamStep's update in mlp-train.ts.
  const adamPair = (j: number) => [
    ...addr(W),
    ...loadF32x2(8 * j),
    ...set(PV),
    // gi = g * norm + decay * p
    ...get(A + j),
    ...get(S_NORM),
    ...F64X2_MUL,
    ...get(S_DECAY),
    ...get(PV),
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...set(GI),
    // m = b1 * m + (1 - b1) * gi, stored as f32
    ...addr(M),
    ...splatConst(ADAM_B1),
    ...addr(M),
    ...loadF32x2(8 * j),
    ...F64X2_MUL,
    ...splatConst(1 - ADAM_B1),
    ...get(GI),
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...simd(0x5e),
    ...tee(MV),
    ...simd(0x5b, 3, ...uleb(8 * j), 0),
    // v = b2 * v + (1 - b2) * gi * gi, stored as f32
    ...addr(V),
    ...splatConst(ADAM_B2),
    ...addr(V),
    ...loadF32x2(8 * j),
    ...F64X2_MUL,
    ...splatConst(1 - ADAM_B2),
    ...get(GI),
    ...F64X2_MUL,
    ...get(GI),
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...simd(0x5e),
    ...tee(VV),
    ...simd(0x5b, 3, ...uleb(8 * j), 0),
    // p = p - (lr * (m / c1)) / (sqrt(v / c2) + eps), with m and v as stored (f32)
    ...addr(W),
    ...get(PV),
    ...get(S_LR),
    ...get(MV),
    ...simd(0x5f),
    ...(c1IsOne ? [] : [...get(S_C1), ...F64X2_DIV]),
    ...F64X2_MUL,
    ...get(VV),
    ...simd(0x5f),
    ...get(S_C2),
    ...F64X2_DIV,
    ...F64X2_SQRT,
    ...splatConst(ADAM_EPS),
    ...F64X2_ADD,
    ...F64X2_DIV,
    ...F64X2_SUB,
    ...storeF32x2(8 * j),
  ];
  const body = [
    ...splat(NORM, S_NORM),
    ...splat(DECAY, S_DECAY),
    ...splat(C1, S_C1),
    ...splat(C2, S_C2),
    ...splat(LR, S_LR),
    ...get(IN),
    ...I32_EQZ,
    0x04,
    0x40,
    0x0f, // no inputs: return
    ...END,
    ...get(IN),
    ...i32c(4),
    ...I32_MUL,
    ...set(END_I),
    ...i32c(0),
    ...set(I),
    ...i32c(0),
    ...set(OFF),
    ...LOOP, // inputs
    ...get(START),
    ...get(I),
    ...I32_ADD,
    ...i32load(0),
    ...i32c(4),
    ...I32_MUL,
    ...set(BEGIN_K),
    ...get(START),
    ...get(I),
    ...I32_ADD,
    ...i32load(4),
    ...i32c(4),
    ...I32_MUL,
    ...set(END_K),
    ...i32c(0),
    ...set(OB),
    ...LOOP, // blocks of outputs
    ...Array.from({ length: pairs }, (_, j) => [...V128_ZERO, ...set(A + j)]).flat(),
    ...get(BEGIN_K),
    ...set(K),
    ...BLOCK,
    ...get(K),
    ...get(END_K),
    ...I32_LT_U,
    ...I32_EQZ,
    ...brIf(0), // no batch row has this input: g = 0
    ...LOOP, // the batch rows having this input, in batch order
    ...get(X),
    ...get(K),
    ...I32_ADD,
    ...f32load(),
    ...F64_PROMOTE_F32,
    ...F64X2_SPLAT,
    ...set(XV),
    ...get(ROW),
    ...get(K),
    ...I32_ADD,
    ...i32load(),
    ...get(OB),
    ...i32c(1),
    0x74, // i32.shl: f64 offset = 2 x f32 offset
    ...I32_ADD,
    ...set(DP),
    ...madPairs(pairs, A, XV, DP, (j) => v128load(16 * j)),
    ...stepLoop(K, 4, END_K),
    ...END, // loop
    ...END, // block
    ...Array.from({ length: pairs }, (_, j) => adamPair(j)).flat(),
    ...stepLoop(OB, 4 * block, RB),
    ...END, // blocks
    ...get(OFF),
    ...get(RB),
    ...I32_ADD,
    ...set(OFF),
    ...stepLoop(I, 4, END_I),
    ...END, // inputs
  ];
  return func(
    [I32, I32, I32, I32, I32, I32, I32, I32, F64, F64, F64, F64, F64],
    [
      [8, I32],
      [10 + pairs, V128],
    ],
    body,
  );
}

function gatherFunc() {
  // params
  const SLOTS = 0,
    USED = 1,
    IDX = 2,
    X = 3,
    S = 4,
    ROW = 5,
    CX = 6,
    IN = 7,
    DBASE = 8,
    DRB = 9;
  // locals
  const Q = 10, // byte offset into slots (8 per slot)
    Q_END = 11,
    K = 12, // byte offset into idx / x
    K_END = 13,
    P = 14, // byte address in start
    P_END = 15,
    ADDR = 16, // the slot's D row
    POS = 17; // byte offset into row / cx; also the running sum
  const whileLt = (a: number, b: number, body: number[], step: number) => [
    ...BLOCK,
    ...get(a),
    ...get(b),
    ...I32_LT_U,
    ...I32_EQZ,
    ...brIf(0),
    ...LOOP,
    ...body,
    ...stepLoop(a, step, b),
    ...END,
    ...END,
  ];
  /** Runs `inner` for each entry k of each slot q < used, in order; `perSlot` first for each slot. */
  const eachEntry = (inner: number[], perSlot: number[]) => [
    ...i32c(0),
    ...set(Q),
    ...get(USED),
    ...i32c(8),
    ...I32_MUL,
    ...set(Q_END),
    ...whileLt(
      Q,
      Q_END,
      [
        ...get(SLOTS),
        ...get(Q),
        ...I32_ADD,
        ...i32load(0),
        ...i32c(4),
        ...I32_MUL,
        ...set(K),
        ...get(SLOTS),
        ...get(Q),
        ...I32_ADD,
        ...i32load(4),
        ...i32c(4),
        ...I32_MUL,
        ...set(K_END),
        ...perSlot,
        ...whileLt(K, K_END, inner, 4),
      ],
      8,
    ),
  ];
  // P = &start[idx[k]]
  const entryAddr = [...get(S), ...get(IDX), ...get(K), ...I32_ADD, ...i32load(), ...i32c(4), ...I32_MUL, ...I32_ADD, ...set(P)];
  const I32_STORE = (offset: number) => [0x36, 2, ...uleb(offset)];
  const body = [
    // start[0 .. inDim + 1] = 0
    ...get(S),
    ...set(P),
    ...get(IN),
    ...i32c(2),
    ...I32_ADD,
    ...i32c(4),
    ...I32_MUL,
    ...get(S),
    ...I32_ADD,
    ...set(P_END),
    ...whileLt(P, P_END, [...get(P), ...i32c(0), ...I32_STORE(0)], 4),
    // count: start[i + 2] = entries of input i
    ...eachEntry([...entryAddr, ...get(P), ...get(P), ...i32load(8), ...i32c(1), ...I32_ADD, ...I32_STORE(8)], []),
    // running sums: start[i + 1] = first entry of input i
    ...get(S),
    ...i32c(8),
    ...I32_ADD,
    ...set(P),
    ...i32c(0),
    ...set(POS),
    ...whileLt(P, P_END, [...get(P), ...get(POS), ...get(P), ...i32load(0), ...I32_ADD, ...tee(POS), ...I32_STORE(0)], 4),
    // fill, slot by slot: start[i + 1] is input i's next free entry (its end once all are placed, so
    // start[i] .. start[i + 1] are input i's entries; start[0] stays 0)
    ...eachEntry(
      [
        ...entryAddr,
        ...get(P),
        ...i32load(4),
        ...i32c(4),
        ...I32_MUL,
        ...set(POS),
        ...get(P),
        ...get(P),
        ...i32load(4),
        ...i32c(1),
        ...I32_ADD,
        ...I32_STORE(4),
        ...get(ROW),
        ...get(POS),
        ...I32_ADD,
        ...get(ADDR),
        ...I32_STORE(0),
        ...get(CX),
        ...get(POS),
        ...I32_ADD,
        ...get(X),
        ...get(K),
        ...I32_ADD,
        ...i32load(), // the f32's bits, copied as they are
        ...I32_STORE(0),
      ],
      [...get(DBASE), ...get(Q), ...i32c(8), 0x6e /* i32.div_u */, ...get(DRB), ...I32_MUL, ...I32_ADD, ...set(ADDR)],
    ),
  ];
  return func([I32, I32, I32, I32, I32, I32, I32, I32, I32, I32], [[8, I32]], body);
}

function mlpModule(block: number): Uint8Array {
  const fns = [forwardFunc(block), gradAdamFunc(block, false), gradAdamFunc(block, true), gatherFunc()];
  const section = wasmSection;
  const name = wasmName;
  return Uint8Array.from([
    ...WASM_HEADER,
    ...section(1, [fns.length, ...fns.flatMap((f) => f.type)]),
    // import env.memory: shared, 1 .. MAX_PAGES pages
    ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x03, 1, ...uleb(MAX_PAGES)]),
    ...section(3, [fns.length, ...fns.map((_, i) => i)]),
    ...section(7, [
      4,
      ...name('forward'),
      0x00,
      0,
      ...name('gradAdam'),
      0x00,
      1,
      ...name('gradAdamC1'),
      0x00,
      2,
      ...name('gather'),
      0x00,
      3,
    ]),
    ...section(10, [fns.length, ...fns.flatMap((f) => f.code)]),
  ]);
}
