// A policy as the routing engine uses it: its router, embedder (always behind the embedding cache),
// guard and score cache, built from the policy's config. Errors carry the config stage they belong to,
// so the caller can point at the right line of the YAML.
import type { EmbedderConfig, PolicyConfig } from '../config/schema.js';
import { withEmbedCache, type CachedEmbedder } from '../embedders/cache.js';
import { defaultCacheEntries, isSyncEmbedder } from '../embedders/common.js';
import { isConcatEmbedder } from '../embedders/concat.js';
import { getEmbedderPlugin } from '../embedders/registry.js';
import { loadGuard } from './guard.js';
import { getRouterPlugin } from './registry.js';
import { ScoreCache } from './score-cache.js';
import type { Guard, Router } from './types.js';
import type { z } from 'zod';

type EmbedderSpec = z.infer<typeof EmbedderConfig>;

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
  /**
   * false: a scoring thread (scoring.worker.ts). Embedders keep no vectors, and the policy's may write each
   * over the last (EmbedderContext.reuseVectors): the thread scores one text at a time.
   */
  embedCache = true,
): Promise<CompiledPolicy> {
  const candidates = p.candidates.map((c) => (typeof c === 'string' ? { backend: c, as: c } : { backend: c.backend, as: c.as }));
  let embedder: CachedEmbedder | null = null;
  if (p.embedder !== undefined) {
    const opts = p.embedder;
    const plugin = getEmbedderPlugin(opts.type);
    if (!plugin) throw Object.assign(new Error(`unknown embedder type '${opts.type}'`), { stage: 'embedder' });
    try {
      // Policies with equal embedder settings (and successive configs) share one instance.
      embedder = await holdEmbedder(`${opts.type}:${JSON.stringify(opts)}:${resolvePath('.')}`, async () => {
        const inner = await plugin.create(opts, { resolvePath, reuseVectors: !embedCache });
        return withEmbedCache(inner, embedCache ? (opts.cache_size ?? defaultCacheEntries(inner.dim)) : 0);
      });
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
      const opts = g.threshold === undefined ? {} : { threshold: g.threshold };
      if (g.artifact !== undefined && g.embedder !== undefined) {
        guard = await memberGuard(resolvePath(g.artifact), g.embedder, p.embedder!, embedder, resolvePath, opts);
      } else if (g.artifact !== undefined) {
        guard = await loadGuard(resolvePath(g.artifact), embedder, opts);
      } else {
        if (g.embedder !== undefined) throw new Error('guard.embedder goes with guard.artifact (a guard built with that embedder)');
        guard = router.makeGuard?.(opts) ?? null;
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

/** The embedder id `spec` would have, without building it when the policy's own config already says. */
async function embedderId(
  spec: EmbedderSpec,
  policySpec: EmbedderSpec,
  policyEmbedder: CachedEmbedder,
  resolvePath: (p: string) => string,
): Promise<string> {
  const inner = policyEmbedder.inner;
  const same = JSON.stringify(spec);
  // Options as parsed (defaults filled in, keys in schema order), so equal options print alike.
  if (JSON.stringify(policySpec) === same) return inner.id;
  if (policySpec.type === 'concat' && isConcatEmbedder(inner)) {
    const at = policySpec.members.findIndex((m) => JSON.stringify(m) === same);
    if (at >= 0) return inner.members[at]!.id;
  }
  // Written differently (an absolute path, say): build it once, for its id only.
  const plugin = getEmbedderPlugin(spec.type);
  if (!plugin) throw new Error(`guard.embedder: unknown embedder type '${spec.type}'`);
  const probe = await plugin.create(spec, { resolvePath });
  await probe.close();
  return probe.id;
}

/**
 * A guard built with one member of the policy's concat embedder: it checks that member's own vector
 * (checkText, for on-thread members), or that member's part of the policy's vector renormalised (the
 * member was scaled as a whole, so this is the member's own vector up to float rounding).
 */
async function memberGuard(
  dir: string,
  spec: EmbedderSpec,
  policySpec: EmbedderSpec,
  policyEmbedder: CachedEmbedder,
  resolvePath: (p: string) => string,
  opts: { threshold?: number },
): Promise<Guard> {
  const id = await embedderId(spec, policySpec, policyEmbedder, resolvePath);
  const inner = policyEmbedder.inner;
  if (id === inner.id) return loadGuard(dir, policyEmbedder, opts);
  if (!isConcatEmbedder(inner)) {
    throw new Error(`guard.embedder '${id}' is neither the policy's embedder ('${inner.id}') nor one of its concat members`);
  }
  const at = inner.members.findIndex((m) => m.id === id);
  if (at < 0) {
    throw new Error(
      `guard.embedder '${id}' is not a member of the policy's concat embedder (members: ${inner.members.map((m) => m.id).join(', ')})`,
    );
  }
  const member = inner.members[at]!;
  const start = inner.members.slice(0, at).reduce((s, m) => s + m.dim, 0);
  const end = start + member.dim;
  const g = await loadGuard(dir, member, opts);
  const part = new Float32Array(member.dim);
  // An on-thread member (lexical, static) can be asked for its own vector directly: the engine then judges
  // the prompt before the rest of the policy's vector is made (and the concat reuses this one).
  const checkText = isSyncEmbedder(member) ? (text: string) => g.check(member.embedSync(text)) : undefined;
  return {
    kind: g.kind,
    ...(checkText === undefined ? {} : { checkText }),
    check(e: Float32Array) {
      // Checks are synchronous for kNN guards and read the vector before they return; a classifier guard
      // copies it into its input tensor first, so one scratch vector is safe either way.
      let ss = 0;
      for (let k = start; k < end; k++) ss += e[k]! * e[k]!;
      const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
      for (let k = start; k < end; k++) part[k - start] = e[k]! * inv;
      return g.check(part);
    },
  };
}
