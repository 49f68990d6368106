// Client keys: who may call the API, which policies and backends each may use, and its limits. Compiled
// from `keys:` at each load (secrets from env are read then, so rotating one is an env change + reload).
// Only SHA-256 digests are kept; a presented secret is hashed and compared with every key in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { ClientKeyConfig } from '../config/schema.js';
import { E, type SignalmanError } from '../errors.js';

export interface ClientKey {
  readonly id: string;
  readonly config: ClientKeyConfig;
  /** '*' or the allowed names. */
  readonly policies: '*' | ReadonlySet<string>;
  readonly backends: '*' | ReadonlySet<string>;
  /** Whether any limit or budget applies (a key without one never waits on the limit store). */
  readonly limited: boolean;
}

interface Entry {
  key: ClientKey;
  digest: Buffer;
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();
const allow = (names: string[]): '*' | ReadonlySet<string> => (names.includes('*') ? '*' : new Set(names));

export class KeyTable {
  private readonly entries: Entry[];

  /** Throws, naming the key and the variable, when a `secret_env` is unset: such a key could never authenticate. */
  constructor(keys: readonly ClientKeyConfig[], env: Readonly<Record<string, string | undefined>> = process.env) {
    this.entries = keys.map((k) => {
      let digest: Buffer;
      if (k.secret_env !== undefined) {
        const secret = env[k.secret_env];
        if (secret === undefined || secret === '')
          throw new Error(`key '${k.id}': environment variable ${k.secret_env} (secret_env) is not set`);
        digest = sha256(secret);
      } else {
        digest = Buffer.from(k.secret_sha256 as string, 'hex');
      }
      const { limits, budget } = k;
      const limited =
        limits.requests_per_minute !== undefined ||
        limits.tokens_per_minute !== undefined ||
        budget.usd_per_day !== undefined ||
        budget.usd_per_month !== undefined;
      return { digest, key: { id: k.id, config: k, policies: allow(k.policies), backends: allow(k.backends), limited } };
    });
  }

  /** No keys configured: the API is open (local use). */
  get open(): boolean {
    return this.entries.length === 0;
  }

  get ids(): string[] {
    return this.entries.map((e) => e.key.id);
  }

  /** The key whose secret is the bearer token of `authorization`, or the 401 to answer. */
  authenticate(authorization: string | undefined): ClientKey | SignalmanError {
    if (authorization === undefined || !/^bearer /i.test(authorization)) {
      return E.invalidApiKey('this gateway needs an API key: send `Authorization: Bearer <your Signalman key>`');
    }
    const digest = sha256(authorization.slice(7).trim());
    let found: ClientKey | null = null;
    // Every entry is compared (no early exit), so the time does not depend on which key matched.
    for (const e of this.entries) if (timingSafeEqual(digest, e.digest) && found === null) found = e.key;
    return found ?? E.invalidApiKey('the API key is not valid for this gateway');
  }
}

/** Whether `key` may send `model`, a policy or a backend name; the 403 to answer if not. */
export function permit(key: ClientKey, model: string, isPolicy: boolean): SignalmanError | null {
  const allowed = isPolicy ? key.policies : key.backends;
  if (allowed === '*' || allowed.has(model)) return null;
  return E.modelNotAllowed(
    `key '${key.id}' may not use ${isPolicy ? 'policy' : 'backend'} '${model}'` +
      (isPolicy ? '' : " directly (ask for it in the key's `backends`, or send a policy it may use)"),
    'model',
  );
}
