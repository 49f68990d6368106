// Config → Runtime: everything a request needs, built once per config, immutable afterwards.
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Pool } from 'undici';
import type { Embedder } from '../embedders/types.js';
import { withEmbedCache } from '../embedders/cache.js';
import { getEmbedderPlugin } from '../embedders/registry.js';
import { ConfigError, ConfigErrors } from '../errors.js';
import { getRouterPlugin } from '../routers/registry.js';
import { loadGuard } from '../routers/guard.js';
import { ScoreCache } from '../routers/score-cache.js';
import type { Guard, Router } from '../routers/types.js';
import { newPool, poolKey } from '../upstream/pools.js';
import type { LoadedConfig } from './load.js';
import type { BackendConfig, Config, PolicyConfig } from './schema.js';
import type { SharedResources } from './shared.js';

export interface CompiledBackend {
  readonly name: string;
  readonly config: BackendConfig;
  readonly pool: Pool;
  /** Upstream paths, e.g. /v1/chat/completions: the base_url's path plus the endpoint. */
  readonly paths: { chat: string; completions: string; embeddings: string };
  /** Authorization and static headers, merged once at compile. */
  readonly headers: Readonly<Record<string, string>>;
}

export interface CompiledPolicy {
  readonly name: string;
  readonly config: PolicyConfig;
  readonly candidates: ReadonlyArray<{ backend: string; as: string }>;
  readonly candidateNames: readonly string[];
  readonly router: Router;
  readonly embedder: Embedder | null;
  readonly guard: Guard | null;
  /** Scores and guard verdicts per prompt text, for text-only routers (null otherwise). */
  readonly scoreCache: ScoreCache | null;
  readonly fallbacks: readonly string[];
}

export interface SharedPools {
  pools: SharedResources<Pool>;
  embedders: SharedResources<Embedder>;
}

export interface Runtime {
  readonly generation: number;
  readonly file: string;
  readonly loadedAt: Date;
  readonly config: Config;
  readonly backends: ReadonlyMap<string, CompiledBackend>;
  readonly policies: ReadonlyMap<string, CompiledPolicy>;
  /** The body of GET /v1/models, serialised once. */
  readonly modelsJson: string;
  /** Header names forwarded from the client, lower-case. */
  readonly forwardHeaders: readonly string[];
  /** Releases the shared pools and embedders this runtime holds. */
  dispose(): Promise<void>;
}

const BASE_FORWARD_HEADERS = ['accept', 'user-agent', 'openai-beta'];

export async function compileRuntime(loaded: LoadedConfig, shared: SharedPools, generation: number): Promise<Runtime> {
  const { config, file } = loaded;
  const baseDir = dirname(file);
  const resolvePath = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const held: Array<{ res: SharedResources<unknown>; key: string }> = [];
  const hold = async <T>(res: SharedResources<T>, key: string, create: () => Promise<T> | T): Promise<T> => {
    const value = await res.acquire(key, create);
    held.push({ res: res as SharedResources<unknown>, key });
    return value;
  };
  const closers: Array<{ close?: () => Promise<void> }> = [];
  const dispose = async () => {
    await Promise.allSettled(closers.map((r) => r.close?.()));
    await Promise.allSettled(held.map((h) => h.res.release(h.key)));
  };

  try {
    const backends = new Map<string, CompiledBackend>();
    for (const b of config.backends) {
      const key = poolKey(b);
      const pool = await hold(shared.pools, key, () => newPool(b));
      backends.set(b.name, compileBackend(b, pool));
    }

    const problems: ConfigError[] = [];
    const policies = new Map<string, CompiledPolicy>();
    for (const [i, p] of config.policies.entries()) {
      try {
        const policy = await compilePolicy(p, resolvePath, (key, create) => hold(shared.embedders, key, create));
        closers.push(policy.router);
        if (policy.guard !== null) closers.push(policy.guard as { close?: () => Promise<void> });
        policies.set(p.name, policy);
      } catch (err) {
        const where = loaded.locate(['policies', i, (err as { stage?: string }).stage ?? 'router']);
        problems.push(new ConfigError(file, where.line, where.column, `policy '${p.name}': ${(err as Error).message}`));
      }
    }
    if (problems.length > 0) throw new ConfigErrors(problems);

    const created = Math.floor(Date.now() / 1000);
    const modelsJson = JSON.stringify({
      object: 'list',
      data: [
        ...config.policies.map((p) => ({ id: p.name, object: 'model', created, owned_by: 'signalman-policy', description: p.description ?? null })),
        ...config.backends.map((b) => ({ id: b.name, object: 'model', created, owned_by: 'signalman-backend' })),
      ],
    });

    return {
      generation,
      file,
      loadedAt: new Date(),
      config,
      backends,
      policies,
      modelsJson,
      forwardHeaders: [...new Set([...BASE_FORWARD_HEADERS, ...config.server.forward_headers])],
      dispose,
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}

function compileBackend(b: BackendConfig, pool: Pool): CompiledBackend {
  const base = new URL(b.base_url).pathname.replace(/\/+$/, '');
  const headers: Record<string, string> = { 'content-type': 'application/json', ...b.headers };
  if (b.api_key_env !== undefined) {
    const key = process.env[b.api_key_env];
    // Read at compile (and so at each reload): rotating a key is an env change plus a reload.
    if (key !== undefined && key !== '') headers.authorization = `Bearer ${key}`;
  }
  return {
    name: b.name,
    config: b,
    pool,
    paths: { chat: `${base}/chat/completions`, completions: `${base}/completions`, embeddings: `${base}/embeddings` },
    headers,
  };
}

type Hold = (key: string, create: () => Promise<Embedder>) => Promise<Embedder>;

async function compilePolicy(p: PolicyConfig, resolvePath: (p: string) => string, holdEmbedder: Hold): Promise<CompiledPolicy> {
  const candidates = p.candidates.map((c) => (typeof c === 'string' ? { backend: c, as: c } : { backend: c.backend, as: c.as }));
  let embedder: Embedder | null = null;
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
    throw Object.assign(new Error(`router '${p.router.type}' needs an embedder: add an \`embedder:\` section to the policy`), { stage: 'router' });
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
