// The few pieces of the WebAssembly binary format that the hand-assembled kernels share (the kNN int8 scan,
// routers/knn-scan.ts, the MLP kernels of mlp-kernels.ts, embedders/static-kernel.ts): each kernel file keeps
// its own instructions and sections, and builds the module from these.

/** Unsigned LEB128. */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** A section: its id, then its content's byte length. */
export const wasmSection = (id: number, content: number[]): number[] => [id, ...uleb(content.length), ...content];

/** A name (import, export): its length, then its ASCII bytes. */
export const wasmName = (s: string): number[] => [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];

/** `\0asm`, version 1. */
export const WASM_HEADER: readonly number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

// Instructions, as byte arrays, for the kernels written out by hand (knn-scan.ts has its own older set).

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

export const I32 = 0x7f;
export const F64 = 0x7c;
export const V128 = 0x7b;

export const get = (i: number) => [0x20, ...uleb(i)];
export const set = (i: number) => [0x21, ...uleb(i)];
export const tee = (i: number) => [0x22, ...uleb(i)];
export const i32c = (n: number) => [0x41, ...sleb(n)];
export const f64c = (x: number) => [0x44, ...new Uint8Array(Float64Array.of(x).buffer)];
export const I32_ADD = [0x6a];
export const I32_MUL = [0x6c];
export const I32_LT_U = [0x49];
export const I32_EQZ = [0x45];
export const i32load = (offset = 0) => [0x28, 2, ...uleb(offset)];
export const f32load = (offset = 0) => [0x2a, 2, ...uleb(offset)];
export const F64_PROMOTE_F32 = [0xbb];
export const BLOCK = [0x02, 0x40];
export const LOOP = [0x03, 0x40];
export const END = [0x0b];
export const brIf = (depth: number) => [0x0d, ...uleb(depth)];

export const simd = (op: number, ...imm: number[]) => [0xfd, ...uleb(op), ...imm];
export const v128load = (offset = 0) => simd(0x00, 4, ...uleb(offset));
export const v128store = (offset = 0) => simd(0x0b, 4, ...uleb(offset));
/** Two f32 at `offset` into the low lanes, promoted: an f64x2. */
export const loadF32x2 = (offset = 0) => [...simd(0x5d, 3, ...uleb(offset)), ...simd(0x5f)];
/** An f64x2 rounded to two f32, stored at `offset` (the address is already on the stack below it). */
export const storeF32x2 = (offset = 0) => [...simd(0x5e), ...simd(0x5b, 3, ...uleb(offset), 0)];
export const V128_ZERO = simd(0x0c, ...new Array<number>(16).fill(0));
export const F64X2_SPLAT = simd(0x14);
export const F64X2_ADD = simd(0xf0);
export const F64X2_SUB = simd(0xf1);
export const F64X2_MUL = simd(0xf2);
export const F64X2_DIV = simd(0xf3);
export const F64X2_SQRT = simd(0xef);

export function func(params: number[], locals: Array<[number, number]>, body: number[]): { type: number[]; code: number[] } {
  const decl = [...uleb(locals.length), ...locals.flatMap(([n, t]) => [...uleb(n), t])];
  const code = [...decl, ...body, ...END];
  return { type: [0x60, ...uleb(params.length), ...params, 0], code: [...uleb(code.length), ...code] };
}

/** local += step, and loop again while local < limit (unsigned): the tail of a loop over a byte range. */
export const stepLoop = (local: number, step: number, limit: number): number[] => [
  ...get(local),
  ...i32c(step),
  ...I32_ADD,
  ...tee(local),
  ...get(limit),
  ...I32_LT_U,
  ...brIf(0),
];

// The tsconfig has no DOM lib, so describe the few WebAssembly calls the kernels use.
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  Memory: new (desc: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
}
/** The runtime's WebAssembly, or undefined where there is none (the kernels' callers fall back to JS). */
export const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
