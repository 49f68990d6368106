// Stages 4-8 of a routed request: extract the prompt text, embed it (cached), score every candidate,
// decide. The pipeline calls routeRequest() and nothing else, and /v1/route explains the same Decision.
import type { CompiledBackend, CompiledPolicy } from '../config/compile.js';
import type { CachedEmbedder } from '../embedders/cache.js';
import { extractPromptText } from '../embedders/prompt-text.js';
import { E } from '../errors.js';
import { checkScores, decide, type Decision } from './policy.js';
import type { RouteQuery } from './types.js';

export interface RouteInput {
  policy: CompiledPolicy;
  backends: ReadonlyMap<string, CompiledBackend>;
  body: unknown;
  meta: RouteQuery['meta'];
  lambda?: number;
  signal?: AbortSignal;
}

export async function routeRequest(input: RouteInput): Promise<Decision> {
  const { policy } = input;
  const t0 = performance.now();
  const text = extractPromptText(input.body, policy.config.prompt);
  const t1 = performance.now();
  let embedding: Float32Array | null = null;
  let embedCacheHit = false;
  if (policy.router.needsEmbedding && policy.embedder !== null) {
    if (text.length === 0) throw E.invalidRequest('the prompt has no text to route on (no user message with text content)', 'messages');
    const cached = policy.embedder as Partial<CachedEmbedder>;
    if (cached.embedCached) {
      const r = await cached.embedCached(text, input.signal);
      embedding = r.vec;
      embedCacheHit = r.hit;
    } else {
      embedding = await policy.embedder.embed(text, input.signal);
    }
  }
  const t2 = performance.now();
  const scores = await policy.router.score({ text, embedding, candidates: policy.candidateNames, meta: input.meta });
  checkScores(policy, scores);
  const t3 = performance.now();
  const d = decide({ policy, backends: input.backends, scores, promptChars: text.length, lambda: input.lambda });
  const t4 = performance.now();
  return {
    policy: policy.name,
    chosen: d.chosen,
    order: d.order,
    reason: policy.router.type === 'fixed' ? 'fixed' : 'objective',
    candidates: d.candidates,
    guard: null,
    embedder: policy.embedder?.id ?? null,
    router: policy.router.type,
    embedCacheHit,
    timingsMs: { extract: t1 - t0, embed: t2 - t1, guard: 0, score: t3 - t2, decide: t4 - t3 },
  };
}
