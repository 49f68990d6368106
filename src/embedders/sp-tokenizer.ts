// A SentencePiece unigram tokenizer that segments exactly as USE-lite's own (the Viterbi of
// @energetic-ai/embeddings, a port of tfjs-models' universal-sentence-encoder tokenizer): NFKC, a '▁'
// before the text and for every space (only U+0020), the best-scoring split into vocabulary pieces,
// an unknown code point as piece 0 with score 0, runs of unknowns merged. It keeps the teacher's
// quirks on purpose (ties go to the later start, a score of exactly 0 counts as "unset"), because
// the static embedder's table rows are only right for the teacher's own pieces.
//
// The teacher builds an object trie and arrays of objects per call (and is quadratic in text length);
// this one walks a flat trie over UTF-16 code units with buffers reused across calls, so a 300-char
// prompt costs a few microseconds.
//
// Words repeat across prompts, so each word's segmentation is remembered (a bounded map). That gives the
// whole-text answer exactly: no piece has '▁' after its first unit and '▁' is a piece, so every path
// breaks before each '▁' and each word is its own Viterbi problem. Only the running score differs, and a
// word is remembered only when no choice inside it was within WORD_MARGIN of another (the offset can
// then change no comparison) and its text did not start with zero-score pieces only (the teacher's "0 is
// unset" quirk reads absolute scores); otherwise the whole text runs as before.

const SEP = 0x2581; // '▁'
const NON_ASCII = /[\x80-\uffff]/;
/** Choices inside a word closer than this are recomputed on the whole text (see memoMaxUnits). */
const WORD_MARGIN = 1e-6;
/** Slots of the word memo (a power of two); it is emptied when half full or its arenas are. */
const WORD_SLOTS = 1 << 17;
/** Units (and ids) the memo's arenas hold: ~8 per word on average, so ~6 MB in all. */
const WORD_ARENA = 1 << 20;
/** Slot flags: in use, a first word (absolute scores), a path that scored exactly 0. */
const USED = 1;
const FIRST = 2;
const ZERO = 4;

/**
 * [piece, log-probability] rows as in the teacher's vocab.json; the first `reserved` are never produced.
 * Seven pieces with ':' have a null score there, which the teacher adds as 0 (the best possible score).
 */
export type Vocabulary = ReadonlyArray<readonly [string, number | null]>;

export class UnigramTokenizer {
  /** Ids of the last encode(), valid up to its return value; overwritten by the next call. */
  ids: Int32Array = new Int32Array(256);
  readonly size: number;
  // Trie: children of the root in a direct table (one lookup for the first code unit), deeper ones in
  // an open-addressing hash of (parent node, code unit).
  private readonly rootChild = new Int32Array(0x10000).fill(-1);
  private readonly hParent: Int32Array;
  private readonly hUnit: Uint16Array;
  private readonly hChild: Int32Array;
  private readonly hMask: number;
  private nodePiece: Int32Array; // piece id ending at a node, or -1
  private readonly scores: Float64Array; // doubles, as the teacher sums them
  private best = new Float64Array(257);
  private pieceAt = new Int32Array(257);
  private startAt = new Int32Array(257);
  private units = new Uint16Array(257);
  private isSet = new Uint8Array(257);
  /**
   * Per-word segmentations in an open-addressing table keyed by a hash of the word's units (no string
   * is cut out per word), or null when this vocabulary breaks the word argument (see the header).
   */
  private readonly words: WordMemo | null;
  /** A word just segmented relative to its start had a near-tie: not to be remembered. */
  private fragile = false;
  /**
   * Longest text (in units) the memo serves. A path over n units sums at most n scores, each >= the
   * vocabulary's lowest, so |sum| <= n * low and each addition rounds by <= |sum| * 2^-53: over a word
   * the two offsets' sums drift apart by less than n^2 * low * 2^-53, kept below WORD_MARGIN / 4.
   */
  private readonly memoMaxUnits: number;

  /** `memo: false` segments every text whole (the reference the memo is tested against). */
  constructor(vocab: Vocabulary, reserved = 6, opts: { memo?: boolean } = {}) {
    this.size = vocab.length;
    this.scores = Float64Array.from(vocab, ([, s]) => s ?? 0); // null + x === x in the teacher's sum
    let units = 0;
    for (let i = reserved; i < vocab.length; i++) units += vocab[i]![0].length;
    let cap = 16;
    while (cap < units * 2) cap *= 2; // load factor <= 1/2 keeps probes short
    this.hParent = new Int32Array(cap).fill(-1);
    this.hUnit = new Uint16Array(cap);
    this.hChild = new Int32Array(cap);
    this.hMask = cap - 1;
    this.nodePiece = new Int32Array(units + 1).fill(-1);
    let nodes = 1; // node 0 is the root
    for (let id = reserved; id < vocab.length; id++) {
      const p = vocab[id]![0];
      if (p.length === 0) continue;
      let node = 0;
      for (let k = 0; k < p.length; k++) {
        const u = p.charCodeAt(k);
        let next = this.child(node, u);
        if (next < 0) {
          next = nodes++;
          this.insertChild(node, u, next);
        }
        node = next;
      }
      // A duplicate piece keeps the last id, as the teacher's trie does.
      this.nodePiece[node] = id;
    }
    this.nodePiece = this.nodePiece.slice(0, nodes);
    const sep = String.fromCharCode(SEP);
    const splits = vocab.some(([p], id) => id >= reserved && p === sep) && !vocab.some(([p]) => p.indexOf(sep, 1) > 0);
    this.words = splits && opts.memo !== false ? new WordMemo() : null;
    const low = Math.max(1, ...this.scores.map((x) => -x));
    this.memoMaxUnits = Math.floor(Math.sqrt(WORD_MARGIN / 4 / (low * 2 ** -53)));
  }

  private slot(parent: number, unit: number): number {
    return (Math.imul(parent, 0x9e3779b1) ^ Math.imul(unit, 0x85ebca77)) >>> 0;
  }

  private child(parent: number, unit: number): number {
    if (parent === 0) return this.rootChild[unit]!;
    let h = this.slot(parent, unit) & this.hMask;
    for (;;) {
      const p = this.hParent[h]!;
      if (p === -1) return -1;
      if (p === parent && this.hUnit[h] === unit) return this.hChild[h]!;
      h = (h + 1) & this.hMask;
    }
  }

  private insertChild(parent: number, unit: number, node: number): void {
    if (parent === 0) {
      this.rootChild[unit] = node;
      return;
    }
    let h = this.slot(parent, unit) & this.hMask;
    while (this.hParent[h] !== -1) h = (h + 1) & this.hMask;
    this.hParent[h] = parent;
    this.hUnit[h] = unit;
    this.hChild[h] = node;
  }

  /**
   * Segments `text` (already cut to length by the caller) into this.ids; returns how many.
   * Empty text gives 0 ids, as the teacher's does.
   */
  encode(text: string): number {
    const s = NON_ASCII.test(text) ? text.normalize('NFKC') : text; // NFKC leaves ASCII as it is
    if (s.length === 0) return 0;
    const n = s.length + 1; // position 0 is the leading '▁'
    if (this.best.length < n + 1) this.grow(n + 1);
    if (this.ids.length < n) this.ids = new Int32Array(Math.max(n, this.ids.length * 2));
    const { units } = this;
    units[0] = SEP;
    for (let p = 1; p < n; p++) {
      const c = s.charCodeAt(p - 1);
      units[p] = c === 0x20 ? SEP : c;
    }
    if (this.words !== null && n <= this.memoMaxUnits) {
      const count = this.encodeWords(n);
      if (count >= 0) return count;
    }
    this.viterbi(0, n, false);
    return this.walkBack(0, n, this.ids, 0);
  }

  /** Word by word through the memo; -1 when the text must run whole (see the header). */
  private encodeWords(n: number): number {
    const memo = this.words!;
    const { units, ids } = this;
    let count = 0;
    let zeroSoFar = true;
    for (let b = 0; b < n;) {
      // The first word starts at the virtual '▁' (absolute score 0, as in the whole text), the others at
      // a space: the two kinds are kept apart in the hash and in the entry.
      const first = b === 0;
      if (!first && zeroSoFar) return -1;
      let h = first ? 0x3c6ef372 : 0x1b873593;
      let e = b;
      do h = Math.imul(h ^ units[e++]!, 0x01000193);
      while (e < n && units[e] !== SEP);
      const slot = memo.find(h, first, units, b, e);
      let zero: boolean;
      if (slot < 0) {
        this.fragile = false;
        this.viterbi(b, e, !first);
        if (this.fragile) return -1;
        const k = this.walkBack(b, e, ids, count);
        zero = this.best[e] === 0;
        memo.add(h, first, zero, units, b, e, ids, count, k);
        count = k;
      } else {
        count = memo.copyIds(slot, ids, count);
        zero = memo.zero(slot);
      }
      zeroSoFar &&= zero;
      b = e;
    }
    return count;
  }

  /**
   * Best segmentation of units[lo..hi) into best / pieceAt / startAt. Whole text (`relative` false): the
   * teacher's rules, a best of exactly 0 meaning "unset". A later word (`relative`): scores from 0 at lo
   * with explicit set flags (absolute scores there are never 0), and any comparison within WORD_MARGIN
   * marks the word fragile.
   */
  private viterbi(lo: number, hi: number, relative: boolean): void {
    const { best, pieceAt, startAt, scores, units, isSet } = this;
    // A position no piece reaches reads, like the teacher's, as "unknown, one symbol back", score 0.
    for (let e = lo; e <= hi; e++) {
      best[e] = 0;
      pieceAt[e] = 0;
      startAt[e] = e - 1;
      isSet[e] = 0;
    }
    isSet[lo] = 1;
    for (let i = lo; i < hi; i++) {
      const base = best[i]!;
      let node = 0;
      let matched = false;
      for (let j = i; j < hi;) {
        node = this.child(node, units[j]!);
        if (node < 0) break;
        j++;
        const id = this.nodePiece[node]!;
        if (id >= 0) {
          matched = true;
          const sc = base + scores[id]!;
          if (relative ? this.wins(sc, j) : best[j] === 0 || sc >= best[j]!) {
            best[j] = sc;
            pieceAt[j] = id;
            startAt[j] = i;
            isSet[j] = 1;
          }
        }
      }
      if (!matched) {
        // Unknown: one code point (a surrogate pair is one symbol to the teacher) as piece 0, score 0.
        const c = units[i]!;
        const e = (c & 0xfc00) === 0xd800 && i + 1 < hi && (units[i + 1]! & 0xfc00) === 0xdc00 ? i + 2 : i + 1;
        if (relative ? this.wins(base, e) : best[e] === 0 || base >= best[e]!) {
          best[e] = base;
          pieceAt[e] = 0;
          startAt[e] = i;
          isSet[e] = 1;
        }
      }
    }
  }

  /** Relative mode's "sc >= best[j]", noting a comparison too close to survive another offset. */
  private wins(sc: number, j: number): boolean {
    if (this.isSet[j] === 0) return true;
    const d = sc - this.best[j]!;
    if (d < WORD_MARGIN && d > -WORD_MARGIN) this.fragile = true;
    return d >= 0;
  }

  /** The path from hi back to lo into out[at..], in order; consecutive unknowns become one. Returns the end. */
  private walkBack(lo: number, hi: number, out: Int32Array, at: number): number {
    const { pieceAt, startAt } = this;
    let count = at;
    let prevUnk = false;
    for (let e = hi; e > lo; e = startAt[e]!) {
      const id = pieceAt[e]!;
      if (!(prevUnk && id === 0)) out[count++] = id;
      prevUnk = id === 0;
    }
    for (let a = at, b = count - 1; a < b; a++, b--) {
      const t = out[a]!;
      out[a] = out[b]!;
      out[b] = t;
    }
    return count;
  }

  /** encode() as a fresh array (training and tests; the request path reads `ids` instead). */
  encodeToArray(text: string): number[] {
    const n = this.encode(text);
    return Array.from(this.ids.subarray(0, n));
  }

  private grow(n: number): void {
    const cap = Math.max(n, this.best.length * 2);
    this.best = new Float64Array(cap);
    this.pieceAt = new Int32Array(cap);
    this.startAt = new Int32Array(cap);
    this.units = new Uint16Array(cap);
    this.isSet = new Uint8Array(cap);
  }
}

/**
 * The word memo: an open-addressing table over flat arenas (a word's units from its '▁' and its ids), so
 * remembering 65k words makes no objects for the collector to trace.
 */
class WordMemo {
  private readonly hash = new Int32Array(WORD_SLOTS);
  private readonly flags = new Uint8Array(WORD_SLOTS);
  private readonly unitsAt = new Int32Array(WORD_SLOTS);
  private readonly unitsLen = new Int32Array(WORD_SLOTS);
  private readonly idsAt = new Int32Array(WORD_SLOTS);
  private readonly idsLen = new Int32Array(WORD_SLOTS);
  private readonly unitArena = new Uint16Array(WORD_ARENA);
  private readonly idArena = new Int32Array(WORD_ARENA);
  private count = 0;
  private unitsUsed = 0;
  private idsUsed = 0;

  /** The slot holding units[b..e) (of that kind), or -1. */
  find(h: number, first: boolean, units: Uint16Array, b: number, e: number): number {
    const mask = WORD_SLOTS - 1;
    const want = USED | (first ? FIRST : 0);
    for (let slot = h & mask; this.flags[slot] !== 0; slot = (slot + 1) & mask) {
      if (this.hash[slot] !== h || (this.flags[slot]! & (USED | FIRST)) !== want || this.unitsLen[slot] !== e - b) continue;
      const at = this.unitsAt[slot]!;
      let k = 0;
      while (k < e - b && this.unitArena[at + k] === units[b + k]) k++;
      if (k === e - b) return slot;
    }
    return -1;
  }

  /** Remembers units[b..e) with the ids ids[from..to) (unless longer than an arena). */
  add(h: number, first: boolean, zero: boolean, units: Uint16Array, b: number, e: number, ids: Int32Array, from: number, to: number): void {
    const len = e - b;
    const idn = to - from;
    if (this.count >= WORD_SLOTS / 2 || this.unitsUsed + len > WORD_ARENA || this.idsUsed + idn > WORD_ARENA) {
      this.flags.fill(0);
      this.count = this.unitsUsed = this.idsUsed = 0;
      if (len > WORD_ARENA || idn > WORD_ARENA) return;
    }
    const mask = WORD_SLOTS - 1;
    let slot = h & mask;
    while (this.flags[slot] !== 0) slot = (slot + 1) & mask;
    this.hash[slot] = h;
    this.flags[slot] = USED | (first ? FIRST : 0) | (zero ? ZERO : 0);
    this.unitsAt[slot] = this.unitsUsed;
    this.unitsLen[slot] = len;
    this.unitArena.set(units.subarray(b, e), this.unitsUsed);
    this.unitsUsed += len;
    this.idsAt[slot] = this.idsUsed;
    this.idsLen[slot] = idn;
    this.idArena.set(ids.subarray(from, to), this.idsUsed);
    this.idsUsed += idn;
    this.count++;
  }

  /** Appends the slot's ids to out at `at`; returns the new end. */
  copyIds(slot: number, out: Int32Array, at: number): number {
    const from = this.idsAt[slot]!;
    const n = this.idsLen[slot]!;
    for (let k = 0; k < n; k++) out[at + k] = this.idArena[from + k]!;
    return at + n;
  }

  zero(slot: number): boolean {
    return (this.flags[slot]! & ZERO) !== 0;
  }
}
