import { z } from 'zod';
import { defineEmbedder } from './types.js';
import { FNV_OFFSET, FNV_PRIME, fmix32 } from '../util/hash.js';
import { cacheSizeOption, maxCharsOption, syncEmbedder, type SparseEmbedder, type SyncEmbedder } from './common.js';
import { truncateMiddle } from '../util/text.js';

// A model-free embedder: signed feature hashing of word n-grams and character n-grams (fastText-style,
// per token with boundary marks), sublinear tf, each group L2-normalised, then mixed and normalised.
// It is the default routing feature, so it must cost microseconds: one pass over the text, integer
// hashing, buffers reused across calls, only touched buckets visited.

export const LexicalOptions = z
  .object({
    type: z.literal('lexical'),
    dim: z
      .number()
      .int()
      .min(16)
      .max(65_536)
      .default(512)
      .describe('Vector dimension (hash buckets). Larger keeps more detail for trained routers; up to 65536.'),
    word_ngram_max: z
      .number()
      .int()
      .min(0)
      .max(3)
      .default(2)
      .describe('Longest word n-gram hashed (1 = words, 2 = words and bigrams, 0 = no word features).'),
    char_ngram_min: z.number().int().min(1).max(8).default(3).describe('Shortest character n-gram hashed.'),
    char_ngram_max: z.number().int().min(0).max(8).default(5).describe('Longest character n-gram hashed (0 = no character features).'),
    word_weight: z.number().min(0).max(1).default(0.5).describe('Share of the word group in the vector; character n-grams get the rest.'),
    max_chars: maxCharsOption(8192),
    cache_size: cacheSizeOption,
  })
  .strict()
  .refine((o) => o.char_ngram_max === 0 || o.char_ngram_max >= o.char_ngram_min, {
    message: 'char_ngram_max must be 0 (off) or at least char_ngram_min',
    path: ['char_ngram_max'],
  })
  .refine((o) => o.word_ngram_max > 0 || o.char_ngram_max > 0, {
    message: 'word_ngram_max and char_ngram_max cannot both be 0: the embedder would have no features',
    path: ['word_ngram_max'],
  });
export type LexicalOptions = z.infer<typeof LexicalOptions>;

const SPACE = 0;
const WORD = 1;
const PUNCT = 2;

/** Character class per UTF-16 code unit, built once: a table lookup beats regexes per character. */
const CLASS = (() => {
  const t = new Uint8Array(0x10000).fill(WORD);
  for (let c = 0; c < 0x80; c++) {
    const isWord = (c >= 48 && c <= 57) || (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95;
    t[c] = c <= 32 || c === 127 ? SPACE : isWord ? WORD : PUNCT;
  }
  for (let c = 0x80; c < 0xc0; c++) t[c] = PUNCT; // Latin-1 controls and symbols
  for (const c of [0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff]) t[c] = SPACE;
  for (let c = 0x2000; c <= 0x200b; c++) t[c] = SPACE;
  for (let c = 0x2010; c <= 0x2027; c++) t[c] = PUNCT; // dashes, quotes, bullets
  for (let c = 0x2030; c <= 0x205e; c++) t[c] = PUNCT;
  for (let c = 0x3001; c <= 0x303f; c++) t[c] = PUNCT; // CJK punctuation
  for (let c = 0xff01; c <= 0xff0f; c++) t[c] = PUNCT; // full-width punctuation
  t[0xd7] = PUNCT; // ×
  t[0xf7] = PUNCT; // ÷
  return t;
})();

// Salts keep the feature families apart: the word "the" and the char 3-gram "the" land in
// unrelated buckets.
const SALT_WORD = 0x1b873593;
const SALT_BIGRAM = 0x2f5bd1e9;
const SALT_TRIGRAM = 0x3c6ef372;
const SALT_CHAR = 0x68e31da4;
const EMPTY_FEATURE = fmix32(0x0e3779b9);
const MARK_BEGIN = 0x02; // token boundary marks for char n-grams, outside any printable text
const MARK_END = 0x03;
const NON_ASCII = /[\x80-\uffff]/; // any code unit above ASCII

/** Math.log1p of the counts a bucket usually holds, computed by Math.log1p itself. */
const LOG1P_COUNTS = 256;
const LOG1P = Float64Array.from({ length: LOG1P_COUNTS }, (_, k) => Math.log1p(k));

/** One hashed feature group with a list of the buckets it touched, so reset and read skip the zeros. */
class Group {
  readonly acc: Float32Array;
  readonly mark: Uint8Array;
  readonly touched: Int32Array;
  n = 0;
  constructor(readonly dim: number) {
    this.acc = new Float32Array(dim);
    this.mark = new Uint8Array(dim);
    this.touched = new Int32Array(dim);
  }
  /**
   * `h` is a mixed unsigned 32-bit hash: its top bits pick the bucket, bit 15 the sign (never a
   * bucket bit, since dim <= 2^16 uses at most the top 16 bits; bit 0 of an FNV hash is weak).
   */
  add(h: number): void {
    // Multiply-shift range reduction (Lemire): exact in doubles for dim <= 2^16, and several times
    // cheaper than an integer `%`, which costs ~30 cycles and runs ~6000 times for a 2 KB prompt.
    const b = ((h * this.dim) / 4294967296) | 0;
    if (this.mark[b] === 0) {
      this.mark[b] = 1;
      this.touched[this.n++] = b;
    }
    this.acc[b] = this.acc[b]! + ((h & 0x8000) === 0 ? 1 : -1);
  }
  /** Sublinear tf in place (sign-preserving log1p); returns the group's L2 norm. */
  dampen(): number {
    let s = 0;
    for (let i = 0; i < this.n; i++) {
      const b = this.touched[i]!;
      const x = this.acc[b]!;
      // A bucket holds a signed count, so log1p is looked up: the same values, a few ns instead of ~15
      // per bucket (a prompt touches hundreds).
      const y = x < 0 ? (x > -LOG1P_COUNTS ? -LOG1P[-x]! : -Math.log1p(-x)) : x < LOG1P_COUNTS ? LOG1P[x]! : Math.log1p(x);
      this.acc[b] = y;
      s += y * y;
    }
    return Math.sqrt(s);
  }
  addInto(out: Float32Array, scale: number): void {
    for (let i = 0; i < this.n; i++) {
      const b = this.touched[i]!;
      out[b] = out[b]! + this.acc[b]! * scale;
    }
  }
  reset(): void {
    for (let i = 0; i < this.n; i++) {
      const b = this.touched[i]!;
      this.acc[b] = 0;
      this.mark[b] = 0;
    }
    this.n = 0;
  }
}

/** The synchronous core, exported for the bench and for callers that want no promise. */
export class LexicalVectorizer {
  readonly id: string;
  readonly dim: number;
  private readonly words: Group;
  private readonly chars: Group;
  private readonly wordN: number;
  private readonly cMin: number;
  private readonly cMax: number;
  private readonly wordWeight: number;
  private readonly maxChars: number;
  private codes = new Uint16Array(256);
  // vectorizeSparse()'s buffers: a zeroed dense scratch, a bitmap of touched buckets, the output.
  private readonly scratch: Float32Array;
  private readonly bits: Uint32Array;
  readonly sparseIdx: Int32Array;
  readonly sparseVal: Float32Array;

  constructor(o: LexicalOptions) {
    this.dim = o.dim;
    this.wordN = o.word_ngram_max;
    this.cMin = o.char_ngram_min;
    this.cMax = o.char_ngram_max;
    this.wordWeight = this.cMax === 0 ? 1 : this.wordN === 0 ? 0 : o.word_weight;
    this.maxChars = o.max_chars;
    const c = this.cMax === 0 ? 'c0' : `c${this.cMin}-${this.cMax}`;
    this.id = `lexical/v1/d${o.dim}/w1-${o.word_ngram_max}/${c}/ww${this.wordWeight}/m${o.max_chars}`;
    this.words = new Group(o.dim);
    this.chars = new Group(o.dim);
    this.scratch = new Float32Array(o.dim);
    this.bits = new Uint32Array(Math.ceil(o.dim / 32));
    this.sparseIdx = new Int32Array(o.dim);
    this.sparseVal = new Float32Array(o.dim);
  }

  vectorize(text: string): Float32Array {
    this.accumulate(text);
    return this.finish();
  }

  /**
   * The same vector as vectorize(), as its non-zero entries in index order: sparseIdx / sparseVal hold them
   * until the next call. A concat embedder joins these without a dense 4096-wide array per prompt.
   */
  vectorizeSparse(text: string): number {
    this.accumulate(text);
    return this.finishSparse();
  }

  /** Hashes the text's features into the two groups. */
  private accumulate(text: string): void {
    let s = truncateMiddle(text, this.maxChars);
    if (NON_ASCII.test(s)) s = s.normalize('NFKC');
    s = s.toLowerCase();
    const words = this.words;
    let p1 = 0; // hashes of the previous two tokens (0 = none)
    let p2 = 0;
    let tokens = 0;
    let i = 0;
    const n = s.length;
    while (i < n) {
      const cls = CLASS[s.charCodeAt(i)]!;
      if (cls === SPACE) {
        i++;
        continue;
      }
      // A token is a run of word characters, or one punctuation character.
      const start = i;
      let h = FNV_OFFSET;
      do {
        h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
        i++;
      } while (cls === WORD && i < n && CLASS[s.charCodeAt(i)] === WORD);
      h = fmix32(h);
      tokens++;
      if (this.wordN >= 1) {
        words.add(fmix32(h ^ SALT_WORD));
        if (this.wordN >= 2 && p1 !== 0) {
          words.add(fmix32((Math.imul(p1, 0x9e3779b1) ^ h ^ SALT_BIGRAM) >>> 0));
          if (this.wordN >= 3 && p2 !== 0)
            words.add(fmix32((Math.imul(p2, 0x85ebca77) ^ Math.imul(p1, 0x9e3779b1) ^ h ^ SALT_TRIGRAM) >>> 0));
        }
      }
      p2 = p1;
      p1 = h | 1; // never 0, so 0 can mean "no previous token"
      if (this.cMax > 0) this.charGrams(s, start, i);
    }
    if (tokens === 0) words.add(EMPTY_FEATURE); // empty text still gets a unit vector, the same every time
  }

  /** Character n-grams of s[start, end) framed by boundary marks, hashed incrementally per start. */
  private charGrams(s: string, start: number, end: number): void {
    const len = end - start + 2;
    // Copy the framed token once into a reused buffer: each character is then read by up to
    // char_ngram_max n-grams from a typed array instead of through charCodeAt.
    if (len > this.codes.length) this.codes = new Uint16Array(Math.max(len, this.codes.length * 2));
    const codes = this.codes;
    codes[0] = MARK_BEGIN;
    for (let j = start; j < end; j++) codes[j - start + 1] = s.charCodeAt(j);
    codes[len - 1] = MARK_END;
    const { cMin, cMax, chars } = this;
    for (let a = 0; a + cMin <= len; a++) {
      let h = FNV_OFFSET ^ SALT_CHAR;
      const stop = Math.min(len, a + cMax);
      for (let j = a; j < stop; j++) {
        h = Math.imul(h ^ codes[j]!, FNV_PRIME);
        // A cheap 2-step mix is enough here: FNV already spread the bits; full fmix32 cost ~10%.
        if (j - a + 1 >= cMin) chars.add(Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0);
      }
    }
  }

  private finish(): Float32Array {
    const out = new Float32Array(this.dim);
    const inv = this.mix(out);
    for (const g of [this.words, this.chars]) {
      for (let i = 0; i < g.n; i++) {
        const b = g.touched[i]!;
        if (g === this.chars && this.words.mark[b] === 1) continue;
        out[b] = out[b]! * inv;
      }
    }
    this.words.reset();
    this.chars.reset();
    return out;
  }

  /** finish() into sparseIdx / sparseVal, in index order (a bitmap of the touched buckets sorts them). */
  private finishSparse(): number {
    const { scratch, bits, sparseIdx, sparseVal } = this;
    const inv = this.mix(scratch);
    for (const g of [this.words, this.chars]) {
      for (let i = 0; i < g.n; i++) {
        const b = g.touched[i]!;
        bits[b >>> 5] = bits[b >>> 5]! | (1 << (b & 31));
      }
    }
    let n = 0;
    for (let w = 0; w < bits.length; w++) {
      let word = bits[w]!;
      if (word === 0) continue;
      bits[w] = 0;
      while (word !== 0) {
        const bit = 31 - Math.clz32(word & -word); // lowest set bit first: ascending buckets
        word &= word - 1;
        const b = (w << 5) | bit;
        const v = Math.fround(scratch[b]! * inv); // what finish() stores
        scratch[b] = 0;
        if (v !== 0) {
          sparseIdx[n] = b;
          sparseVal[n++] = v;
        }
      }
    }
    this.words.reset();
    this.chars.reset();
    return n;
  }

  /** Mixes the dampened groups into `out` (zero where untouched); returns the normalising factor. */
  private mix(out: Float32Array): number {
    const wn = this.words.dampen();
    const cn = this.chars.dampen();
    if (wn > 0) this.words.addInto(out, (cn > 0 ? this.wordWeight : 1) / wn);
    if (cn > 0) this.chars.addInto(out, (wn > 0 ? 1 - this.wordWeight : 1) / cn);
    // The groups share buckets, so the mix is not unit length by construction: normalise it.
    let s = 0;
    for (const g of [this.words, this.chars]) {
      for (let i = 0; i < g.n; i++) {
        const b = g.touched[i]!;
        if (g === this.chars && this.words.mark[b] === 1) continue; // already counted
        s += out[b]! * out[b]!;
      }
    }
    return s > 0 ? 1 / Math.sqrt(s) : 0;
  }
}

export function createLexicalEmbedder(opts: LexicalOptions): SyncEmbedder & SparseEmbedder {
  const v = new LexicalVectorizer(opts);
  const dense = syncEmbedder(v, 256);
  let closed = false;
  return {
    ...dense,
    embedSparse: (text) => {
      if (closed) throw new Error(`embedder ${v.id} is closed`);
      return { n: v.vectorizeSparse(text), idx: v.sparseIdx, val: v.sparseVal };
    },
    close: () => {
      closed = true;
      return dense.close();
    },
  };
}

export default defineEmbedder({
  type: 'lexical',
  options: LexicalOptions,
  async create(opts) {
    return createLexicalEmbedder(opts);
  },
});
