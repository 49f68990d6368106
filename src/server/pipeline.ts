// The request path for the three forwarding endpoints: validate → resolve (routers/resolve.ts) → forward →
// write back (respond.ts) → record. Every outcome (success, error, client abort) passes through one finally block.
import type { Runtime } from '../runtime/compile.js';
import { resolveRoute } from '../routers/resolve.js';
import type { RoutingState } from '../routers/state.js';
import type { EventSink, RequestEvent } from '../telemetry/events.js';
import { Cancellation } from '../upstream/cancel.js';
import { forward, ForwardError, type Endpoint, type StreamOutcome } from '../upstream/forward.js';
import type { ApiHandler, ApiRequest } from './front-door.js';
import { validateBody } from './request-checks.js';
import { endStreamWithError, pipeStream, sendBuffered, sendError, serverTiming, toSignalmanError } from './respond.js';

export interface PipelineDeps {
  sink: EventSink;
  routing: RoutingState;
}

function forwardedHeaders(runtime: Runtime, ctx: ApiRequest): Record<string, string> {
  const out: Record<string, string> = { 'x-signalman-request-id': ctx.id };
  for (const name of runtime.forwardHeaders) {
    const v = ctx.headers[name];
    if (typeof v === 'string') out[name] = v;
  }
  return out;
}

/** The front door's handler for one forwarding endpoint. */
export const forwardHandler =
  (endpoint: Endpoint, deps: PipelineDeps): ApiHandler =>
  (req, runtime) =>
    handleForward(endpoint, runtime, req, deps);

async function handleForward(endpoint: Endpoint, runtime: Runtime, ctx: ApiRequest, deps: PipelineDeps): Promise<void> {
  const cancel = new Cancellation();
  const raw = ctx.res;
  // The client going away cancels everything downstream, including the upstream call.
  const onClose = () => {
    if (!raw.writableFinished) cancel.cancel(new Error('client closed the connection'));
  };
  raw.once('close', onClose);

  const ev: RequestEvent = {
    requestId: ctx.id,
    endpoint,
    model: '',
    policy: null,
    backend: null,
    status: 0,
    stream: false,
    errorCode: null,
    attempts: [],
    decision: null,
    totalMs: 0,
    routeMs: 0,
    upstreamMs: 0,
    aborted: false,
    generation: runtime.generation,
  };
  let stream: StreamOutcome | null = null;
  try {
    const body = validateBody(endpoint, ctx.body);
    ev.model = body.model as string;
    ev.stream = body.stream === true;
    const tRoute = performance.now();
    // A backend named directly resolves synchronously: no promise on the plain-proxy path.
    const resolved = resolveRoute({ table: runtime, endpoint, body, headers: ctx.headers, state: deps.routing, signal: cancel.signal });
    const { order, decision } = resolved instanceof Promise ? await resolved : resolved;
    ev.routeMs = performance.now() - tRoute;
    ev.decision = decision;
    ev.policy = decision?.policy ?? null;

    const outcome = await forward({
      order,
      endpoint,
      body,
      stream: ev.stream,
      headers: forwardedHeaders(runtime, ctx),
      cancel,
      retryBaseMs: runtime.config.server.retry_base_ms,
      retryMaxMs: runtime.config.server.retry_max_ms,
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
      sendBuffered(raw, outcome.status, headers, outcome.body);
      return;
    }
    stream = outcome;
    const end = await pipeStream(raw, headers, outcome);
    if (end.aborted) ev.aborted = true;
    if (end.error !== null) ev.errorCode = end.error.code;
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
