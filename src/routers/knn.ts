// `knn` router: predicted quality per model = similarity-weighted mean of that model's scores on the
// k most similar training prompts. Evidence says how close those prompts were. With `learn.online`,
// rows learned from feedback (knn-live.ts, fed by runtime/online-learning.ts) join the neighbours.
import { z } from 'zod';
import { bindArtifact, checkEmbedding, columnOf, readManifest } from './artifacts.js';
import { createGuard, type RouterGuard } from './guard.js';
import { KnnIndex, type KnnQueryResult } from './knn-index.js';
import { blendedQuality, LiveRows, mergeNeighbours } from './knn-live.js';
import { defineRouter, type CandidateScore } from './types.js';

export const KnnLearnOptions = z
  .object({
    online: z
      .boolean()
      .default(false)
      .describe(
        'Learn from feedback: a request the gateway routed and that gets feedback (POST /v1/feedback) becomes a labelled row scoring the backend that answered, shared by every replica through Redis.',
      ),
    max_rows: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(10_000)
      .describe('Learned rows kept per policy (in memory on every replica, and in its Redis stream); the oldest is evicted first.'),
    embedding_ttl_s: z
      .number()
      .int()
      .min(1)
      .default(86_400)
      .describe("How long a routed request's embedding is kept waiting for its feedback."),
    max_pending: z
      .number()
      .int()
      .min(1)
      .default(100_000)
      .describe('Embeddings kept awaiting feedback per policy; the oldest are dropped first.'),
  })
  .strict()
  .describe('Online learning from feedback (off by default).');
export type KnnLearnOptions = z.infer<typeof KnnLearnOptions>;

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
    learn: KnnLearnOptions.default(KnnLearnOptions.parse({})),
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
    const live = opts.learn.online ? new LiveRows(index.dim, opts.learn.max_rows, new Set(columns.keys())) : null;
    const fromArtifact = (r: KnnQueryResult, candidates: readonly string[], extra: Record<string, number>): CandidateScore[] => {
      const topSimilarity = round4(r.topSimilarity);
      const meanSimilarity = round4(r.meanSimilarity);
      return candidates.map((backend) => ({
        backend,
        quality: clamp01(r.scores[columnOf(columns, backend, 'knn')]!),
        evidence: { model: asName.get(backend) ?? backend, neighbours: r.neighbours, topSimilarity, meanSimilarity, ...extra },
      }));
    };
    return {
      type: 'knn',
      needsEmbedding: true,
      // Learned rows change the scores of a text already seen: no per-text score cache then.
      textOnly: live === null,
      score(q): CandidateScore[] {
        const e = checkEmbedding(q.embedding, index.dim, 'knn');
        const r = index.query(e, k);
        if (live === null) return fromArtifact(r, q.candidates, {});
        // The top k of artifact and live rows together (index.search reuses query()'s search).
        const m = mergeNeighbours(index.search(e, k), live.search(e, k), k);
        if (m.live === 0) return fromArtifact(r, q.candidates, { live: 0 });
        let simSum = 0;
        for (let t = 0; t < m.n; t++) simSum += m.sim[t]!;
        const evidence = { neighbours: m.n, live: m.live, topSimilarity: round4(m.sim[0]!), meanSimilarity: round4(simSum / m.n) };
        return q.candidates.map((backend) => {
          const col = columnOf(columns, backend, 'knn');
          // No merged neighbour scores this backend: the artifact's own estimate for it.
          const quality = blendedQuality(m, index, col, live, backend) ?? r.scores[col]!;
          return { backend, quality: clamp01(quality), evidence: { model: asName.get(backend) ?? backend, ...evidence } };
        });
      },
      ...(live === null ? {} : { addRows: (rows) => live.add(rows) }),
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
