// The request path for the three forwarding endpoints: validate → resolve → route → forward → stream back →
// record. Every outcome (success, error, client abort) passes through one finally block.
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { ZodType } from 'zod';
import type { CompiledBackend, Runtime } from '../config/compile.js';
import { E, SignalmanError } from '../errors.js';
import { routeRequest } from '../routers/engine.js';
import type { Decision } from '../routers/policy.js';
import type { RoutingState } from '../routers/state.js';
import type { EventSink, RequestEvent } from '../telemetry/events.js';
import { Cancellation } from '../upstream/cancel.js';
import { forward, ForwardError, type Endpoint, type StreamOutcome } from '../upstream/forward.js';
import { ChatBody, CompletionBody, EmbeddingBody, paramOf } from './openai-schema.js';
import { endStreamWithError, SseFramer } from './sse.js';

const SCHEMAS: Record<Endpoint, ZodType> = { chat: ChatBody, completions: CompletionBody, embeddings: EmbeddingBody };
const QUALITY_BIAS_HEADER = 'x-signalman-quality-bias';

export interface PipelineDeps {
  sink: EventSink;
  routing: RoutingState;
}

/** One forwarding request, whether it came through Fastify or the raw fast path (fast-path.ts). */
export interface ForwardContext {
  id: string;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body (unknown until validated). */
  body: unknown;
  res: ServerResponse;
  /** performance.now() when the request arrived. */
  startedAt: number;
}

/**
 * An OpenAI-shaped error response, written straight to the socket. `timing` is its Server-Timing value:
 * errors show what the gateway cost too.
 */
export function sendError(res: ServerResponse, id: string, e: SignalmanError, timing: string, extra: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify(e.toJSON());
  res.writeHead(e.status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    'x-signalman-request-id': id,
    'server-timing': timing,
    ...extra,
  });
  res.end(body);
}

export function validateBody(endpoint: Endpoint, body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw E.invalidRequest('the request body must be a JSON object', null);
  }
  const parsed = SCHEMAS[endpoint].safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const param = issue ? paramOf(issue.path) : null;
    throw E.invalidRequest(`${param ?? 'body'}: ${issue?.message ?? 'invalid request'}`, param);
  }
  // Forward the client's own object, not zod's copy: unknown fields stay exactly as sent.
  return body as Record<string, unknown>;
}

/** The request's bias toward quality in [0, 1]: 1 = best predicted quality at any cost, 0 = cheapest. */
export function qualityBias(headers: IncomingHttpHeaders): number | undefined {
  const raw = headers[QUALITY_BIAS_HEADER];
  if (raw === undefined) return undefined;
  const v = Number(Array.isArray(raw) ? raw[0] : raw);
  if (!Number.isFinite(v) || v < 0 || v > 1) {
    throw E.invalidRequest(`${QUALITY_BIAS_HEADER} must be a number from 0 (cheapest) to 1 (best quality at any cost)`, QUALITY_BIAS_HEADER);
  }
  return v;
}

export function routeMeta(endpoint: Endpoint, body: Record<string, unknown>): Record<string, string | number | boolean> {
  const messages = Array.isArray(body.messages) ? body.messages.length : 0;
  return {
    endpoint,
    messages,
    has_tools: Array.isArray(body.tools) && body.tools.length > 0,
    stream: body.stream === true,
    user: typeof body.user === 'string' ? body.user : '',
  };
}

export async function resolveTarget(
  runtime: Runtime,
  headers: IncomingHttpHeaders,
  body: Record<string, unknown>,
  endpoint: Endpoint,
  cancel: Cancellation,
  state: RoutingState,
): Promise<{ order: CompiledBackend[]; decision: Decision | null }> {
  const model = body.model as string;
  const backend = runtime.backends.get(model);
  if (backend) return { order: [backend], decision: null };
  const policy = runtime.policies.get(model);
  if (!policy) {
    throw E.modelNotFound(`model '${model}' is neither a backend nor a policy of this gateway; see GET /v1/models`, 'model');
  }
  let decision: Decision;
  if (endpoint === 'embeddings') {
    // Embeddings are not routed by content: the policy's first candidate, then its fallbacks.
    const first = policy.candidateNames[0] as string;
    decision = {
      policy: policy.name, chosen: first, order: [first, ...policy.fallbacks.filter((f) => f !== first)], reason: 'fixed',
      candidates: [], guard: null, embedder: null, router: 'none', embedCacheHit: false, scoreCacheHit: false,
      timingsMs: { extract: 0, embed: 0, guard: 0, score: 0, decide: 0 },
    };
  } else {
    decision = await routeRequest({
      policy, backends: runtime.backends, body, meta: routeMeta(endpoint, body), headers, state, qualityBias: qualityBias(headers), signal: cancel.signal,
    });
  }
  return { order: decision.order.map((n) => runtime.backends.get(n) as CompiledBackend), decision };
}

function forwardedHeaders(runtime: Runtime, ctx: ForwardContext): Record<string, string> {
  const out: Record<string, string> = { 'x-signalman-request-id': ctx.id };
  for (const name of runtime.forwardHeaders) {
    const v = ctx.headers[name];
    if (typeof v === 'string') out[name] = v;
  }
  return out;
}

/** The Server-Timing value of every response: gateway overhead, routing, upstream (0 where there was none). */
export function serverTiming(totalMs: number, routeMs: number, upstreamMs: number): string {
  const gw = Math.max(0, totalMs - upstreamMs);
  return `gw;desc="gateway overhead";dur=${gw.toFixed(3)}, route;dur=${routeMs.toFixed(3)}, upstream;dur=${upstreamMs.toFixed(3)}`;
}

export async function handleForward(endpoint: Endpoint, runtime: Runtime, ctx: ForwardContext, deps: PipelineDeps): Promise<void> {
  const cancel = new Cancellation();
  const raw = ctx.res;
  // The client going away cancels everything downstream, including the upstream call.
  const onClose = () => {
    if (!raw.writableFinished) cancel.cancel(new Error('client closed the connection'));
  };
  raw.once('close', onClose);

  const ev: RequestEvent = {
    requestId: ctx.id, endpoint, model: '', policy: null, backend: null, status: 0, stream: false,
    errorCode: null, attempts: [], decision: null, totalMs: 0, routeMs: 0, upstreamMs: 0, aborted: false, generation: runtime.generation,
  };
  let stream: StreamOutcome | null = null;
  try {
    const body = validateBody(endpoint, ctx.body);
    ev.model = body.model as string;
    ev.stream = body.stream === true;
    const tRoute = performance.now();
    // A backend named directly needs no routing: skip the async step (and its promise) altogether.
    const direct = runtime.backends.get(ev.model);
    const { order, decision } = direct !== undefined ? { order: [direct], decision: null } : await resolveTarget(runtime, ctx.headers, body, endpoint, cancel, deps.routing);
    ev.routeMs = performance.now() - tRoute;
    ev.decision = decision;
    ev.policy = decision?.policy ?? null;

    const outcome = await forward({
      order, endpoint, body, stream: ev.stream, headers: forwardedHeaders(runtime, ctx), cancel,
      retryBaseMs: runtime.config.server.retry_base_ms, retryMaxMs: runtime.config.server.retry_max_ms,
    });
    ev.attempts = outcome.attempts;
    ev.backend = outcome.backend.name;
    ev.status = outcome.status;
    ev.upstreamMs = outcome.upstreamMs;
    const headers: Record<string, string> = {
      'content-type': outcome.contentType,
      'x-signalman-request-id': ctx.id,
      'x-signalman-model': outcome.backend.name,
      'server-timing': serverTiming(performance.now() - ctx.startedAt, ev.routeMs, outcome.upstreamMs),
    };
    if (ev.policy !== null) headers['x-signalman-policy'] = ev.policy;

    if (outcome.kind === 'buffered') {
      if (outcome.retryAfter !== undefined) headers['retry-after'] = outcome.retryAfter;
      // The body is already bytes: write it straight to the socket.
      headers['content-length'] = String(outcome.body.length);
      raw.writeHead(outcome.status, headers);
      raw.end(outcome.body);
      return;
    }
    stream = outcome;
    await pipeStream(raw, headers, outcome, ev);
  } catch (err) {
    if (err instanceof ForwardError) {
      ev.attempts = err.attempts;
      ev.aborted = err.aborted;
    }
    const e = toSignalmanError(err);
    ev.errorCode = e.code;
    ev.status = e.status;
    if (cancel.aborted) {
      ev.aborted = true;
      return; // nobody is listening
    }
    if (!raw.headersSent) {
      // Upstream time of a failed call: what its attempts spent waiting on backends.
      let upstreamMs = 0;
      for (const a of ev.attempts) upstreamMs += a.ms;
      const timing = serverTiming(performance.now() - ctx.startedAt, ev.routeMs, upstreamMs);
      sendError(raw, ctx.id, e, timing, ev.policy === null ? {} : { 'x-signalman-policy': ev.policy });
    } else {
      endStreamWithError(raw, e);
    }
  } finally {
    raw.removeListener('close', onClose);
    stream?.stream.cancel();
    ev.totalMs = performance.now() - ctx.startedAt;
    deps.sink.record(ev);
  }
}

async function pipeStream(raw: ServerResponse, headers: Record<string, string>, s: StreamOutcome, ev: RequestEvent): Promise<void> {
  headers['cache-control'] = 'no-cache';
  raw.writeHead(200, headers);
  const framer = new SseFramer();
  const { stream } = s;
  // Respect backpressure: a slow client pauses the upstream socket instead of us buffering the completion.
  const resume = () => stream.resume();
  const send = (chunk: Buffer): boolean => {
    const out = framer.push(chunk);
    if (out.length === 0 || raw.destroyed || raw.write(out)) return true;
    raw.once('drain', resume);
    return false;
  };
  try {
    send(stream.first);
    await new Promise<void>((resolve, reject) => stream.pipe({ data: send, end: resolve, error: reject }));
    const rest = framer.rest();
    if (rest !== null && rest.length > 0 && rest.toString().trim() !== '') {
      throw Object.assign(new Error('stream ended inside an event'), { code: 'UND_ERR_SOCKET' });
    }
    raw.end();
  } catch (err) {
    raw.removeListener('drain', resume);
    if (raw.destroyed) {
      ev.aborted = true;
      return;
    }
    const e =
      (err as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT'
        ? E.upstreamTimeout(`backend '${s.backend.name}' went silent mid-stream for longer than stream_idle_timeout_ms (${s.backend.config.stream_idle_timeout_ms} ms)`)
        : E.upstreamStreamFailed(`backend '${s.backend.name}' stream failed after it started: ${(err as Error).message}`);
    ev.errorCode = e.code;
    endStreamWithError(raw, e);
  }
}

export function toSignalmanError(err: unknown): SignalmanError {
  if (err instanceof SignalmanError) return err;
  if (err instanceof ForwardError) return err.error;
  return E.internal(`internal error: ${(err as Error)?.message ?? String(err)}`, null, err);
}

