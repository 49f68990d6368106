// What the gateway says about a config that failed to load (log, /admin/reload, /readyz) passes through here:
// an error can quote what was written in the file, and a secret pasted in the wrong place must not come back out.
import type { Config } from './schema.js';

const MASK = '***';
/** Shapes of credentials: OpenAI-style keys, bearer values, and long opaque tokens. */
const SHAPES = [/\bsk-[A-Za-z0-9_-]{6,}/g, /\bBearer\s+\S+/gi, /\b[A-Za-z0-9+_-]{40,}={0,2}/g];

/** The values of every env var the config names for a secret (backend keys, client keys, admin and metrics tokens). */
export function secretValues(config: Config | undefined, env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  if (config === undefined) return [];
  const names = [
    ...config.backends.map((b) => b.api_key_env),
    ...config.keys.map((k) => k.secret_env),
    config.server.admin_key_env,
    config.telemetry.metrics.bearer_token_env,
  ];
  const out: string[] = [];
  for (const n of names) {
    const v = n === undefined ? undefined : env[n];
    if (v !== undefined && v.length >= 4) out.push(v);
  }
  return out;
}

/** `value` (any JSON) with every secret value and credential-shaped string replaced by ***. */
export function redactSecrets<T>(value: T, secrets: readonly string[]): T {
  const scrub = (s: string): string => {
    let out = s;
    for (const v of secrets) out = out.split(v).join(MASK);
    for (const re of SHAPES) out = out.replace(re, MASK);
    return out;
  };
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return scrub(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object' && !(v instanceof Date)) {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, walk(x)]));
    }
    return v;
  };
  return walk(value) as T;
}
