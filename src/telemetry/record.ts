// One record per client request, whatever happened to it: the shape every sink receives, Redis stores
// and `export-feedback` reads back. The type comes from this schema (z.infer); the schema also validates
// records read back from Redis, so a field renamed here cannot silently drift from what is stored.
import { z } from 'zod';

/**
 * What became of a request, from one fixed set (a metric label and a Redis field):
 * - ok: answered 2xx by the first backend tried (retries on it included)
 * - fallback_ok: answered 2xx by a later backend after the first one failed
 * - upstream_error: every backend failed (5xx, 429, connection, broken answer or stream)
 * - timeout: the last failure was an upstream timeout (headers or stream idle)
 * - client_abort: the client went away before the answer was complete
 * - rejected: the gateway refused to serve it (out of domain, draining, not ready, overloaded)
 * - invalid_request: the request itself was wrong (bad JSON, schema, unknown model, too large), or the
 *   upstream said so (a 4xx other than 429, passed through as it came)
 * - internal_error: a bug of ours (answered as a 500 saying only "internal error")
 * - unauthorized: no valid client key (401), or a key that may not use that model (403)
 * - rate_limited: a client key over its requests / tokens per minute or its USD budget (429)
 * - upstream_bad_response: the last backend answered 2xx with a broken body or streamed event (not valid JSON)
 */
export const OUTCOMES = [
  'ok',
  'fallback_ok',
  'upstream_error',
  'timeout',
  'client_abort',
  'rejected',
  'invalid_request',
  'internal_error',
  'unauthorized',
  'rate_limited',
  'upstream_bad_response',
] as const;
export const Outcome = z.enum(OUTCOMES);
export type Outcome = z.infer<typeof Outcome>;

export const ENDPOINTS = ['chat', 'completions', 'embeddings'] as const;

export const RecordCandidate = z.object({
  backend: z.string(),
  quality: z.number(),
  expected_cost_usd: z.number(),
  utility: z.number(),
});

export const RecordAttempt = z.object({
  backend: z.string(),
  /** Upstream HTTP status, null when no response came (connect error, timeout, abort). */
  status: z.number().int().nullable(),
  /** Our error code for a failed attempt (e.g. upstream_unavailable), null for a success. */
  error: z.string().nullable(),
  ms: z.number(),
});

export const ShadowResult = z.object({
  policy: z.string(),
  chosen: z.string().nullable(),
  /** The shadow chose the backend the live decision chose. */
  agree: z.boolean(),
  /** What the shadow's choice would have cost for this request's tokens. */
  cost_usd: z.number().nullable(),
  /** The shadow policy's most expensive candidate for the same tokens. */
  counterfactual_cost_usd: z.number().nullable(),
  /** The shadow could not decide (error or too slow): why. */
  error: z.string().nullable(),
});

export const RequestRecord = z.object({
  id: z.string(),
  /** Arrival time, ms since the epoch. */
  ts: z.number(),
  endpoint: z.enum(ENDPOINTS),
  /** The `model` the client sent, as sent ('' when the body never got that far). */
  model: z.string(),
  stream: z.boolean(),
  policy: z.string().nullable(),
  /** The policy's choice (first in its order), null when not routed. */
  chosen: z.string().nullable().default(null),
  /** The backend that answered, or the last one tried. */
  backend: z.string().nullable(),
  router: z.string().nullable(),
  embedder: z.string().nullable(),
  /** Decision reason (objective, guard_fallback, sticky, fixed, no_text), null when not routed. */
  reason: z.string().nullable(),
  candidates: z.array(RecordCandidate),
  guard: z.object({ score: z.number(), threshold: z.number(), in_domain: z.boolean() }).nullable(),
  attempts: z.array(RecordAttempt),
  /** Backends left out of the order, and why: breaker_open, retry_after (upstream asked to wait), overloaded. */
  skipped: z.array(z.object({ backend: z.string(), why: z.string() })).default([]),
  prompt_tokens: z.number().int().nullable(),
  completion_tokens: z.number().int().nullable(),
  /** The token counts were estimated from characters: the upstream reported no usage. */
  tokens_estimated: z.boolean(),
  cost_usd: z.number(),
  /** The policy's most expensive candidate for the same tokens (= cost_usd when not routed). */
  counterfactual_cost_usd: z.number(),
  total_ms: z.number(),
  /** Time to the first byte of the answer written to the client; null when none was. */
  ttft_ms: z.number().nullable(),
  upstream_ms: z.number(),
  route_ms: z.number(),
  status: z.number().int(),
  outcome: Outcome,
  error: z.string().nullable(),
  /** Client key id (never the secret), null while keys are off. */
  key_id: z.string().nullable(),
  generation: z.number().int(),
  shadow: ShadowResult.nullable(),
  /** Only when the policy sets record_prompts; truncated to its max_chars. */
  prompt: z.string().nullable(),
});
export type RequestRecord = z.infer<typeof RequestRecord>;
