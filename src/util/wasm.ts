// The few pieces of the WebAssembly binary format that the hand-assembled kernels share (the kNN int8 scan,
// routers/knn-scan.ts, and the MLP trainer's first layer, training/mlp-kernels.ts): each kernel file keeps
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
