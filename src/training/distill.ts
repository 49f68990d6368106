import { UnigramTokenizer, type Vocabulary } from '../embedders/sp-tokenizer.js';
import { truncateMiddle } from '../util/text.js';
import { seededRandom } from '../util/random.js';
import { rowOf, type Matrix } from './embed-cache.js';
import { project, ridgeMap, secondMoment, topDirections } from './pca.js';
import { type Bag, finetuneTable, poolBag, type FinetuneReport } from './distill-tune.js';

// Model2Vec-style distillation of a sentence encoder into a static table over its own vocabulary:
// 1. every vocabulary piece embedded by the teacher (pieceVectors, given);
// 2. a PCA basis (top `dims` directions of the teacher's vectors) and each piece's coordinates in it;
// 3. SIF weights a / (a + p(piece)), p counted on the fit part of the TRAIN texts (the rows are summed,
//    so a weight is just a row's length);
// 4. a ridge linear map of the pooled vectors onto the teacher's, folded into the rows; `a` is chosen
//    by the validation agreement after it (0.29 -> 0.74 on USE-lite: pieces alone are not sentences);
// 5. optionally, the rows fine-tuned so the summed rows of a train text (and of its sentences, `extra`)
//    point where the teacher's vector does (distill-tune.ts), early-stopped on the validation part.
// Agreement is measured in the teacher's own space: for a unit teacher vector t and basis B,
// cos(B^T s, t) = s . (B t) / |s|, since B's rows are orthonormal.

export interface DistillInput {
  vocab: Vocabulary;
  reserved: number;
  /** vocab.length x T teacher vectors of each piece's text (reserved rows: zeros). */
  pieceVectors: Matrix;
  /** Train texts and the teacher's unit vectors for them (T wide). */
  train: { texts: readonly string[]; targets: Matrix };
  dims: number;
  /** What the PCA is fitted on: the pieces' vectors, or the train texts' vectors. */
  pcaOn: 'vocab' | 'train';
  /** SIF `a` candidates; null = every piece weighs 1. The best on validation is kept. */
  sifCandidates: ReadonlyArray<number | null>;
  /**
   * Parts of the train texts (distill-data.ts chunkTexts) with their teacher vectors and the index of
   * the text each came from: extra fine-tuning pairs; those of validation texts are left out.
   */
  extra?: { texts: readonly string[]; targets: Matrix; parent: Int32Array };
  /** Fit one linear map of the pooled vectors onto the targets and fold it into the rows. */
  linearMap: boolean;
  /** Fine-tuning epochs (0 = none: the PCA + weights table). */
  epochs: number;
  lr: number;
  l2: number;
  batch: number;
  /** Share of the train texts held out for choosing `a` and early stopping. */
  valShare: number;
  seed: number;
  maxChars: number;
  log: (line: string) => void;
}

export interface DistillResult {
  /** vocab.length x dims, weights folded in. */
  table: Float32Array;
  /** dims x T orthonormal rows. */
  basis: Float32Array;
  capturedEnergyVal: number;
  sifA: number | null;
  countedTokens: number;
  valRows: number;
  /** Mean teacher-space cosine on the validation part: before and after fine-tuning. */
  valAgreementInit: number;
  valAgreement: number;
  finetune: FinetuneReport | null;
  /** Validation agreement of any table over the same pieces (e.g. the quantised one). */
  scoreVal: (table: Float32Array) => number;
}

/** The text the teacher embeds for one piece: '▁' back to a space; a leading one is the teacher's own. */
export const pieceText = (piece: string): string => piece.replace(/\u2581/g, ' ').replace(/^ /, '');

/** Each text's pieces as a bag (unique ids, counts), segmented as the embedder will at run time. */
export function bagsOf(tok: UnigramTokenizer, texts: readonly string[], maxChars: number): Bag[] {
  return texts.map((t) => {
    const n = tok.encode(t === '' ? ' ' : truncateMiddle(t, maxChars));
    const counts = new Map<number, number>();
    for (let i = 0; i < n; i++) counts.set(tok.ids[i]!, (counts.get(tok.ids[i]!) ?? 0) + 1);
    const ids = [...counts.keys()].sort((a, b) => a - b);
    return { ids: Int32Array.from(ids), counts: Float32Array.from(ids, (id) => counts.get(id)!) };
  });
}

/** Mean teacher-space cosine of the pooled bags against their targets (already in the basis: z = B t). */
export function meanAgreement(table: Float32Array, dims: number, bags: readonly Bag[], z: Matrix): number {
  const s = new Float32Array(dims);
  let sum = 0;
  for (let i = 0; i < bags.length; i++) {
    poolBag(table, dims, bags[i]!, s);
    let dot = 0;
    let ss = 0;
    const zi = rowOf(z, i);
    for (let k = 0; k < dims; k++) {
      dot += s[k]! * zi[k]!;
      ss += s[k]! * s[k]!;
    }
    sum += ss > 0 ? dot / Math.sqrt(ss) : 0;
  }
  return bags.length === 0 ? 0 : sum / bags.length;
}

/** Coordinates of every row of m in the basis. */
export function projectRows(basis: Float32Array, dims: number, m: Matrix): Matrix {
  const data = new Float32Array(m.rows * dims);
  for (let i = 0; i < m.rows; i++) project(basis, dims, rowOf(m, i), data.subarray(i * dims, (i + 1) * dims));
  return { rows: m.rows, dim: dims, data };
}

/** A seeded permutation split: the first `share` of a shuffled order validates, the rest trains. */
function splitIndices(n: number, share: number, seed: number): { fit: number[]; val: number[] } {
  const order = Array.from({ length: n }, (_, i) => i);
  const next = seededRandom(seed ^ 0x5f3759df);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const nv = Math.round(n * share);
  return { val: order.slice(0, nv).sort((a, b) => a - b), fit: order.slice(nv).sort((a, b) => a - b) };
}

const pick = <T>(xs: readonly T[], idx: readonly number[]): T[] => idx.map((i) => xs[i]!);
const pickRows = (m: Matrix, idx: readonly number[]): Matrix => {
  const data = new Float32Array(idx.length * m.dim);
  idx.forEach((i, r) => data.set(rowOf(m, i), r * m.dim));
  return { rows: idx.length, dim: m.dim, data };
};

export function distill(inp: DistillInput): DistillResult {
  const { vocab, dims, log } = inp;
  const V = vocab.length;
  const T = inp.pieceVectors.dim;
  if (inp.pieceVectors.rows !== V) throw new Error(`pieceVectors has ${inp.pieceVectors.rows} rows for ${V} pieces`);
  if (inp.train.targets.dim !== T) throw new Error(`train targets are ${inp.train.targets.dim}-d, piece vectors ${T}-d`);
  if (dims > T) throw new Error(`--dims ${dims} is more than the teacher's ${T}`);
  const tok = new UnigramTokenizer(vocab, inp.reserved);

  const { fit, val } = splitIndices(inp.train.texts.length, inp.valShare, inp.seed);
  log(`distill: ${V} pieces, ${fit.length} fit + ${val.length} validation texts, teacher ${T}-d -> ${dims}-d`);

  const t0 = performance.now();
  const source = inp.pcaOn === 'vocab' ? inp.pieceVectors : pickRows(inp.train.targets, fit);
  const basis = topDirections(secondMoment(source.data, T), T, dims);
  log(`distill: PCA on ${inp.pcaOn} (${source.rows} vectors) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const bags = bagsOf(tok, inp.train.texts, inp.maxChars);
  const fitBags = pick(bags, fit);
  const valBags = pick(bags, val);
  const z = projectRows(basis, dims, inp.train.targets);
  const zFit = pickRows(z, fit);
  const zVal = pickRows(z, val);
  let energy = 0;
  for (let i = 0; i < zVal.rows; i++) for (const x of rowOf(zVal, i)) energy += x * x;
  const capturedEnergyVal = zVal.rows === 0 ? 0 : energy / zVal.rows;
  log(
    `distill: the basis keeps ${(capturedEnergyVal * 100).toFixed(1)}% of the validation vectors' energy (the cosine ceiling is its root)`,
  );

  // Frequencies on the fit part only, so that validation measures unseen text.
  const counts = new Float64Array(V);
  let total = 0;
  for (const b of fitBags)
    for (let j = 0; j < b.ids.length; j++) {
      counts[b.ids[j]!] = counts[b.ids[j]!]! + b.counts[j]!;
      total += b.counts[j]!;
    }
  const coords = projectRows(basis, dims, inp.pieceVectors);
  const weightsFor = (a: number | null): Float32Array =>
    Float32Array.from({ length: V }, (_, id) => (a === null ? 1 : a / (a + counts[id]! / Math.max(total, 1))));
  const tableFor = (w: Float32Array): Float32Array => {
    const t = new Float32Array(V * dims);
    for (let id = 0; id < V; id++) {
      const src = rowOf(coords, id);
      for (let k = 0; k < dims; k++) t[id * dims + k] = w[id]! * src[k]!;
    }
    return t;
  };
  // Summed piece vectors are not sentence vectors (single pieces share a direction sentences do not),
  // but much of the difference is one linear map W of the basis. Pooling is linear, so W applied to
  // every row is W applied to the sum: fitted once on the fit texts, folded into the table, free at run time.
  const mapped = (t: Float32Array): Float32Array => {
    const x = new Float32Array(fitBags.length * dims);
    const s = new Float32Array(dims);
    fitBags.forEach((bag, i) => {
      poolBag(t, dims, bag, s);
      const n = Math.hypot(...s) || 1;
      for (let k = 0; k < dims; k++) x[i * dims + k] = s[k]! / n;
    });
    const w = ridgeMap(x, zFit.data, dims, 1);
    const out = new Float32Array(t.length);
    for (let id = 0; id < V; id++)
      for (let i = 0; i < dims; i++) {
        let acc = 0;
        for (let k = 0; k < dims; k++) acc += w[i * dims + k]! * t[id * dims + k]!;
        out[id * dims + i] = acc;
      }
    return out;
  };
  let best: { a: number | null; table: Float32Array; agree: number } | null = null;
  for (const a of inp.sifCandidates) {
    const raw = tableFor(weightsFor(a));
    const table = inp.linearMap ? mapped(raw) : raw;
    const agree = meanAgreement(table, dims, valBags, zVal);
    const what = a === null ? 'uniform weights' : `SIF a=${a}`;
    log(`distill: ${what}${inp.linearMap ? ' + linear map' : ''}: validation agreement ${agree.toFixed(4)}`);
    if (best === null || agree > best.agree) best = { a, table, agree };
  }
  if (best === null) throw new Error('no SIF candidate given');
  log(`distill: kept ${best.a === null ? 'uniform weights' : `SIF a=${best.a}`} (${best.agree.toFixed(4)})`);
  let table = best.table;
  let valAgreement = best.agree;
  const valAgreementInit = valAgreement;
  let finetune: FinetuneReport | null = null;
  if (inp.epochs > 0) {
    let bagsFT = fitBags;
    let zFT = zFit;
    if (inp.extra !== undefined) {
      const isVal = new Uint8Array(inp.train.texts.length);
      for (const i of val) isVal[i] = 1;
      const keep = [...inp.extra.parent.keys()].filter((j) => isVal[inp.extra!.parent[j]!] === 0);
      bagsFT = [...fitBags, ...bagsOf(tok, pick(inp.extra.texts, keep), inp.maxChars)];
      const zx = projectRows(basis, dims, pickRows(inp.extra.targets, keep));
      zFT = { rows: zFit.rows + zx.rows, dim: dims, data: new Float32Array(zFit.rows * dims + zx.data.length) };
      zFT.data.set(zFit.data);
      zFT.data.set(zx.data, zFit.data.length);
      log(`distill: fine-tuning on ${fitBags.length} texts + ${keep.length} of their sentences/lines`);
    }
    const r = finetuneTable({
      table,
      l2: inp.l2,
      dims,
      fit: { bags: bagsFT, z: zFT },
      val: { bags: valBags, z: zVal },
      epochs: inp.epochs,
      lr: inp.lr,
      batch: inp.batch,
      seed: inp.seed,
      log,
      score: (t) => meanAgreement(t, dims, valBags, zVal),
    });
    table = r.table;
    valAgreement = r.report.bestVal;
    finetune = r.report;
  }
  return {
    table,
    basis,
    capturedEnergyVal,
    sifA: best.a,
    countedTokens: total,
    valRows: val.length,
    valAgreementInit,
    valAgreement,
    finetune,
    scoreVal: (t) => meanAgreement(t, dims, valBags, zVal),
  };
}
