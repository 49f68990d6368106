// A backend as the forwarding code uses it: its config, its keep-alive pool, and what is derived once.
import type { Pool } from 'undici';
import type { BackendConfig } from '../config/schema.js';
import type { Breaker } from './breaker.js';

export interface CompiledBackend {
  readonly name: string;
  readonly config: BackendConfig;
  readonly pool: Pool;
  /** Upstream paths, e.g. /v1/chat/completions: the base_url's path plus the endpoint. */
  readonly paths: { chat: string; completions: string; embeddings: string };
  /** Authorization and static headers, merged once at compile. */
  readonly headers: Readonly<Record<string, string>>;
  /** This backend's circuit breaker: one per name for the process, kept across reloads. */
  readonly breaker: Breaker;
}

export function compileBackend(b: BackendConfig, pool: Pool, breaker: Breaker): CompiledBackend {
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
    breaker,
  };
}
