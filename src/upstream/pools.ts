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
