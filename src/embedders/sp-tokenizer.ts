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

const SEP = 0x2581; // '▁'
const NON_ASCII = /[\x80-\uffff]/;

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

  constructor(vocab: Vocabulary, reserved = 6) {
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
    const { best, pieceAt, startAt, scores, units } = this;
    units[0] = SEP;
    for (let p = 1; p < n; p++) {
      const c = s.charCodeAt(p - 1);
      units[p] = c === 0x20 ? SEP : c;
    }
    // A position no piece reaches reads, like the teacher's, as "unknown, one symbol back", score 0.
    for (let e = 0; e <= n; e++) {
      best[e] = 0;
      pieceAt[e] = 0;
      startAt[e] = e - 1;
    }
    for (let i = 0; i < n; i++) {
      const base = best[i]!;
      let node = 0;
      let matched = false;
      for (let j = i; j < n;) {
        node = this.child(node, units[j]!);
        if (node < 0) break;
        j++;
        const id = this.nodePiece[node]!;
        if (id >= 0) {
          matched = true;
          const sc = base + scores[id]!;
          if (best[j] === 0 || sc >= best[j]!) {
            best[j] = sc;
            pieceAt[j] = id;
            startAt[j] = i;
          }
        }
      }
      if (!matched) {
        // Unknown: one code point (a surrogate pair is one symbol to the teacher) as piece 0, score 0.
        const c = units[i]!;
        const e = (c & 0xfc00) === 0xd800 && i + 1 < n && (units[i + 1]! & 0xfc00) === 0xdc00 ? i + 2 : i + 1;
        if (best[e] === 0 || base >= best[e]!) {
          best[e] = base;
          pieceAt[e] = 0;
          startAt[e] = i;
        }
      }
    }
    // Walk back from the end, then reverse in place; consecutive unknowns become one.
    let count = 0;
    const ids = this.ids.length >= n ? this.ids : (this.ids = new Int32Array(Math.max(n, this.ids.length * 2)));
    let prevUnk = false;
    for (let e = n; e > 0; e = startAt[e]!) {
      const id = pieceAt[e]!;
      if (!(prevUnk && id === 0)) ids[count++] = id;
      prevUnk = id === 0;
    }
    for (let a = 0, b = count - 1; a < b; a++, b--) {
      const t = ids[a]!;
      ids[a] = ids[b]!;
      ids[b] = t;
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
  }
}
