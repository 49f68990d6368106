// The static embedder's sum of table rows in SIMD WebAssembly: for each of a prompt's pieces,
// out[k] = fround(out[k] + scale * code[k]) over its int8 row, exactly as the JS loop in static.ts does
// it (the product is exact in f64, the sum is rounded to f64 and then to f32 at every step), two f64
// lanes at a time with sixteen outputs held in registers while the pieces stream past. Same bits,
// ~2-3x fewer instructions than the JS loop; written out as bytes like the other kernels (no
// toolchain, no download) and validated at load, with the JS loop as the fallback.
import {
  END,
  F64_PROMOTE_F32,
  F64X2_ADD,
  F64X2_MUL,
  F64X2_SPLAT,
  f32load,
  func,
  get,
  I32,
  I32_ADD,
  I32_EQZ,
  I32_MUL,
  i32c,
  i32load,
  LOOP,
  set,
  simd,
  stepLoop,
  tee,
  uleb,
  V128,
  V128_ZERO,
  v128load,
  WASM_HEADER,
  wasmName,
  wasmSection,
  wasmApi,
  type WasmMemory,
} from '../util/wasm.js';

const WebAssembly = wasmApi;

/** Outputs a block holds in registers; the table's rows are padded to a multiple of it. */
const BLOCK16 = 16;
/** Pieces one call takes: a text cut to 16k characters at most has no more. */
const MAX_IDS = 16_384;

/** Sums rows of an int8 table copied into wasm memory at load. */
export class RowSummer {
  private readonly ids32: Int32Array;
  private readonly out32: Float32Array;

  private constructor(
    private readonly sum: (tab: number, rowBytes: number, ids: number, n: number, scales: number, out: number) => void,
    memory: WasmMemory,
    private readonly rowBytes: number,
    dim: number,
    private readonly idsAt: number,
    private readonly scalesAt: number,
    private readonly outAt: number,
    private readonly tabAt: number,
  ) {
    // The memory never grows after load, so these views stay valid.
    this.ids32 = new Int32Array(memory.buffer, idsAt, MAX_IDS);
    this.out32 = new Float32Array(memory.buffer, outAt, dim);
  }

  /** null when this runtime lacks wasm SIMD or the memory cannot be had (the caller keeps its JS loop). */
  static create(codes: Int8Array, scales: Float32Array, dim: number): RowSummer | null {
    if (WebAssembly === undefined) return null;
    const rows = scales.length;
    const rowBytes = Math.ceil(dim / BLOCK16) * BLOCK16;
    const outAt = 0;
    const scalesAt = rowBytes * 4;
    const idsAt = scalesAt + Math.ceil((rows * 4) / 16) * 16;
    const tabAt = idsAt + MAX_IDS * 4;
    const total = tabAt + rows * rowBytes;
    let exports: Record<string, unknown>;
    try {
      const bytes = summerModule();
      if (!WebAssembly.validate(bytes)) return null;
      exports = new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports;
      const memory = exports['memory'] as WasmMemory;
      memory.grow(Math.ceil(total / 65_536) + 1);
    } catch {
      return null;
    }
    const memory = exports['memory'] as WasmMemory;
    const tab = new Int8Array(memory.buffer, tabAt, rows * rowBytes);
    for (let r = 0; r < rows; r++) tab.set(codes.subarray(r * dim, (r + 1) * dim), r * rowBytes);
    new Float32Array(memory.buffer, scalesAt, rows).set(scales);
    return new RowSummer(exports['sum'] as RowSummer['sum'], memory, rowBytes, dim, idsAt, scalesAt, outAt, tabAt);
  }

  /**
   * out (zeros, length dim) += the rows of ids[0..n) in order, each times its scale. False when n is over
   * the kernel's id buffer (a text longer than max_chars 16k or so): the caller's JS loop does it then.
   */
  sumInto(ids: Int32Array, n: number, out: Float32Array): boolean {
    if (n > MAX_IDS) return false;
    if (n === 0) return true;
    const { ids32, out32 } = this;
    for (let i = 0; i < n; i++) ids32[i] = ids[i]!;
    this.sum(this.tabAt, this.rowBytes, this.idsAt, n, this.scalesAt, this.outAt);
    out.set(out32);
    return true;
  }
}

// (func $sum (param $tab $rowBytes $ids $n $scales $out i32)
//   for each block of 16 outputs: 8 f64x2 accumulators from 0; for each id: scale splat, the 16 codes
//   widened i8 -> i16 -> i32 -> f64 pairs, acc = promote(demote(acc + scale * codes)); store as f32.
function sumFunc() {
  const TAB = 0,
    RB = 1,
    IDS = 2,
    N = 3,
    SC = 4,
    OUT = 5;
  const KB = 6,
    I = 7,
    ENDI = 8,
    ID = 9;
  const SV = 10,
    C = 11,
    H = 12,
    Q = 13,
    A = 14; // A .. A+7
  const EXT_LO_8 = simd(0x87); // i16x8.extend_low_i8x16_s
  const EXT_HI_8 = simd(0x88); // i16x8.extend_high_i8x16_s
  const EXT_LO_16 = simd(0xa7); // i32x4.extend_low_i16x8_s
  const EXT_HI_16 = simd(0xa8); // i32x4.extend_high_i16x8_s
  const CONVERT_LO = simd(0xfe); // f64x2.convert_low_i32x4_s
  // i32 lanes 2,3 down to 0,1 (then converted like the low ones)
  const HIGH_HALF = simd(0x0d, ...[8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15]);
  const DEMOTE = simd(0x5e); // f32x4.demote_f64x2_zero: round to f32, as a Float32Array store does
  const PROMOTE = simd(0x5f); // f64x2.promote_low_f32x4
  const store64Lane0 = (offset: number) => simd(0x5b, 3, ...uleb(offset), 0);
  /** acc[j] = round32(acc[j] + SV * pair), the pair's f64x2 on the stack top. */
  const madd = (j: number) => [...get(SV), ...F64X2_MUL, ...get(A + j), ...F64X2_ADD, ...DEMOTE, ...PROMOTE, ...set(A + j)];
  /** Pairs 2q and 2q+1 from the i32x4 in Q (lanes 0,1 then 2,3): code order is out order. */
  const fromQ = (q: number) => [
    ...get(Q),
    ...CONVERT_LO,
    ...madd(2 * q),
    ...get(Q),
    ...get(Q),
    ...HIGH_HALF,
    ...CONVERT_LO,
    ...madd(2 * q + 1),
  ];
  const body = [
    ...get(N),
    ...I32_EQZ,
    0x04,
    0x40, // if n == 0: out stays as the caller left it
    0x0f,
    ...END,
    ...get(N),
    ...i32c(4),
    ...I32_MUL,
    ...set(ENDI),
    ...i32c(0),
    ...set(KB),
    ...LOOP, // blocks of 16 outputs
    ...Array.from({ length: 8 }, (_, j) => [...V128_ZERO, ...set(A + j)]).flat(),
    ...i32c(0),
    ...set(I),
    ...LOOP, // pieces, in order
    ...get(IDS),
    ...get(I),
    ...I32_ADD,
    ...i32load(),
    ...set(ID),
    ...get(SC),
    ...get(ID),
    ...i32c(4),
    ...I32_MUL,
    ...I32_ADD,
    ...f32load(),
    ...F64_PROMOTE_F32,
    ...F64X2_SPLAT,
    ...set(SV),
    ...get(TAB),
    ...get(ID),
    ...get(RB),
    ...I32_MUL,
    ...I32_ADD,
    ...get(KB),
    ...I32_ADD,
    ...v128load(),
    ...tee(C),
    ...EXT_LO_8,
    ...tee(H),
    ...EXT_LO_16,
    ...set(Q),
    ...fromQ(0),
    ...get(H),
    ...EXT_HI_16,
    ...set(Q),
    ...fromQ(1),
    ...get(C),
    ...EXT_HI_8,
    ...tee(H),
    ...EXT_LO_16,
    ...set(Q),
    ...fromQ(2),
    ...get(H),
    ...EXT_HI_16,
    ...set(Q),
    ...fromQ(3),
    ...stepLoop(I, 4, ENDI),
    ...END,
    // out[KB .. KB+16) as f32 (the accumulators already hold f32 values)
    ...Array.from({ length: 8 }, (_, j) => [
      ...get(OUT),
      ...get(KB),
      ...i32c(4),
      ...I32_MUL,
      ...I32_ADD,
      ...get(A + j),
      ...DEMOTE,
      ...store64Lane0(8 * j),
    ]).flat(),
    ...stepLoop(KB, BLOCK16, RB),
    ...END,
  ];
  return func(
    [I32, I32, I32, I32, I32, I32],
    [
      [4, I32],
      [12, V128],
    ],
    body,
  );
}

function summerModule(): Uint8Array {
  const f = sumFunc();
  return Uint8Array.from([
    ...WASM_HEADER,
    ...wasmSection(1, [1, ...f.type]),
    ...wasmSection(3, [1, 0]),
    ...wasmSection(5, [1, 0x00, 1]), // one memory, 1 page to start (grown at load)
    ...wasmSection(7, [2, ...wasmName('memory'), 0x02, 0, ...wasmName('sum'), 0x00, 0]),
    ...wasmSection(10, [1, ...f.code]),
  ]);
}
