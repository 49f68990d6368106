// Completes a request's record once its response is over: outcome, tokens → cost in USD, the
// counterfactual cost of the policy's most expensive candidate, the opt-in prompt text and the shadow
// policy's decision. Then the record goes out on the `finish` stage. A shadow decision is made after the
// response ended, so a slow one delays only its record, never a client.
import type { IncomingHttpHeaders } from 'node:http';
import type { SignalmanError } from '../errors.js';
import type { Decision } from '../routers/policy.js';
import { extractPromptText } from '../routers/prompt-text.js';
import { shadowDecision } from '../routers/resolve.js';
import type { RoutingState } from '../routers/state.js';
import type { Runtime } from '../runtime/compile.js';
import type { Outcome, RequestRecord } from '../telemetry/record.js';
import type { Stages } from '../telemetry/stages.js';
import { costUsd } from '../telemetry/usage.js';
import type { Endpoint } from '../upstream/forward.js';

/** A shadow that has not decided by then is recorded as timed out. */
const SHADOW_TIMEOUT_MS = 5_000;
const DEFAULT_PROMPT_CHARS = 2_000;

/** Shared initial arrays: a record's lists are replaced, never appended to, so every record can start with these. */
const NO_CANDIDATES: RequestRecord['candidates'] = [];
const NO_ATTEMPTS: RequestRecord['attempts'] = [];
const NO_SKIPPED: RequestRecord['skipped'] = [];

export function newRecord(id: string, endpoint: Endpoint, startedAt: number, generation: number): RequestRecord {
  return {
    id,
    ts: Math.round(performance.timeOrigin + startedAt),
    endpoint,
    model: '',
    stream: false,
    policy: null,
    chosen: null,
    backend: null,
    router: null,
    embedder: null,
    reason: null,
    candidates: NO_CANDIDATES,
    guard: null,
    attempts: NO_ATTEMPTS,
    skipped: NO_SKIPPED,
    prompt_tokens: null,
    completion_tokens: null,
    tokens_estimated: false,
    cost_usd: 0,
    counterfactual_cost_usd: 0,
    total_ms: 0,
    ttft_ms: null,
    upstream_ms: 0,
    route_ms: 0,
    status: 0,
    outcome: 'ok',
    error: null,
    key_id: null,
    generation,
    shadow: null,
    prompt: null,
  };
}

/** The decision's part of the record (snake_case, as stored). */
export function applyDecision(rec: RequestRecord, d: Decision): void {
  rec.policy = d.policy;
  rec.chosen = d.chosen;
  rec.router = d.router;
  rec.embedder = d.embedder;
  rec.reason = d.reason;
  rec.guard = d.guard === null ? null : { score: d.guard.score, threshold: d.guard.threshold, in_domain: d.guard.inDomain };
  rec.candidates = d.candidates.map((c) => ({
    backend: c.backend,
    quality: c.quality,
    expected_cost_usd: c.expectedCostUsd,
    utility: c.utility,
  }));
}

/** Errors by who is at fault: the request, the gateway's own refusal, the upstream, or us. */
const REJECTED = new Set(['out_of_domain', 'not_ready', 'shutting_down', 'overloaded', 'unauthorized', 'admin_disabled']);

export function outcomeOf(rec: RequestRecord, error: SignalmanError | null, aborted: boolean): Outcome {
  if (aborted) return 'client_abort';
  if (error === null) {
    if (rec.status >= 400) return rec.status === 429 || rec.status >= 500 ? 'upstream_error' : 'invalid_request';
    return rec.attempts.length > 0 && rec.attempts[0]!.backend !== rec.backend ? 'fallback_ok' : 'ok';
  }
  if (error.code === 'upstream_timeout') return 'timeout';
  if (error.code === 'upstream_bad_response') return 'upstream_bad_response';
  if (error.code === 'invalid_api_key' || error.code === 'model_not_allowed') return 'unauthorized';
  if (error.code === 'rate_limited' || error.code === 'budget_exceeded') return 'rate_limited';
  if (error.code.startsWith('upstream_') || error.code === 'rate_limit_exceeded') return 'upstream_error';
  if (error.code === 'internal_error' || error.status >= 500) return error.status === 503 ? 'rejected' : 'internal_error';
  return REJECTED.has(error.code) ? 'rejected' : 'invalid_request';
}

export interface FinishContext {
  runtime: Runtime;
  /** The validated body, null when the request never got that far. */
  body: Record<string, unknown> | null;
  error: SignalmanError | null;
  aborted: boolean;
  headers: IncomingHttpHeaders;
  routing: RoutingState;
}

export function finishRecord(rec: RequestRecord, ctx: FinishContext, stages: Stages): void {
  rec.outcome = outcomeOf(rec, ctx.error, ctx.aborted);
  if (ctx.error !== null) rec.error = ctx.error.code;
  const { runtime } = ctx;
  const backend = rec.backend === null ? undefined : runtime.backends.get(rec.backend);
  const pt = rec.prompt_tokens ?? 0;
  const ct = rec.completion_tokens ?? 0;
  rec.cost_usd = backend === undefined ? 0 : costUsd(backend.config.price, pt, ct);
  const policy = rec.policy === null ? undefined : runtime.policies.get(rec.policy);
  rec.counterfactual_cost_usd = policy === undefined ? rec.cost_usd : dearest(runtime, policy.candidateNames, pt, ct);
  if (policy === undefined || ctx.body === null) return publish(stages, rec);

  const keep = policy.config.record_prompts;
  if (keep !== false) {
    const text = extractPromptText(ctx.body, policy.config.prompt);
    const max = keep === true ? DEFAULT_PROMPT_CHARS : keep.max_chars;
    rec.prompt = text.length > max ? text.slice(0, max) : text;
  }
  const shadow = policy.config.shadow;
  if (shadow === undefined || rec.chosen === null) return publish(stages, rec);
  const endpoint = rec.endpoint;
  const body = ctx.body;
  // Off the response: the client already has its answer when the shadow starts deciding.
  setImmediate(() => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no decision within ${SHADOW_TIMEOUT_MS} ms`)), SHADOW_TIMEOUT_MS);
    });
    Promise.race([shadowDecision({ table: runtime, policy: shadow, endpoint, body, headers: ctx.headers, state: ctx.routing }), timeout])
      .then(
        (d) => {
          const chosen = runtime.backends.get(d.chosen);
          const other = runtime.policies.get(shadow);
          rec.shadow = {
            policy: shadow,
            chosen: d.chosen,
            agree: d.chosen === rec.chosen,
            cost_usd: chosen === undefined ? null : costUsd(chosen.config.price, pt, ct),
            counterfactual_cost_usd: other === undefined ? null : dearest(runtime, other.candidateNames, pt, ct),
            error: null,
          };
        },
        (err: unknown) => {
          const why = (err as Error)?.message ?? String(err);
          rec.shadow = { policy: shadow, chosen: null, agree: false, cost_usd: null, counterfactual_cost_usd: null, error: why };
        },
      )
      .finally(() => {
        clearTimeout(timer);
        publish(stages, rec);
      });
  });
}

function publish(stages: Stages, rec: RequestRecord): void {
  if (!stages.finish.hasSubscribers) return;
  roundTimes(rec);
  stages.finish.publish(rec);
}

/** Milliseconds to the microsecond: finer digits are clock noise. */
const toUs = (ms: number): number => Math.round(ms * 1000) / 1000;

/**
 * Printing a raw duration (0.6652119999999968) made a pass-through record's JSON 11% longer (624 -> 556
 * bytes) and its JSON.stringify 0.6-1.1 µs dearer; every sink and Redis gets the rounded figures.
 */
function roundTimes(rec: RequestRecord): void {
  rec.total_ms = toUs(rec.total_ms);
  if (rec.ttft_ms !== null) rec.ttft_ms = toUs(rec.ttft_ms);
  rec.upstream_ms = toUs(rec.upstream_ms);
  rec.route_ms = toUs(rec.route_ms);
  for (const a of rec.attempts) a.ms = toUs(a.ms);
}

/** What these tokens would have cost on the dearest of the candidates. */
function dearest(runtime: Runtime, candidates: readonly string[], pt: number, ct: number): number {
  let max = 0;
  for (const name of candidates) {
    const b = runtime.backends.get(name);
    if (b !== undefined) max = Math.max(max, costUsd(b.config.price, pt, ct));
  }
  return max;
}

/** The record of a request refused before its handler ran (draining, not JSON, too large, bad JSON). */
export function recordRefused(
  stages: Stages,
  endpoint: Endpoint,
  id: string,
  startedAt: number,
  generation: number,
  e: SignalmanError,
): void {
  if (!stages.finish.hasSubscribers) return;
  const rec = newRecord(id, endpoint, startedAt, generation);
  rec.status = e.status;
  rec.error = e.code;
  rec.outcome = outcomeOf(rec, e, false);
  rec.total_ms = performance.now() - startedAt;
  publish(stages, rec);
}
