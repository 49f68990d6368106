// Out-of-domain guard, run before scoring: a prompt far from everything the router was trained on
// gets the policy's fallback backend (or a 400), instead of a confident guess from a model that has
// never seen anything like it. Two kinds:
//  - knn_distance: the best cosine similarity to a training row; below the threshold = out of domain.
//  - max_prob: a softmax classifier over labels; out of domain when its best in-domain label is below
//    the threshold, or when it says 'ood' outright (a label trained on out-of-domain negatives).
import type { Embedder } from '../embedders/types.js';
import { ArtifactError, readManifest, type ArtifactManifest } from './artifacts.js';
import { KnnIndex } from './knn-index.js';
import { OnnxMlp } from './mlp.js';
import type { Guard } from './types.js';

export const OOD_LABEL = 'ood';

/** kNN guards answer synchronously; classifier guards need one onnxruntime call. Always await check(). */
export type RouterGuard = Guard & { readonly kind: 'knn_distance' | 'max_prob' };

/** The in-domain confidence of a classifier's output: the best probability among non-'ood' labels. */
export function maxProbScore(probs: ArrayLike<number>, labels: readonly string[]): { score: number; label: string; oodWins: boolean } {
  let best = -1;
  let bestLabel = labels[0] ?? '';
  let argmax = 0;
  for (let i = 0; i < labels.length; i++) {
    const p = probs[i]!;
    if (p > probs[argmax]!) argmax = i;
    if (labels[i] !== OOD_LABEL && p > best) {
      best = p;
      bestLabel = labels[i]!;
    }
  }
  return { score: Math.max(best, 0), label: bestLabel, oodWins: labels[argmax] === OOD_LABEL };
}

export function createGuard(
  manifest: ArtifactManifest,
  source: KnnIndex | OnnxMlp,
  opts: { threshold?: number; k?: number } = {},
): RouterGuard {
  const threshold = opts.threshold ?? manifest.guard?.threshold;
  if (threshold === undefined || !Number.isFinite(threshold)) {
    throw new Error(
      `guard: the artifact (trained on ${manifest.trained_on.file}) has no calibrated guard threshold; set the policy's guard threshold or retrain with calibration`,
    );
  }
  if (source instanceof KnnIndex) {
    if (manifest.guard && manifest.guard.kind !== 'knn_distance' && opts.threshold === undefined) {
      throw new Error(`guard: the manifest's threshold is for a '${manifest.guard.kind}' guard, but this is a kNN index`);
    }
    const k = opts.k ?? 1;
    return {
      kind: 'knn_distance',
      // Pass the router's k: the index caches the last neighbour list, so guard + scoring is one search.
      check: (e) => {
        const score = source.topSimilarity(e, k);
        return { score, threshold, inDomain: score >= threshold };
      },
    };
  }
  const labels = manifest.labels;
  if (labels === undefined || labels.length < 2) {
    throw new Error('guard: a max_prob guard needs an mlp artifact with at least two `labels` (a softmax classifier)');
  }
  if (manifest.guard && manifest.guard.kind !== 'max_prob' && opts.threshold === undefined) {
    throw new Error(`guard: the manifest's threshold is for a '${manifest.guard.kind}' guard, but this is a classifier`);
  }
  return {
    kind: 'max_prob',
    check: async (e) => {
      const r = maxProbScore(await source.run(e), labels);
      return { score: r.score, threshold, inDomain: !r.oodWins && r.score >= threshold, label: r.oodWins ? OOD_LABEL : r.label };
    },
  };
}

/**
 * A guard from its own artifact folder (a knn artifact, or an mlp classifier with labels), checked
 * against the policy's embedder. `close()` releases what it loaded.
 */
export async function loadGuard(
  dir: string,
  embedder: Pick<Embedder, 'id' | 'dim'> | null,
  opts: { threshold?: number; k?: number } = {},
): Promise<RouterGuard & { close(): Promise<void> }> {
  const m = await readManifest(dir);
  if (embedder === null || embedder.id !== m.embedder.id || embedder.dim !== m.embedder.dim) {
    throw new ArtifactError(
      dir,
      'embedder',
      `guard artifact was trained with embedder '${m.embedder.id}' (dim ${m.embedder.dim}), but the policy's embedder is ${embedder === null ? 'none' : `'${embedder.id}' (dim ${embedder.dim})`}`,
    );
  }
  if (m.format === 'knn') {
    const index = await KnnIndex.load(dir);
    return { ...createGuard(m, index, opts), close: async () => {} };
  }
  const mlp = await OnnxMlp.load(dir);
  try {
    return { ...createGuard(m, mlp, opts), close: () => mlp.close() };
  } catch (err) {
    await mlp.close();
    throw err;
  }
}

/**
 * Picks the threshold maximising the harmonic mean of in-domain acceptance (score >= t) and
 * out-of-domain rejection (score < t) on calibration scores (training/validation data, never test).
 * Returns the midpoint of the best gap, so the boundary does not sit on a calibration sample.
 */
export function calibrateThreshold(
  inScores: number[],
  outScores: number[],
): { threshold: number; idAcc: number; oodAcc: number; harmonic: number } {
  if (inScores.length === 0 || outScores.length === 0) throw new Error('calibrateThreshold: need both in-domain and out-of-domain scores');
  for (const s of [...inScores, ...outScores]) if (!Number.isFinite(s)) throw new Error(`calibrateThreshold: score ${s} is not finite`);
  const ins = Float64Array.from(inScores).sort();
  const outs = Float64Array.from(outScores).sort();
  const values = Float64Array.from(new Set([...ins, ...outs])).sort();
  let best = { threshold: values[0]!, idAcc: 1, oodAcc: 0, harmonic: 0 };
  let i = 0; // ins[0..i) are < t
  let o = 0; // outs[0..o) are < t
  const consider = (t: number, below: number) => {
    const idAcc = (ins.length - i) / ins.length;
    const oodAcc = o / outs.length;
    const harmonic = idAcc + oodAcc === 0 ? 0 : (2 * idAcc * oodAcc) / (idAcc + oodAcc);
    if (harmonic > best.harmonic) best = { threshold: below === -Infinity ? t : (below + t) / 2, idAcc, oodAcc, harmonic };
  };
  let prev = -Infinity;
  for (const t of values) {
    while (i < ins.length && ins[i]! < t) i++;
    while (o < outs.length && outs[o]! < t) o++;
    consider(t, prev);
    prev = t;
  }
  // Rejecting everything: a threshold just above the largest score.
  i = ins.length;
  o = outs.length;
  consider(prev + Math.max(1e-6, Math.abs(prev) * 1e-6), prev);
  return best;
}
