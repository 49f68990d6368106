// A policy as the routing engine uses it: its router, embedder (always behind the embedding cache),
// guard and score cache, built from the policy's config. Errors carry the config stage they belong to,
// so the caller can point at the right line of the YAML.
import type { PolicyConfig } from '../config/schema.js';
import { withEmbedCache, type CachedEmbedder } from '../embedders/cache.js';
import { getEmbedderPlugin } from '../embedders/registry.js';
import { loadGuard } from './guard.js';
import { getRouterPlugin } from './registry.js';
import { ScoreCache } from './score-cache.js';
import type { Guard, Router } from './types.js';

export interface CompiledPolicy {
  readonly name: string;
  readonly config: PolicyConfig;
  readonly candidates: ReadonlyArray<{ backend: string; as: string }>;
  readonly candidateNames: readonly string[];
  readonly router: Router;
  readonly embedder: CachedEmbedder | null;
  readonly guard: Guard | null;
  /** Scores and guard verdicts per prompt text, for text-only routers (null otherwise). */
  readonly scoreCache: ScoreCache | null;
  readonly fallbacks: readonly string[];
}

/** Takes (or creates) a shared embedder by key; the runtime releases it when it is disposed. */
export type HoldEmbedder = (key: string, create: () => Promise<CachedEmbedder>) => Promise<CachedEmbedder>;

export async function compilePolicy(
  p: PolicyConfig,
  resolvePath: (p: string) => string,
  holdEmbedder: HoldEmbedder,
): Promise<CompiledPolicy> {
  const candidates = p.candidates.map((c) => (typeof c === 'string' ? { backend: c, as: c } : { backend: c.backend, as: c.as }));
  let embedder: CachedEmbedder | null = null;
  if (p.embedder !== undefined) {
    const opts = p.embedder;
    const plugin = getEmbedderPlugin(opts.type);
    if (!plugin) throw Object.assign(new Error(`unknown embedder type '${opts.type}'`), { stage: 'embedder' });
    try {
      // Policies with equal embedder settings (and successive configs) share one instance.
      embedder = await holdEmbedder(`${opts.type}:${JSON.stringify(opts)}:${resolvePath('.')}`, async () =>
        withEmbedCache(await plugin.create(opts, { resolvePath }), (opts as { cache_size?: number }).cache_size ?? 10_000),
      );
    } catch (err) {
      throw Object.assign(new Error(`embedder '${opts.type}' failed to load: ${(err as Error).message}`), { stage: 'embedder' });
    }
  }
  const plugin = getRouterPlugin(p.router.type);
  if (!plugin) throw Object.assign(new Error(`unknown router type '${p.router.type}'`), { stage: 'router' });
  let router: Router;
  try {
    router = await plugin.create(p.router, { resolvePath, embedder, candidates });
  } catch (err) {
    throw Object.assign(new Error(`router '${p.router.type}' failed to load: ${(err as Error).message}`), { stage: 'router' });
  }
  if (router.needsEmbedding && embedder === null) {
    throw Object.assign(new Error(`router '${p.router.type}' needs an embedder: add an \`embedder:\` section to the policy`), {
      stage: 'router',
    });
  }
  let guard: Guard | null = null;
  if (p.guard !== undefined) {
    const g = p.guard;
    try {
      if (embedder === null) throw new Error('a guard needs an embedder: add an `embedder:` section to the policy');
      if (g.artifact !== undefined) {
        guard = await loadGuard(resolvePath(g.artifact), embedder, g.threshold === undefined ? {} : { threshold: g.threshold });
      } else {
        guard = router.makeGuard?.(g.threshold === undefined ? {} : { threshold: g.threshold }) ?? null;
        if (guard === null) throw new Error(`router '${p.router.type}' has no built-in guard: give guard.artifact`);
      }
    } catch (err) {
      await router.close?.();
      throw Object.assign(new Error(`guard failed to load: ${(err as Error).message}`), { stage: 'guard' });
    }
  }
  const candidateNames = candidates.map((c) => c.backend);
  return {
    name: p.name,
    config: p,
    candidates,
    candidateNames,
    router,
    embedder,
    guard,
    scoreCache: router.textOnly === true && p.score_cache_size > 0 ? new ScoreCache(p.score_cache_size) : null,
    fallbacks: p.fallbacks,
  };
}
