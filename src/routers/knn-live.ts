// Rows a kNN router learns while it runs (online learning): each is a routed request's embedding and the
// score its feedback gave, usually for one backend only. They live in memory next to the artifact's index,
// at most `maxRows` of them (the oldest is overwritten first), and are searched exactly: a few thousand
// rows scan in well under a millisecond. knn.ts merges their neighbours with the artifact's.
import type { KnnIndex, KnnNeighbours } from './knn-index.js';
import { rowDot, selectTopK } from './knn-scan.js';
import type { LiveRow } from './types.js';

const INITIAL_CAPACITY = 64;

export class LiveRows {
  /** Row-major slots x dim; grows by doubling up to maxRows, then is a ring. */
  private vectors: Float32Array;
  private scores: Array<ReadonlyMap<string, number>> = [];
  private count = 0;
  /** The oldest slot once the ring is full: the next one overwritten. */
  private head = 0;
  private sims = new Float32Array(0);
  private topIdx = new Int32Array(0);
  private topSim = new Float32Array(0);

  constructor(
    readonly dim: number,
    readonly maxRows: number,
    /** The backends this router scores: scores for others are dropped, rows scoring none are refused. */
    private readonly backends: ReadonlySet<string>,
  ) {
    this.vectors = new Float32Array(Math.min(maxRows, INITIAL_CAPACITY) * dim);
  }

  get size(): number {
    return this.count;
  }

  /** Adds the usable rows, evicting the oldest past maxRows; returns how many were kept. */
  add(rows: readonly LiveRow[]): number {
    let kept = 0;
    for (const row of rows) {
      const scores = this.usableScores(row);
      if (scores === null) continue;
      const slot = this.nextSlot();
      this.vectors.set(row.embedding, slot * this.dim);
      this.scores[slot] = scores;
      kept++;
    }
    return kept;
  }

  /** The top k live rows by similarity, best first (views valid until the next search). */
  search(q: Float32Array, k: number): KnnNeighbours {
    const n = this.count;
    if (this.sims.length < n) this.sims = new Float32Array(this.vectors.length / this.dim);
    if (this.topIdx.length < k) {
      this.topIdx = new Int32Array(k);
      this.topSim = new Float32Array(k);
    }
    for (let r = 0; r < n; r++) this.sims[r] = rowDot(this.vectors, r, this.dim, q);
    return { n: selectTopK(this.sims, n, k, this.topIdx, this.topSim), idx: this.topIdx, sim: this.topSim };
  }

  /** Slot `slot`'s score for `backend`, or undefined when that row did not score it. */
  scoreOf(slot: number, backend: string): number | undefined {
    return this.scores[slot]?.get(backend);
  }

  private usableScores(row: LiveRow): ReadonlyMap<string, number> | null {
    const e = row.embedding;
    if (e.length !== this.dim) return null; // another embedder's row (e.g. from before a reload)
    for (let j = 0; j < e.length; j++) if (!Number.isFinite(e[j]!)) return null;
    const out = new Map<string, number>();
    for (const [backend, s] of row.scores) if (this.backends.has(backend) && s >= 0 && s <= 1) out.set(backend, s);
    return out.size > 0 ? out : null;
  }

  private nextSlot(): number {
    const cap = this.vectors.length / this.dim;
    if (this.count < cap) return this.count++;
    if (cap < this.maxRows) {
      const grown = new Float32Array(Math.min(cap * 2, this.maxRows) * this.dim);
      grown.set(this.vectors);
      this.vectors = grown;
      return this.count++;
    }
    const slot = this.head;
    this.head = (this.head + 1) % cap;
    return slot;
  }
}

/** The top k of the artifact's and the live rows' neighbours together, best first. */
export interface MergedNeighbours {
  n: number;
  /** Per neighbour: 1 = a live row (slot in `at`), 0 = an artifact row (row in `at`). */
  fromLive: Uint8Array;
  at: Int32Array;
  sim: Float32Array;
  /** How many of the n are live rows. */
  live: number;
}

/** Merges two best-first lists; on equal similarity the artifact row goes first (deterministic). */
export function mergeNeighbours(a: KnnNeighbours, l: KnnNeighbours, k: number): MergedNeighbours {
  const n = Math.min(k, a.n + l.n);
  const m: MergedNeighbours = { n, fromLive: new Uint8Array(n), at: new Int32Array(n), sim: new Float32Array(n), live: 0 };
  let i = 0;
  let j = 0;
  for (let t = 0; t < n; t++) {
    const takeLive = i >= a.n || (j < l.n && l.sim[j]! > a.sim[i]!);
    if (takeLive) {
      m.fromLive[t] = 1;
      m.at[t] = l.idx[j]!;
      m.sim[t] = l.sim[j++]!;
      m.live++;
    } else {
      m.at[t] = a.idx[i]!;
      m.sim[t] = a.sim[i++]!;
    }
  }
  return m;
}

/**
 * One backend's predicted quality over merged neighbours: the similarity-weighted mean over the
 * neighbours that score it (a row scoring another backend says nothing about this one), the plain mean
 * when none of those points the same way, and null when no neighbour scores it.
 */
export function blendedQuality(m: MergedNeighbours, index: KnnIndex, col: number, live: LiveRows, backend: string): number | null {
  const value = (t: number): number | undefined => {
    const v = m.fromLive[t] === 1 ? live.scoreOf(m.at[t]!, backend) : index.score(m.at[t]!, col);
    return v === undefined || Number.isNaN(v) ? undefined : v;
  };
  let acc = 0;
  let wSum = 0;
  let plain = 0;
  let scored = 0;
  for (let t = 0; t < m.n; t++) {
    const v = value(t);
    if (v === undefined) continue;
    const w = m.sim[t]! > 0 ? m.sim[t]! : 0;
    acc += w * v;
    wSum += w;
    plain += v;
    scored++;
  }
  if (scored === 0) return null;
  return wSum > 0 ? acc / wSum : plain / scored;
}
