// Calls backends in order: retries with jittered backoff on 429/5xx/connect errors and broken answers,
// then the next fallback — all strictly before the first byte reaches the client. After that, a retry
// would splice two different completions into one stream, so the caller owns failures from then on.
//
// Around each attempt: the backend's circuit breaker (skip it while open, probe it when half-open, tell it
// once per request how it went on that backend), an upstream retry-after (opens the breaker for that long),
// the request's overall deadline, the process's retry budget (attempts after a request's first), and
// on_overload. Panic mode: when every backend of the order is out, the breakers are ignored for the request
// (see ForwardRequest.panic) rather than refusing it.
import type { IncomingHttpHeaders } from 'node:http';
import type { CompiledBackend } from './backend.js';
import { E, type SignalmanError } from '../errors.js';
import type { Stages } from '../telemetry/stages.js';
import { backoffMs, retryAfterMs, sleep } from './backoff.js';
import { CLOSED, DENY, PROBE, type RetryBudget } from './breaker.js';
import { requestBuffered, type BufferedResponse } from './buffered.js';
import type { Cancellation } from './cancel.js';
import type { Out, Skipped } from './health.js';
import { saturated } from './pools.js';
import { completeEventsEnd, firstInvalidEvent, isJsonBody } from './sse-check.js';
import { requestStream, type UpstreamStream } from './streaming.js';
import { badAnswer, classifyStatus, classifyThrown, type UpstreamFailure } from './errors.js';

export type Endpoint = 'chat' | 'completions' | 'embeddings';

export interface ForwardRequest {
  order: readonly CompiledBackend[];
  endpoint: Endpoint;
  /** The client's body; `model` is replaced per backend, every other field is kept. */
  body: Record<string, unknown>;
  stream: boolean;
  /** Allow-listed client headers plus our request id. */
  headers: Readonly<Record<string, string>>;
  /** The client's request: cancelled when it goes away. */
  cancel: Cancellation;
  retryBaseMs: number;
  retryMaxMs: number;
  /** Request id, for the attempt stages. */
  id: string;
  /** Where attempt starts and ends are published (only while someone subscribes). */
  stages: Stages | null;
  /**
   * Streams whose client did not ask for usage: `stream_options` with include_usage on, sent to backends
   * whose `stream_usage` is on (the pipeline strips that chunk again), and the client's own otherwise.
   */
  usageOptions: { on: unknown; off: unknown } | null;
  /** performance.now() ms after which no new attempt starts (server.request_deadline_ms); Infinity: none. */
  deadline?: number;
  /** The process's retry budget; null: unbounded. */
  budget?: RetryBudget | null;
  /** The policy's on_overload (a backend named directly: queue). */
  onOverload?: 'queue' | 'next_best' | 'reject';
  /**
   * Every backend of the order was out when the request was routed (breaker open or an upstream
   * retry-after), listed with why: panic mode from the start, the order is called anyway. forward() enters
   * it by itself too when the breakers of every backend opened between routing and calling. In panic mode
   * an attempt on an open backend is not a probe: its answer closes the breaker, its failure changes nothing.
   */
  panic?: readonly Out[] | null;
}

export interface Attempt {
  backend: string;
  status: number | null;
  /** The failure's class (status, connect, timeout, protocol, aborted), null for an answer passed on. */
  error: string | null;
  ms: number;
}

interface Common {
  backend: CompiledBackend;
  status: number;
  contentType: string;
  attempts: Attempt[];
  /** Time from the first call until the answer (headers + first chunk for streams) was ready. */
  upstreamMs: number;
  /** Backends of the order left out (breaker open, retry-after, overloaded); null when none was. */
  skipped: Skipped[] | null;
  /** Panic mode: the backends that were out and were called anyway, with why they were out; null: no panic. */
  panic: readonly Out[] | null;
}
/** A complete body: a 2xx answer, or a client error from upstream passed through as it is. */
export interface BufferedOutcome extends Common {
  kind: 'buffered';
  body: Buffer;
  retryAfter: string | undefined;
}
/** A stream whose first chunk has arrived; the caller pipes the rest (`stream.pipe`). */
export interface StreamOutcome extends Common {
  kind: 'stream';
  stream: UpstreamStream;
}
export type ForwardOutcome = BufferedOutcome | StreamOutcome;

export class ForwardError extends Error {
  constructor(
    readonly error: SignalmanError,
    readonly attempts: Attempt[],
    readonly aborted: boolean,
    readonly skipped: Skipped[] | null = null,
    readonly panic: readonly Out[] | null = null,
  ) {
    super(error.message);
  }
}

const header = (h: IncomingHttpHeaders, name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

/** Records an attempt and publishes its end (every started attempt gets one: the in-flight gauge relies on it). */
function endAttempt(req: ForwardRequest, attempts: Attempt[], a: Attempt): void {
  attempts.push(a);
  const stages = req.stages;
  if (stages?.attemptEnd.hasSubscribers)
    stages.attemptEnd.publish({ id: req.id, backend: a.backend, status: a.status, error: a.error, ms: a.ms });
}

export async function forward(req: ForwardRequest): Promise<ForwardOutcome> {
  const attempts: Attempt[] = [];
  const started = performance.now();
  let last: UpstreamFailure | null = null;
  let lastRateLimit: BufferedOutcome | null = null;
  let skipped: Skipped[] | null = null;
  let panic: readonly Out[] | null = req.panic !== undefined && req.panic !== null && req.panic.length > 0 ? req.panic : null;
  const deadline = req.deadline ?? Infinity;
  const budget = req.budget ?? null;
  const onOverload = req.onOverload ?? 'queue';
  budget?.deposit();

  const stages = req.stages;
  const order = req.order;
  let spent = false; // the retry budget or the deadline said stop
  for (;;) {
    for (let b = 0; b < order.length && !spent; b++) {
      const backend = order[b] as CompiledBackend;
      const cfg = backend.config;
      const breaker = backend.breaker;
      const hasNext = b < order.length - 1;
      if (onOverload !== 'queue' && saturated(backend.pool)) {
        if (onOverload === 'reject') {
          const e = E.overloaded(
            `backend '${backend.name}' is at max_connections (${cfg.max_connections}) and the policy says on_overload: reject`,
          );
          throw new ForwardError(e.withHeaders({ 'retry-after': '1' }), attempts, false, skipped, panic);
        }
        if (hasNext) {
          (skipped ??= []).push({ backend: backend.name, why: 'overloaded' });
          continue;
        }
      }
      req.body.model = cfg.model;
      if (req.usageOptions !== null) req.body.stream_options = cfg.stream_usage ? req.usageOptions.on : req.usageOptions.off;
      const payload = JSON.stringify(req.body);
      // Object.assign, not `{ ...a, ...b }`: the double spread cost ~1.2 µs per request in V8, this ~0.15 (null
      // prototype: a header named __proto__ stays a header, as with the spread).
      const headers: Record<string, string> = Object.assign(Object.create(null) as Record<string, string>, backend.headers, req.headers);
      /** An attempt on this backend failed while its breaker was closed: one failure, told when the request leaves it. */
      let failed = false;
      /** This request was counted as a panic on this backend. */
      let panicked = false;
      try {
        for (let attempt = 0; attempt <= cfg.max_retries; attempt++) {
          if (req.cancel.aborted)
            throw new ForwardError(classifyThrown(req.cancel.reason, backend.name, 'headers').error, attempts, true, skipped, panic);
          const t0 = performance.now();
          if (t0 >= deadline) throw new ForwardError(deadlinePassed(req, attempts), attempts, false, skipped, panic);
          // The breaker: one field read while closed. Open: skip this backend (panic mode: call it anyway);
          // half-open: this attempt may be a probe.
          let probe = false;
          let bypass = false;
          if (breaker.state !== CLOSED) {
            const r = breaker.tryAcquire(t0);
            if (r === DENY) {
              if (panic === null) {
                if (attempt === 0) (skipped ??= []).push({ backend: backend.name, why: breaker.openWhy });
                break;
              }
              bypass = true;
              if (!panicked) {
                panicked = true;
                breaker.panicked++;
              }
            }
            probe = r === PROBE;
          }
          if (attempts.length > 0 && budget !== null && !budget.tryRetry(t0)) {
            breaker.release(probe);
            spent = true;
            break;
          }
          if (stages?.attemptStart.hasSubscribers) stages.attemptStart.publish({ id: req.id, backend: backend.name });
          let retryAfter: string | undefined;
          /** A complete answer: returned as the outcome, or (429 / 5xx / broken) recorded for a retry, giving null. */
          const settle = (res: BufferedResponse, failure: UpstreamFailure | null): BufferedOutcome | null => {
            const contentType = header(res.headers, 'content-type') ?? 'application/json';
            const now = performance.now();
            if (failure === null) {
              // A success, or the client's own mistake as the upstream sees it (400, 401, 404, 422…): pass it on.
              if (bypass) breaker.panicSuccess();
              else breaker.success(now, probe);
              failed = false;
              endAttempt(req, attempts, { backend: backend.name, status: res.status, error: null, ms: now - t0 });
              const passRetryAfter = res.status >= 400 ? header(res.headers, 'retry-after') : undefined;
              return {
                kind: 'buffered',
                backend,
                status: res.status,
                contentType,
                body: res.body,
                attempts,
                upstreamMs: now - started,
                retryAfter: passRetryAfter,
                skipped,
                panic,
              };
            }
            retryAfter = header(res.headers, 'retry-after');
            if (probe) breaker.failure(now, true);
            else if (!bypass) failed = true;
            // The upstream says when to come back: out of routing until then, so the next requests go elsewhere.
            if (retryAfter !== undefined && (res.status === 429 || res.status === 503)) breaker.block(now, retryAfterMs(retryAfter));
            endAttempt(req, attempts, { backend: backend.name, status: res.status, error: failure.kind, ms: now - t0 });
            if (res.status === 429)
              lastRateLimit = {
                kind: 'buffered',
                backend,
                status: 429,
                contentType,
                body: res.body,
                attempts,
                upstreamMs: 0,
                retryAfter,
                skipped,
                panic,
              };
            last = failure;
            return null;
          };
          // The deadline bounds each attempt's wait; a timeout it cut short says nothing about the backend.
          const left = deadline - t0;
          const cut = left < cfg.timeout_ms;
          const timeout = cut ? Math.max(1, Math.ceil(left)) : cfg.timeout_ms;
          try {
            const dispatchOpts = {
              path: backend.paths[req.endpoint],
              method: 'POST' as const,
              headers,
              body: payload,
              headersTimeout: timeout,
              bodyTimeout: req.stream ? cfg.stream_idle_timeout_ms : timeout,
            };
            if (req.stream) {
              const start = await requestStream(backend.pool, dispatchOpts, req.cancel);
              if (start.kind === 'stream') {
                const { stream } = start;
                // Broken events in the first chunk: nothing reached the client yet, so this is a failure to retry.
                const whole = completeEventsEnd(stream.first);
                if (whole > 0 && firstInvalidEvent(whole === stream.first.length ? stream.first : stream.first.subarray(0, whole)) !== -1) {
                  stream.cancel();
                  throw badAnswer(backend.name, 'a streamed event whose data is not valid JSON');
                }
                const now = performance.now();
                if (bypass) breaker.panicSuccess();
                else breaker.success(now, probe);
                failed = false;
                endAttempt(req, attempts, { backend: backend.name, status: stream.status, error: null, ms: now - t0 });
                return {
                  kind: 'stream',
                  backend,
                  status: stream.status,
                  contentType: header(stream.headers, 'content-type') ?? 'text/event-stream',
                  stream,
                  attempts,
                  upstreamMs: now - started,
                  skipped,
                  panic,
                };
              }
              // An error answer to a stream request is a small JSON body: handled like a buffered one.
              const outcome = settle(start.response, classifyStatus(start.response.status, backend.name));
              if (outcome !== null) return outcome;
            } else {
              const res = await requestBuffered(backend.pool, dispatchOpts, req.cancel);
              let failure = classifyStatus(res.status, backend.name);
              // A 2xx whose body is not JSON (truncated, garbage) is the upstream's failure, never the client's answer.
              if (failure === null && res.status < 300 && !isJsonBody(res.body)) {
                failure = badAnswer(backend.name, `a ${res.status} whose body is not valid JSON (${res.body.length} bytes)`);
              }
              const outcome = settle(res, failure);
              if (outcome !== null) return outcome;
            }
          } catch (err) {
            const now = performance.now();
            if (req.cancel.aborted) {
              breaker.release(probe);
              endAttempt(req, attempts, { backend: backend.name, status: null, error: 'aborted', ms: now - t0 });
              throw new ForwardError(classifyThrown(req.cancel.reason, backend.name, 'headers').error, attempts, true, skipped, panic);
            }
            const failure = isFailure(err) ? err : classifyThrown(err, backend.name, 'headers');
            if (cut && failure.kind === 'timeout') breaker.release(probe);
            else if (probe) breaker.failure(now, true);
            else if (!bypass) failed = true;
            endAttempt(req, attempts, { backend: backend.name, status: null, error: failure.kind, ms: now - t0 });
            last = failure;
            if (!failure.retryable) break;
          }
          if (attempt === cfg.max_retries) break;
          const lastStatus = attempts[attempts.length - 1]?.status;
          // A saturated backend (429) under on_overload: next_best: straight to the next one, no retry here.
          if (lastStatus === 429 && onOverload === 'next_best' && hasNext) {
            (skipped ??= []).push({ backend: backend.name, why: 'overloaded' });
            break;
          }
          const wait = backoffMs(attempt, req.retryBaseMs, req.retryMaxMs, retryAfter);
          if (wait === null) break; // the server asks for a longer wait than we allow: try the next backend
          // Opened (by this failure or another request's), or called in panic mode: the next backend, if there
          // is one, rather than wait here.
          if (breaker.state !== CLOSED && hasNext) break;
          if (performance.now() + wait >= deadline) break;
          await sleep(wait, req.cancel.signal).catch(() => undefined);
        }
      } finally {
        // One verdict per request and backend: its retries do not count again (an answer after them is a success).
        if (failed) breaker.failure(performance.now(), false);
      }
      if (last !== null && !(last as UpstreamFailure).fallback) break;
    }
    if (panic !== null || attempts.length > 0 || skipped === null || spent || req.cancel.aborted) break;
    // Every backend of the order was out before a call was made (their breakers opened since routing): rather
    // than refuse the request, panic mode — the same order again, breakers ignored.
    const out = skipped.filter((s): s is Out => s.why !== 'panic' && s.why !== 'overloaded');
    if (out.length === 0) break;
    panic = out;
    skipped = null; // an overloaded one is listed again if it still is
  }
  // Assigned inside settle(): TypeScript's flow analysis does not follow closures, so restate the types.
  const rateLimited = lastRateLimit as BufferedOutcome | null;
  const lastFailure = last as UpstreamFailure | null;
  if (rateLimited !== null && lastFailure?.error.status === 429) {
    // Every backend rate-limited us: the client should back off, so pass the 429 on as it came.
    return { ...rateLimited, attempts, upstreamMs: performance.now() - started, skipped, panic };
  }
  if (lastFailure === null && performance.now() >= deadline)
    throw new ForwardError(deadlinePassed(req, attempts), attempts, false, skipped, panic);
  throw new ForwardError(
    lastFailure?.error ?? classifyThrown(new Error('no backend to call'), '?', 'headers').error,
    attempts,
    false,
    skipped,
    panic,
  );
}

const isFailure = (err: unknown): err is UpstreamFailure =>
  typeof err === 'object' && err !== null && 'kind' in err && 'retryable' in err && 'error' in err;

function deadlinePassed(req: ForwardRequest, attempts: Attempt[]): SignalmanError {
  return E.upstreamTimeout(
    `no answer within server.request_deadline_ms (${attempts.length} upstream attempt${attempts.length === 1 ? '' : 's'} made, retries and fallbacks included)`,
  );
}
