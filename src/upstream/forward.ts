// Calls backends in order: retries with jittered backoff on 429/5xx/connect errors, then the next
// fallback — all strictly before the first byte reaches the client. After that, a retry would splice two
// different completions into one stream, so the caller owns failures from then on.
import type { IncomingHttpHeaders } from 'node:http';
import type { CompiledBackend } from './backend.js';
import type { SignalmanError } from '../errors.js';
import type { Stages } from '../telemetry/stages.js';
import { backoffMs, sleep } from './backoff.js';
import { requestBuffered, type BufferedResponse } from './buffered.js';
import type { Cancellation } from './cancel.js';
import { requestStream, type UpstreamStream } from './streaming.js';
import { classifyStatus, classifyThrown, type UpstreamFailure } from './errors.js';

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

  const stages = req.stages;
  for (const backend of req.order) {
    const cfg = backend.config;
    req.body.model = cfg.model;
    if (req.usageOptions !== null) req.body.stream_options = cfg.stream_usage ? req.usageOptions.on : req.usageOptions.off;
    const payload = JSON.stringify(req.body);
    const headers = { ...backend.headers, ...req.headers };
    for (let attempt = 0; attempt <= cfg.max_retries; attempt++) {
      if (req.cancel.aborted) throw new ForwardError(classifyThrown(req.cancel.reason, backend.name, 'headers').error, attempts, true);
      const t0 = performance.now();
      if (stages?.attemptStart.hasSubscribers) stages.attemptStart.publish({ id: req.id, backend: backend.name });
      let retryAfter: string | undefined;
      /** A complete answer: returned as the outcome, or (429 / 5xx) recorded for a retry, giving null. */
      const settle = (res: BufferedResponse, failure: UpstreamFailure | null): BufferedOutcome | null => {
        const contentType = header(res.headers, 'content-type') ?? 'application/json';
        if (failure === null) {
          // A success, or the client's own mistake as the upstream sees it (400, 401, 404, 422…): pass it on.
          endAttempt(req, attempts, { backend: backend.name, status: res.status, error: null, ms: performance.now() - t0 });
          const passRetryAfter = res.status >= 400 ? header(res.headers, 'retry-after') : undefined;
          return {
            kind: 'buffered',
            backend,
            status: res.status,
            contentType,
            body: res.body,
            attempts,
            upstreamMs: performance.now() - started,
            retryAfter: passRetryAfter,
          };
        }
        retryAfter = header(res.headers, 'retry-after');
        endAttempt(req, attempts, { backend: backend.name, status: res.status, error: failure.kind, ms: performance.now() - t0 });
        if (res.status === 429)
          lastRateLimit = { kind: 'buffered', backend, status: 429, contentType, body: res.body, attempts, upstreamMs: 0, retryAfter };
        last = failure;
        return null;
      };
      try {
        const dispatchOpts = {
          path: backend.paths[req.endpoint],
          method: 'POST' as const,
          headers,
          body: payload,
          headersTimeout: cfg.timeout_ms,
          bodyTimeout: req.stream ? cfg.stream_idle_timeout_ms : cfg.timeout_ms,
        };
        if (req.stream) {
          const start = await requestStream(backend.pool, dispatchOpts, req.cancel);
          if (start.kind === 'stream') {
            const { stream } = start;
            endAttempt(req, attempts, { backend: backend.name, status: stream.status, error: null, ms: performance.now() - t0 });
            return {
              kind: 'stream',
              backend,
              status: stream.status,
              contentType: header(stream.headers, 'content-type') ?? 'text/event-stream',
              stream,
              attempts,
              upstreamMs: performance.now() - started,
            };
          }
          // An error answer to a stream request is a small JSON body: handled like a buffered one.
          const outcome = settle(start.response, classifyStatus(start.response.status, backend.name));
          if (outcome !== null) return outcome;
        } else {
          const res = await requestBuffered(backend.pool, dispatchOpts, req.cancel);
          const failure = classifyStatus(res.status, backend.name);
          const outcome = settle(res, failure);
          if (outcome !== null) return outcome;
        }
      } catch (err) {
        if (req.cancel.aborted) {
          endAttempt(req, attempts, { backend: backend.name, status: null, error: 'aborted', ms: performance.now() - t0 });
          throw new ForwardError(classifyThrown(req.cancel.reason, backend.name, 'headers').error, attempts, true);
        }
        const failure = classifyThrown(err, backend.name, 'headers');
        endAttempt(req, attempts, { backend: backend.name, status: null, error: failure.kind, ms: performance.now() - t0 });
        last = failure;
        if (!failure.retryable) break;
      }
      if (attempt === cfg.max_retries) break;
      const wait = backoffMs(attempt, req.retryBaseMs, req.retryMaxMs, retryAfter);
      if (wait === null) break; // the server asks for a longer wait than we allow: try the next backend
      await sleep(wait, req.cancel.signal).catch(() => undefined);
    }
    if (last !== null && !last.fallback) break;
  }
  // Assigned inside settle(): TypeScript's flow analysis does not follow closures, so restate the types.
  const rateLimited = lastRateLimit as BufferedOutcome | null;
  const lastFailure = last as UpstreamFailure | null;
  if (rateLimited !== null && lastFailure?.error.status === 429) {
    // Every backend rate-limited us: the client should back off, so pass the 429 on as it came.
    return { ...rateLimited, attempts, upstreamMs: performance.now() - started };
  }
  throw new ForwardError(lastFailure?.error ?? classifyThrown(new Error('no backend to call'), '?', 'headers').error, attempts, false);
}
