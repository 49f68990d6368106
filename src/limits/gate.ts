// The limit check of one forwarded request, between routing and the upstream call: a request that can
// never fit the key's token limit is refused before it costs anything; otherwise the limiter counts it
// (429 with retry-after and x-ratelimit-* when over), and a key over its USD budget is refused or, where
// its policy says `on_budget_exceeded: downgrade`, served by the policy's cheapest candidate.
import type { ClientKey } from '../auth/keys.js';
import { E } from '../errors.js';
import type { CompiledPolicy } from '../routers/compile.js';
import { costUsd, requestChars, tokensOfChars } from '../telemetry/usage.js';
import type { CompiledBackend } from '../upstream/backend.js';
import type { Limiter } from './limiter.js';

export interface Gate {
  order: CompiledBackend[];
  /** x-ratelimit-* (and x-signalman-budget when downgraded) for the response. */
  headers: Record<string, string>;
  /** USD put aside toward the budgets; the charge after the answer corrects it. */
  reservedUsd: number;
  /** The cheapest candidate served a key over budget (the policy's on_budget_exceeded: downgrade). */
  downgradedTo: string | null;
}

const LIMIT_NAMES = { requests: 'requests_per_minute', tokens: 'tokens_per_minute' } as const;

export async function admitRequest(
  limiter: Limiter,
  key: ClientKey,
  body: Record<string, unknown>,
  order: CompiledBackend[],
  policy: CompiledPolicy | undefined,
  backends: ReadonlyMap<string, CompiledBackend>,
): Promise<Gate> {
  const prompt = tokensOfChars(requestChars(body));
  const asked = body.max_completion_tokens ?? body.max_tokens;
  const maxOut = typeof asked === 'number' && asked > 0 ? asked : 0;
  const tpm = key.config.limits.tokens_per_minute;
  if (tpm !== undefined && prompt + maxOut > tpm) {
    throw E.requestTooLarge(
      `this request needs about ${prompt + maxOut} tokens (prompt ~${prompt}${maxOut > 0 ? ` + max_tokens ${maxOut}` : ''}), ` +
        `more than key '${key.id}' may use in a minute (tokens_per_minute = ${tpm}); it can never be served`,
      maxOut > 0 ? 'max_tokens' : 'messages',
    );
  }
  const first = order[0];
  const reserve = first === undefined ? 0 : costUsd(first.config.price, prompt, maxOut);
  const adm = await limiter.admit(key, prompt, reserve);
  switch (adm.verdict) {
    case 'ok':
      return { order, headers: adm.headers, reservedUsd: reserve, downgradedTo: null };
    case 'requests':
    case 'tokens': {
      const name = LIMIT_NAMES[adm.verdict];
      throw E.rateLimited(
        `key '${key.id}' is over its ${name} (${key.config.limits[name]}); retry after ${adm.headers['retry-after']} s`,
      ).withHeaders(adm.headers);
    }
    case 'store_unavailable':
      throw E.limitsUnavailable(
        'the limit store (Redis) is unavailable and limits.on_redis_error is fail_closed; retry shortly',
      ).withHeaders(adm.headers);
    case 'usd_per_day':
    case 'usd_per_month': {
      const cheapest = policy === undefined ? null : cheapestCandidate(policy, backends);
      if (cheapest !== null && policy?.config.on_budget_exceeded === 'downgrade') {
        const { ['retry-after']: _, ...headers } = adm.headers;
        headers['x-signalman-budget'] = `downgraded; ${adm.verdict} exceeded`;
        return { order: [cheapest], headers, reservedUsd: 0, downgradedTo: cheapest.name };
      }
      throw E.budgetExceeded(
        `key '${key.id}' has spent its budget (${adm.verdict} = ${key.config.budget[adm.verdict]} USD); retry after ${adm.headers['retry-after']} s`,
      ).withHeaders(adm.headers);
    }
  }
}

/** The candidate with the lowest price (input + output per million tokens); the first such on a tie. */
function cheapestCandidate(policy: CompiledPolicy, backends: ReadonlyMap<string, CompiledBackend>): CompiledBackend | null {
  let best: CompiledBackend | null = null;
  for (const name of policy.candidateNames) {
    const b = backends.get(name);
    if (b === undefined) continue;
    const p = b.config.price.input_per_mtok + b.config.price.output_per_mtok;
    if (best === null || p < best.config.price.input_per_mtok + best.config.price.output_per_mtok) best = b;
  }
  return best;
}
