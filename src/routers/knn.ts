// `knn` router: predicted quality per model = similarity-weighted mean of that model's scores on the
// k most similar training prompts. Evidence says how close those prompts were.
import { z } from 'zod';
import { bindArtifact, checkEmbedding, columnOf, readManifest } from './artifacts.js';
import { createGuard, type RouterGuard } from './guard.js';
import { KnnIndex } from './knn-index.js';
import { defineRouter, type CandidateScore } from './types.js';

export const KnnRouterOptions = z
  .object({
    type: z.literal('knn'),
    artifact: z.string().min(1).describe('Folder of a knn artifact (manifest.json, vectors.f32, scores.f32), relative to the config file.'),
    k: z.number().int().min(1).max(1024).default(20).describe('Neighbours averaged per prompt.'),
    index: z
      .enum(['exact', 'hnsw'])
      .default('exact')
      .describe("'exact' scans every row (fine to ~100k rows); 'hnsw' is an approximate graph index (hnswlib-node) for millions."),
    ef: z
      .number()
      .int()
      .min(1)
      .max(4096)
      .optional()
      .describe("HNSW search breadth (default 64, at least k); higher = better recall, slower. Only for index: 'hnsw'."),
  })
  .strict()
  .describe('Cosine k-nearest neighbours over a stored index of (embedding, per-model score) rows.');

export default defineRouter({
  type: 'knn',
  options: KnnRouterOptions,
  async create(opts, ctx) {
    const dir = ctx.resolvePath(opts.artifact);
    const manifest = await readManifest(dir);
    // Check the manifest against the policy before reading megabytes of vectors.
    const columns = bindArtifact(dir, manifest, ctx.embedder, ctx.candidates);
    const index = await KnnIndex.load(dir, { index: opts.index, ...(opts.ef === undefined ? {} : { ef: opts.ef }) });
    const asName = new Map(ctx.candidates.map((c) => [c.backend, c.as]));
    const k = opts.k;
    return {
      type: 'knn',
      needsEmbedding: true,
      textOnly: true,
      score(q): CandidateScore[] {
        const r = index.query(checkEmbedding(q.embedding, index.dim, 'knn'), k);
        const topSimilarity = round4(r.topSimilarity);
        const meanSimilarity = round4(r.meanSimilarity);
        return q.candidates.map((backend) => ({
          backend,
          quality: clamp01(r.scores[columnOf(columns, backend, 'knn')]!),
          evidence: { model: asName.get(backend) ?? backend, neighbours: r.neighbours, topSimilarity, meanSimilarity },
        }));
      },
      /** A kNN-distance guard over the same index (one search serves guard and scoring). */
      makeGuard(o: { threshold?: number } = {}): RouterGuard {
        return createGuard(manifest, index, { ...o, k });
      },
    };
  },
});

function round4(x: number): number {
  return Math.round(x * 10_000) / 10_000;
}

/** Float32 rounding can land a weighted mean of 1s a hair above 1. */
function clamp01(x: number): number {
  return x > 1 ? 1 : x > 0 ? x : 0;
}
