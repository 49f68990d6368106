// Config -> Runtime: everything a request needs, built once per config, immutable afterwards. Each plugin
// folder compiles its own part (upstream/backend.ts, routers/compile.ts); this module assembles them and
// owns what outlives one config (shared pools and embedders).
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Pool } from 'undici';
import { KeyTable } from '../auth/keys.js';
import type { LoadedConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { CachedEmbedder } from '../embedders/cache.js';
import { ConfigError, ConfigErrors } from '../errors.js';
import { compilePolicy, type CompiledPolicy } from '../routers/compile.js';
import { ScoringThreadPool } from '../routers/scoring-threads.js';
import { isSyncEmbedder } from '../embedders/common.js';
import { compileBackend, type CompiledBackend } from '../upstream/backend.js';
import { Breaker, RetryBudget } from '../upstream/breaker.js';
import { createPoolRegistry, newPool, poolKey } from '../upstream/pools.js';
import { SharedResources } from '../util/shared-resources.js';

/**
 * Keep-alive pools and loaded embedders, shared by key across successive runtimes; circuit breakers (by
 * backend name) and the retry budget, whose state must survive a reload too.
 */
export interface SharedPools {
  pools: SharedResources<Pool>;
  embedders: SharedResources<CachedEmbedder>;
  breakers: SharedResources<Breaker>;
  retryBudget: RetryBudget;
}

export function createSharedPools(): SharedPools {
  return {
    pools: createPoolRegistry(),
    embedders: new SharedResources<CachedEmbedder>((e) => e.close()),
    breakers: new SharedResources<Breaker>(async () => undefined),
    retryBudget: new RetryBudget({ ratio: 0.2, min_per_s: 5 }, performance.now()),
  };
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
  /** The process's retry budget (server.retry_budget), shared by every runtime. */
  readonly retryBudget: RetryBudget;
  /** Client keys; `open` when none are configured. */
  readonly keys: KeyTable;
  /** Scoring threads for the policies they can serve (server.routing_threads > 0), or null. */
  readonly scoring: ScoringThreadPool | null;
  /** Releases the shared pools and embedders this runtime holds. */
  dispose(): Promise<void>;
}

const BASE_FORWARD_HEADERS = ['accept', 'user-agent', 'openai-beta'];

/**
 * Policies a scoring thread can serve: an embedder that computes on the calling thread (a worker has
 * nothing to add to use-lite's or onnx's own worker pools, or to a remote call) and a router with no
 * state fed at run time (kNN with learn.online learns on the event loop's copy).
 */
const threadable = (p: CompiledPolicy): boolean =>
  p.embedder !== null && isSyncEmbedder(p.embedder.inner) && p.router.addRows === undefined;

export async function compileRuntime(
  loaded: LoadedConfig,
  shared: SharedPools,
  generation: number,
  opts: {
    /** false: no scoring threads whatever the config says (CLI tools that score one prompt at a time). */
    scoringThreads?: boolean;
    onScoringEvent?: (message: string, err?: Error) => void;
  } = {},
): Promise<Runtime> {
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
      const breaker = await hold(shared.breakers, b.name, () => new Breaker(b.name, b.breaker));
      backends.set(b.name, compileBackend(b, pool, breaker));
    }

    const problems: ConfigError[] = [];
    let keys = new KeyTable([]);
    try {
      keys = new KeyTable(config.keys);
    } catch (err) {
      const i = config.keys.findIndex((k) => (err as Error).message.startsWith(`key '${k.id}'`));
      const where = loaded.locate(['keys', Math.max(0, i), 'secret_env']);
      problems.push(new ConfigError(file, where.line, where.column, (err as Error).message));
    }
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

    let scoring: ScoringThreadPool | null = null;
    const served = config.policies.filter((p) => threadable(policies.get(p.name) as CompiledPolicy));
    if (config.server.routing_threads > 0 && served.length > 0 && opts.scoringThreads !== false) {
      try {
        scoring = await ScoringThreadPool.start({
          threads: config.server.routing_threads,
          minUtilization: config.server.routing_threads_min_utilization,
          policies: served,
          baseDir,
          ...(opts.onScoringEvent === undefined ? {} : { onEvent: opts.onScoringEvent }),
        });
      } catch (err) {
        const where = loaded.locate(['server', 'routing_threads']);
        throw new ConfigErrors([new ConfigError(file, where.line, where.column, (err as Error).message)]);
      }
      closers.push(scoring);
    }

    // Settings of process-wide state apply once this config is known to be good.
    for (const b of backends.values()) b.breaker.configure(b.config.breaker);
    shared.retryBudget.configure(config.server.retry_budget);

    const created = Math.floor(Date.now() / 1000);
    const modelsJson = JSON.stringify({
      object: 'list',
      data: [
        ...config.policies.map((p) => ({
          id: p.name,
          object: 'model',
          created,
          owned_by: 'signalman-policy',
          description: p.description ?? null,
        })),
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
      keys,
      scoring,
      retryBudget: shared.retryBudget,
      dispose,
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}
