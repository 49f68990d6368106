import { z } from 'zod';
import { defineEmbedder } from './types.js';
import { cacheSizeOption, maxCharsOption, syncEmbedder, type SyncEmbedder } from './common.js';

// What a prompt looks like rather than what it says: its length, line count and the shares of digits,
// symbols and non-ASCII characters. Sentence vectors are unit length, so they drop how long a prompt is,
// and long prompts are the hard ones (llmrouter train rows over ~300 characters: mean accuracy across
// the nine models 0.26-0.34, against ~0.46 below). Meant as a small member of a concat beside a
// sentence embedder. Each feature is written as a two-hot over fixed knots (linear interpolation
// between the two nearest), so a linear layer reads any piecewise-linear function of it; the vector
// is then normalised.

export const ShapeOptions = z
  .object({
    type: z.literal('shape'),
    // Length is read whole; the character shares from the first max_chars characters.
    max_chars: maxCharsOption(8192),
    cache_size: cacheSizeOption,
  })
  .strict();
export type ShapeOptions = z.infer<typeof ShapeOptions>;

/** Knots per feature, in the order the vector lists them. Changing any of them changes the id's version. */
const KNOTS = {
  log2Chars: Array.from({ length: 15 }, (_, i) => i), // 1 .. 16k characters
  log2Lines: Array.from({ length: 8 }, (_, i) => i), // 1 .. 128 lines
  digits: [0, 0.01, 0.03, 0.1, 0.3],
  symbols: [0, 0.02, 0.05, 0.1, 0.2],
  nonAscii: [0, 0.05, 0.3],
} as const;
const VERSION = 1;
export const SHAPE_DIM = Object.values(KNOTS).reduce((s, k) => s + k.length, 0);

/** Characters that mark code, markup or formulas. */
const SYMBOL = (() => {
  const t = new Uint8Array(128);
  for (const c of '{}[]()<>=+-*/\\^_$%&|;:#@~`') t[c.charCodeAt(0)] = 1;
  return t;
})();

/** Writes v's two-hot over `knots` (ascending) at out[at..]; values outside are clamped to the ends. */
function twoHot(v: number, knots: readonly number[], out: Float32Array, at: number): void {
  const last = knots.length - 1;
  if (!(v > knots[0]!)) {
    out[at] = 1;
    return;
  }
  if (v >= knots[last]!) {
    out[at + last] = 1;
    return;
  }
  let i = 0;
  while (v >= knots[i + 1]!) i++;
  const t = (v - knots[i]!) / (knots[i + 1]! - knots[i]!);
  out[at + i] = 1 - t;
  out[at + i + 1] = t;
}

export class ShapeVectorizer {
  readonly id: string;
  readonly dim = SHAPE_DIM;

  constructor(private readonly maxChars: number) {
    this.id = `shape/v${VERSION}/d${SHAPE_DIM}/m${maxChars}`;
  }

  vectorize(text: string): Float32Array {
    const n = Math.min(text.length, this.maxChars);
    let lines = 1;
    let digits = 0;
    let symbols = 0;
    let nonAscii = 0;
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c === 10) lines++;
      else if (c >= 48 && c <= 57) digits++;
      else if (c >= 128) nonAscii++;
      else symbols += SYMBOL[c]!;
    }
    const share = (k: number) => (n === 0 ? 0 : k / n);
    const out = new Float32Array(SHAPE_DIM);
    let at = 0;
    const put = (v: number, knots: readonly number[]) => {
      twoHot(v, knots, out, at);
      at += knots.length;
    };
    put(Math.log2(1 + text.length), KNOTS.log2Chars);
    put(Math.log2(lines), KNOTS.log2Lines);
    put(share(digits), KNOTS.digits);
    put(share(symbols), KNOTS.symbols);
    put(share(nonAscii), KNOTS.nonAscii);
    let ss = 0;
    for (let k = 0; k < SHAPE_DIM; k++) ss += out[k]! * out[k]!;
    const inv = 1 / Math.sqrt(ss); // five groups, each with weights summing to 1: never zero
    for (let k = 0; k < SHAPE_DIM; k++) out[k] = out[k]! * inv;
    return out;
  }
}

export function createShapeEmbedder(o: ShapeOptions): SyncEmbedder {
  return syncEmbedder(new ShapeVectorizer(o.max_chars), 4096);
}

export default defineEmbedder({
  type: 'shape',
  options: ShapeOptions,
  create: async (opts) => createShapeEmbedder(opts),
});
