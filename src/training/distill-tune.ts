import { seededRandom } from '../util/random.js';
import { rowOf, type Matrix } from './embed-cache.js';

// Fine-tuning a static table: the summed rows of a text should point where the teacher's vector (in
// the PCA basis) points. Loss per text = 1 - cos(s, z), s = sum of its pieces' rows; the gradient
// reaches only the rows of its pieces, so Adam runs lazily on the rows a batch touched. Early stopping
// on the validation part keeps the best table seen, so a run that starts to overfit loses nothing.

/** A text as the pieces it contains: unique ids (ascending) and how often each occurs. */
export interface Bag {
  ids: Int32Array;
  counts: Float32Array;
}

/** s = sum over the bag of count x row, into `out` (dims long). */
export function poolBag(table: Float32Array, dims: number, bag: Bag, out: Float32Array): void {
  out.fill(0);
  for (let j = 0; j < bag.ids.length; j++) {
    const base = bag.ids[j]! * dims;
    const c = bag.counts[j]!;
    for (let k = 0; k < dims; k++) out[k] = out[k]! + c * table[base + k]!;
  }
}

export interface FinetuneReport {
  epochsRun: number;
  bestEpoch: number;
  bestVal: number;
  lr: number;
  l2: number;
  batch: number;
  fitRows: number;
  valRows: number;
  stopped: string;
}

export interface FinetuneInput {
  table: Float32Array;
  /** Pull toward the starting table (lambda/2 |row - row0|^2 per touched row): rare pieces stay near it. */
  l2: number;
  dims: number;
  fit: { bags: readonly Bag[]; z: Matrix };
  val: { bags: readonly Bag[]; z: Matrix };
  epochs: number;
  lr: number;
  batch: number;
  seed: number;
  log: (line: string) => void;
  /** Validation agreement of a table (higher is better). */
  score: (table: Float32Array) => number;
}

const PATIENCE = 2;

export function finetuneTable(inp: FinetuneInput): { table: Float32Array; report: FinetuneReport } {
  const { dims, lr, batch, l2 } = inp;
  const table0 = inp.table;
  const table = Float32Array.from(inp.table);
  const rows = table.length / dims;
  const m1 = new Float32Array(table.length);
  const m2 = new Float32Array(table.length);
  const grad = new Float32Array(table.length);
  const touchedMark = new Uint8Array(rows);
  const touched = new Int32Array(rows);
  const s = new Float32Array(dims);
  const g = new Float32Array(dims);
  const b1 = 0.9;
  const b2 = 0.999;
  const eps = 1e-8;
  let step = 0;
  const next = seededRandom(inp.seed);
  const order = Array.from({ length: inp.fit.bags.length }, (_, i) => i);

  let bestVal = inp.score(table);
  let bestTable = Float32Array.from(table);
  let bestEpoch = 0;
  let epochsRun = 0;
  let stopped = 'max epochs';
  inp.log(`finetune: epoch 0 validation agreement ${bestVal.toFixed(4)}`);
  for (let epoch = 1; epoch <= inp.epochs; epoch++) {
    const t0 = performance.now();
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    let lossSum = 0;
    for (let start = 0; start < order.length; start += batch) {
      const end = Math.min(order.length, start + batch);
      let nt = 0;
      for (let bi = start; bi < end; bi++) {
        const r = order[bi]!;
        const bag = inp.fit.bags[r]!;
        const z = rowOf(inp.fit.z, r);
        poolBag(table, dims, bag, s);
        let ss = 0;
        let zz = 0;
        let dot = 0;
        for (let k = 0; k < dims; k++) {
          ss += s[k]! * s[k]!;
          zz += z[k]! * z[k]!;
          dot += s[k]! * z[k]!;
        }
        if (!(ss > 0) || !(zz > 0)) continue;
        const ns = Math.sqrt(ss);
        const nz = Math.sqrt(zz);
        const cos = dot / (ns * nz);
        lossSum += 1 - cos;
        // d(1 - cos)/ds = -(z/|z| - cos s/|s|) / |s|, averaged over the batch.
        const scale = 1 / (ns * (end - start));
        for (let k = 0; k < dims; k++) g[k] = -(z[k]! / nz - (cos * s[k]!) / ns) * scale;
        for (let j = 0; j < bag.ids.length; j++) {
          const id = bag.ids[j]!;
          const c = bag.counts[j]!;
          if (touchedMark[id] === 0) {
            touchedMark[id] = 1;
            touched[nt++] = id;
          }
          const base = id * dims;
          for (let k = 0; k < dims; k++) grad[base + k] = grad[base + k]! + c * g[k]!;
        }
      }
      step++;
      const c1 = 1 - b1 ** step;
      const c2 = 1 - b2 ** step;
      for (let t = 0; t < nt; t++) {
        const id = touched[t]!;
        touchedMark[id] = 0;
        const base = id * dims;
        for (let k = base; k < base + dims; k++) {
          const gk = grad[k]! + l2 * (table[k]! - table0[k]!);
          grad[k] = 0;
          m1[k] = b1 * m1[k]! + (1 - b1) * gk;
          m2[k] = b2 * m2[k]! + (1 - b2) * gk * gk;
          table[k] = table[k]! - (lr * (m1[k]! / c1)) / (Math.sqrt(m2[k]! / c2) + eps);
        }
      }
    }
    epochsRun = epoch;
    const v = inp.score(table);
    inp.log(
      `finetune: epoch ${epoch} train loss ${(lossSum / Math.max(order.length, 1)).toFixed(4)}, validation agreement ${v.toFixed(4)} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    if (v > bestVal) {
      bestVal = v;
      bestTable = Float32Array.from(table);
      bestEpoch = epoch;
    } else if (epoch - bestEpoch >= PATIENCE) {
      stopped = `no validation gain for ${PATIENCE} epochs`;
      break;
    }
  }
  return {
    table: bestTable,
    report: { epochsRun, bestEpoch, bestVal, lr, l2, batch, fitRows: inp.fit.bags.length, valRows: inp.val.bags.length, stopped },
  };
}
