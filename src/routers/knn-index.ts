// Cosine k-nearest neighbours over (unit embedding, per-model score) rows. Exact search scans every row
// (SIMD WebAssembly when available, plain JS otherwise); `hnsw` delegates to hnswlib-node for millions
// of rows. Both return the same shape, so the router and the guard do not care which one runs.
import { E } from '../errors.js';
import { ArtifactError, HNSW_FILE, readF32, readManifest, SCORES_FILE, VECTORS_FILE } from './artifacts.js';
import { createInt8Prefilter, rowDot, selectTopK, type Prefilter } from './knn-scan.js';
import { loadHnsw, type AnnSearcher } from './knn-hnsw.js';

export interface KnnQueryResult {
  /**
   * Similarity-weighted mean score per model (artifact column order) over those of the top k rows that
   * score it (NaN in scores.f32 = not scored); a model no neighbour scores gets its mean over the index.
   */
  scores: Float32Array;
  topSimilarity: number;
  meanSimilarity: number;
  neighbours: number;
}

/** The last search's neighbours, best first: views valid until the next search. */
export interface KnnNeighbours {
  n: number;
  idx: Int32Array;
  sim: Float32Array;
}

export interface KnnIndexOptions {
  /** 'exact' scans every row; 'hnsw' uses an approximate graph index (hnswlib-node). */
  index?: 'exact' | 'hnsw';
  /** HNSW search breadth (higher: better recall, slower). Ignored for exact search. */
  ef?: number;
}

/**
 * Exact search. With the int8 prefilter: approximate every row, keep only rows whose error bound can
 * reach the k-th best lower bound, and rank those by their exact float similarity. Without it: exact
 * similarity for every row. Both give the same neighbours and the same similarities.
 */
class ExactSearcher implements AnnSearcher {
  private readonly prefilter: Prefilter | null;
  private readonly sims: Float32Array;
  private readonly candRow: Int32Array;
  /** Rows re-scored exactly by the last search (for benchmarks and tests). */
  lastCandidates = 0;

  constructor(
    private readonly vectors: Float32Array,
    readonly rows: number,
    readonly dim: number,
    mode: 'auto' | 'js' = 'auto',
  ) {
    this.prefilter = mode === 'auto' ? createInt8Prefilter(vectors, rows, dim) : null;
    this.sims = new Float32Array(rows);
    this.candRow = new Int32Array(rows);
  }

  /** Leading dimensions the int8 scan reads (all of them without one). */
  get scanDim(): number {
    return this.prefilter?.scanDim ?? this.dim;
  }

  get kind(): 'int8-prefilter' | 'js' {
    return this.prefilter === null ? 'js' : 'int8-prefilter';
  }

  search(q: Float32Array, k: number, outIdx: Int32Array, outSim: Float32Array): number {
    const { vectors, dim, rows, sims } = this;
    if (this.prefilter === null) {
      for (let r = 0; r < rows; r++) sims[r] = rowDot(vectors, r, dim, q);
      this.lastCandidates = rows;
      return selectTopK(sims, rows, k, outIdx, outSim);
    }
    const c = this.prefilter.candidates(q, k, this.candRow);
    for (let i = 0; i < c; i++) sims[i] = rowDot(vectors, this.candRow[i]!, dim, q);
    this.lastCandidates = c;
    // Candidates are in row order, so selectTopK's tie rule (lower position first) is still "lower row first".
    const m = selectTopK(sims, c, k, outIdx, outSim);
    for (let i = 0; i < m; i++) outIdx[i] = this.candRow[outIdx[i]!]!;
    return m;
  }
}

export class KnnIndex {
  // The last neighbour list, keyed by the query's contents: the guard and the router ask about the
  // same embedding one after the other, and this makes that one search instead of two.
  private readonly lastQ: Float32Array;
  private lastK = 0;
  private lastN = 0;
  private topIdx = new Int32Array(0);
  private topSim = new Float32Array(0);
  /** Per model: its mean over the rows that score it, the estimate when no neighbour does. */
  private readonly prior: Float64Array;

  private constructor(
    private readonly searcher: AnnSearcher,
    /** Row-major rows x models. */
    private readonly scores: Float32Array,
    readonly rows: number,
    readonly dim: number,
    readonly models: number,
    readonly kind: 'exact' | 'hnsw',
  ) {
    this.lastQ = new Float32Array(dim);
    this.prior = columnMeans(scores, rows, models);
  }

  /** Loads vectors.f32 and scores.f32 as the folder's manifest describes them. */
  static async load(dir: string, opts: KnnIndexOptions = {}): Promise<KnnIndex> {
    const m = await readManifest(dir);
    if (m.format !== 'knn') throw new ArtifactError(dir, 'format', `expected a 'knn' artifact, got '${m.format}'`);
    const rows = m.trained_on.rows;
    if (rows < 1) throw new ArtifactError(dir, 'trained_on.rows', `must be at least 1, got ${rows}`);
    const dim = m.embedder.dim;
    const models = m.models.length;
    // NaN marks a model the row did not score (rows built from feedback score one model each).
    const scores = await readF32(dir, SCORES_FILE, rows * models, { allowNaN: true });
    for (let i = 0; i < scores.length; i++) {
      const s = scores[i]!;
      if (s < 0 || s > 1) throw new ArtifactError(dir, SCORES_FILE, `value ${i} is ${s}; scores must be in 0..1`);
    }
    const unscored = firstUnscored(scores, rows, models);
    if (unscored !== null) throw new ArtifactError(dir, SCORES_FILE, `${unscored}: every row and every model needs at least one score`);
    if (opts.index === 'hnsw') {
      const searcher = await loadHnsw(dir, HNSW_FILE, rows, dim, opts.ef, () => readF32(dir, VECTORS_FILE, rows * dim));
      return new KnnIndex(searcher, scores, rows, dim, models, 'hnsw');
    }
    const vectors = await readF32(dir, VECTORS_FILE, rows * dim);
    return new KnnIndex(new ExactSearcher(vectors, rows, dim), scores, rows, dim, models, 'exact');
  }

  /** An exact index over rows in memory (tests, evaluation folds). Vectors must be unit length. */
  static fromRows(vectors: readonly Float32Array[], scores: readonly Float32Array[], opts: { scan?: 'auto' | 'js' } = {}): KnnIndex {
    const rows = vectors.length;
    if (rows === 0) throw new Error('KnnIndex.fromRows: no rows');
    if (scores.length !== rows) throw new Error(`KnnIndex.fromRows: ${rows} vectors but ${scores.length} score rows`);
    const dim = vectors[0]!.length;
    const models = scores[0]!.length;
    const flatV = new Float32Array(rows * dim);
    const flatS = new Float32Array(rows * models);
    for (let r = 0; r < rows; r++) {
      if (vectors[r]!.length !== dim) throw new Error(`KnnIndex.fromRows: vector ${r} has length ${vectors[r]!.length}, expected ${dim}`);
      if (scores[r]!.length !== models)
        throw new Error(`KnnIndex.fromRows: score row ${r} has length ${scores[r]!.length}, expected ${models}`);
      flatV.set(vectors[r]!, r * dim);
      flatS.set(scores[r]!, r * models);
    }
    return new KnnIndex(new ExactSearcher(flatV, rows, dim, opts.scan), flatS, rows, dim, models, 'exact');
  }

  /** How the last search ran: the scan used and how many rows were scored exactly (benchmarks, tests). */
  get stats(): { scan: string; scanDim: number; exactRows: number } {
    const s = this.searcher;
    return s instanceof ExactSearcher
      ? { scan: s.kind, scanDim: s.scanDim, exactRows: s.lastCandidates }
      : { scan: 'hnsw', scanDim: this.dim, exactRows: 0 };
  }

  /**
   * Similarity-weighted mean score per model over the top k rows, and how close those rows are. Each
   * model's mean runs over the neighbours that score it, so a row scoring one model leaves the others alone.
   */
  query(q: Float32Array, k: number): KnnQueryResult {
    const n = this.neighbours(q, k);
    const { models, scores } = this;
    const out = new Float32Array(models);
    const wSum = new Float64Array(models);
    const scored = new Int32Array(models);
    let simSum = 0;
    for (let i = 0; i < n; i++) {
      const s = this.topSim[i]!;
      simSum += s;
      // Negative similarity is evidence of nothing; clamp so it cannot flip a mean.
      const w = s > 0 ? s : 0;
      const row = this.topIdx[i]! * models;
      for (let c = 0; c < models; c++) {
        const v = scores[row + c]!;
        if (Number.isNaN(v)) continue;
        out[c] = out[c]! + w * v;
        wSum[c] = wSum[c]! + w;
        scored[c] = scored[c]! + 1;
      }
    }
    for (let c = 0; c < models; c++) {
      if (wSum[c]! > 0) {
        out[c] = out[c]! / wSum[c]!;
      } else if (scored[c]! > 0) {
        // No neighbour points the same way (e.g. an empty prompt): fall back to the plain mean.
        out[c] = 0;
        for (let i = 0; i < n; i++) {
          const v = scores[this.topIdx[i]! * models + c]!;
          if (!Number.isNaN(v)) out[c] = out[c]! + v / scored[c]!;
        }
      } else {
        out[c] = this.prior[c]!;
      }
    }
    return { scores: out, topSimilarity: n > 0 ? this.topSim[0]! : 0, meanSimilarity: n > 0 ? simSum / n : 0, neighbours: n };
  }

  /** The top k rows of a query (shares query()'s one-search cache). */
  search(q: Float32Array, k: number): KnnNeighbours {
    const n = this.neighbours(q, k);
    return { n, idx: this.topIdx, sim: this.topSim };
  }

  /** Row `row`'s score for model column `col`; NaN when the row did not score it. */
  score(row: number, col: number): number {
    return this.scores[row * this.models + col]!;
  }

  /** The best cosine similarity to any row (the kNN-distance guard's score). */
  topSimilarity(q: Float32Array, k = 1): number {
    return this.neighbours(q, k) > 0 ? this.topSim[0]! : 0;
  }

  private neighbours(q: Float32Array, k: number): number {
    if (q.length !== this.dim) {
      throw E.routingFailed(
        `kNN index expects a ${this.dim}-dimensional embedding, got ${q.length}; the policy's embedder does not match the artifact`,
      );
    }
    if (!Number.isInteger(k) || k < 1) throw new Error(`kNN: k must be a positive integer, got ${k}`);
    const kk = Math.min(k, this.rows);
    let same = kk <= this.lastK;
    const last = this.lastQ;
    for (let j = 0; j < q.length; j++) {
      const x = q[j]!;
      // A NaN would compare false everywhere and silently pick the first rows; refuse it instead.
      if (!Number.isFinite(x)) throw E.routingFailed(`kNN: embedding value ${j} is ${x}; the embedder produced a non-finite vector`);
      if (same && x !== last[j]) same = false;
    }
    if (same) return Math.min(kk, this.lastN);
    if (this.topIdx.length < kk) {
      this.topIdx = new Int32Array(kk);
      this.topSim = new Float32Array(kk);
    }
    this.lastK = 0; // invalid while searching, in case the searcher throws
    const n = this.searcher.search(q, kk, this.topIdx, this.topSim);
    last.set(q);
    this.lastK = kk;
    this.lastN = n;
    return n;
  }
}

/** Each column's mean over its non-NaN values (0 for a column with none). */
function columnMeans(scores: Float32Array, rows: number, models: number): Float64Array {
  const sum = new Float64Array(models);
  const count = new Float64Array(models);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < models; c++) {
      const v = scores[r * models + c]!;
      if (Number.isNaN(v)) continue;
      sum[c] = sum[c]! + v;
      count[c] = count[c]! + 1;
    }
  }
  return sum.map((x, c) => (count[c]! > 0 ? x / count[c]! : 0));
}

/** 'row N' or 'model column N' when one scores nothing at all (all NaN), else null. */
function firstUnscored(scores: Float32Array, rows: number, models: number): string | null {
  const colSeen = new Uint8Array(models);
  for (let r = 0; r < rows; r++) {
    let any = false;
    for (let c = 0; c < models; c++) {
      if (!Number.isNaN(scores[r * models + c]!)) {
        any = true;
        colSeen[c] = 1;
      }
    }
    if (!any) return `row ${r} scores no model`;
  }
  const col = colSeen.indexOf(0);
  return col < 0 ? null : `model column ${col} has no score on any row`;
}
