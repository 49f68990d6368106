import { Pool } from 'undici';
import type { BackendConfig } from '../config/schema.js';
import { SharedResources } from '../util/shared-resources.js';

/** One keep-alive pool per upstream origin and connection settings, shared across config reloads. */
export function poolKey(b: BackendConfig): string {
  return `${new URL(b.base_url).origin}|${b.max_connections}|${b.connect_timeout_ms}`;
}

export function createPoolRegistry(): SharedResources<Pool> {
  return new SharedResources<Pool>(async (pool) => {
    // close() lets in-flight requests finish; a runtime releases its pools only once its last request ended.
    await pool.close().catch(() => pool.destroy());
  });
}

export function newPool(b: BackendConfig): Pool {
  return new Pool(new URL(b.base_url).origin, {
    connections: b.max_connections,
    connectTimeout: b.connect_timeout_ms,
    keepAliveTimeout: 30_000,
    pipelining: 1,
  });
}

/** undici's own "the next dispatch would queue" flag on a Pool (its `kNeedDrain` field), found once by name. */
let needDrain: symbol | null | undefined;

/**
 * Whether `pool` is saturated: every connection busy and max_connections reached, so a new request would
 * wait in its queue. One field read; undici keeps the flag for its own backpressure. If a future undici
 * renames it, this answers false (never saturated) rather than failing: on_overload then queues.
 */
export function saturated(pool: Pool): boolean {
  if (needDrain === undefined)
    needDrain = Object.getOwnPropertySymbols(pool).find((s) => s.description === 'needDrain' || s.description === 'need drain') ?? null;
  return needDrain !== null && (pool as unknown as Record<symbol, unknown>)[needDrain] === true;
}
