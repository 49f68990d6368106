// The request path for the three forwarding endpoints: validate → resolve (routers/resolve.ts) → forward →
// write back (respond.ts) → record. Every outcome (success, error, client abort) passes through one finally
// block, which completes the request's record and hands it to telemetry (record.ts).
import { SignalmanError } from '../errors.js';
import { resolveRoute } from '../routers/resolve.js';
import type { RoutingState } from '../routers/state.js';
import type { Runtime } from '../runtime/compile.js';
import type { RequestRecord } from '../telemetry/record.js';
import type { Stages } from '../telemetry/stages.js';
import {
  answerChars,
  bufferedUsage,
  readUsage,
  requestChars,
  tokensOfChars,
  usageObjectAt,
  withoutEvent,
  type Usage,
} from '../telemetry/usage.js';
import { Cancellation } from '../upstream/cancel.js';
import { forward, ForwardError, type Endpoint, type StreamOutcome } from '../upstream/forward.js';
import { markPanic, skippedHeader, type Out, type Skipped } from '../upstream/health.js';
import type { ApiHandler, ApiRequest } from './front-door.js';
import type { Lifecycle } from './lifecycle.js';
import { permit } from '../auth/keys.js';
import { admitRequest } from '../limits/gate.js';
import type { Limiter } from '../limits/limiter.js';
import { applyDecision, finishRecord, newRecord } from './record-builder.js';
import { validateBody } from './request-checks.js';
import { endStreamWithError, isBug, pipeStream, sendBuffered, sendError, serverTiming, toSignalmanError } from './respond.js';

/** Online learning as the pipeline sees it: keep a routed prompt's embedding for a later feedback. */
export interface EmbeddingKeeper {
  isLearning(policy: string): boolean;
  remember(policy: string, requestId: string, embedding: Float32Array): void;
}

export interface PipelineDeps {
  stages: Stages;
  routing: RoutingState;
  learning: EmbeddingKeeper | null;
  /** Told of an unexpected failure (a bug) with its stack; the client sees only 'internal error'. */
  onBug: (err: unknown, id: string) => void;
  /** Client-key limits and budgets (null: none to enforce). */
  limiter: Limiter | null;
  /** Open requests, so a shutdown can wait for them and end what is left at its deadline. */
  open: Pick<Lifecycle, 'add' | 'delete'>;
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

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

async function handleForward(endpoint: Endpoint, runtime: Runtime, ctx: ApiRequest, deps: PipelineDeps): Promise<void> {
  const cancel = new Cancellation();
  const raw = ctx.res;
  // The client going away cancels everything downstream, including the upstream call.
  const onClose = () => {
    if (!raw.writableFinished) cancel.cancel(new Error('client closed the connection'));
  };
  raw.once('close', onClose);
  deps.open.add(raw, cancel);

  const rec = newRecord(ctx.id, endpoint, ctx.startedAt, runtime.generation);
  const key = ctx.key;
  rec.key_id = key === null ? null : key.id;
  /** USD the limiter put aside for this request (corrected by the charge in finally). */
  let reservedUsd = -1;
  let body: Record<string, unknown> | null = null;
  let stream: StreamOutcome | null = null;
  let error: SignalmanError | null = null;
  let aborted = false;
  let usage: Usage | null = null;
  /** SSE events seen, for a token estimate when a stream reports no usage. */
  let events = 0;
  /** Panic mode (every backend was out, called anyway): which ones and why, for `x-signalman-panic`. */
  let panicked: readonly Out[] | null = null;
  try {
    body = validateBody(endpoint, ctx.body, runtime.config.server);
    rec.model = body.model as string;
    // Known before routing: a request that routing or anything after it refuses is still counted under its policy.
    if (runtime.policies.has(rec.model)) rec.policy = rec.model;
    if (key !== null) {
      const isPolicy = runtime.policies.has(rec.model);
      const denied = isPolicy || runtime.backends.has(rec.model) ? permit(key, rec.model, isPolicy) : null;
      if (denied !== null) throw denied;
    }
    rec.stream = body.stream === true;
    const tRoute = performance.now();
    const learning = deps.learning !== null && deps.learning.isLearning(rec.model) ? deps.learning : null;
    // A backend named directly resolves synchronously: no promise on the plain-proxy path.
    const resolved = resolveRoute({
      table: runtime,
      endpoint,
      body,
      headers: ctx.headers,
      state: deps.routing,
      cancel,
      onEmbedding: learning === null ? undefined : (vec) => learning.remember(rec.model, ctx.id, vec),
    });
    const resolution = resolved instanceof Promise ? await resolved : resolved;
    const { decision } = resolution;
    panicked = resolution.panic;
    let order = resolution.order;
    rec.route_ms = performance.now() - tRoute;
    if (decision !== null) {
      applyDecision(rec, decision);
      if (decision.skipped !== undefined) rec.skipped = [...decision.skipped];
      if (deps.stages.decision.hasSubscribers) {
        deps.stages.decision.publish({ id: ctx.id, policy: decision.policy, chosen: decision.chosen, reason: decision.reason });
      }
    }

    let limitHeaders: Record<string, string> | null = null;
    if (key !== null && key.limited && deps.limiter !== null) {
      const gate = await admitRequest(deps.limiter, key, body, order, runtime.policies.get(rec.model), runtime.backends);
      order = gate.order;
      limitHeaders = gate.headers;
      reservedUsd = gate.reservedUsd;
      if (gate.downgradedTo !== null) {
        rec.chosen = gate.downgradedTo;
        rec.reason = 'budget_downgrade';
      }
    }

    // Usage on streams: ask backends that support it even when the client did not (and strip it again).
    const clientUsage = rec.stream && isObject(body.stream_options) && body.stream_options.include_usage === true;
    const usageOptions =
      rec.stream && !clientUsage
        ? { on: { ...(isObject(body.stream_options) ? body.stream_options : {}), include_usage: true }, off: body.stream_options }
        : null;
    const outcome = await forward({
      order,
      endpoint,
      body,
      stream: rec.stream,
      headers: forwardedHeaders(runtime, ctx),
      cancel,
      retryBaseMs: runtime.config.server.retry_base_ms,
      retryMaxMs: runtime.config.server.retry_max_ms,
      id: ctx.id,
      stages: deps.stages,
      usageOptions,
      deadline:
        runtime.config.server.request_deadline_ms === undefined ? Infinity : ctx.startedAt + runtime.config.server.request_deadline_ms,
      budget: runtime.retryBudget,
      onOverload: decision === null ? 'queue' : (runtime.policies.get(decision.policy)?.config.on_overload ?? 'queue'),
      panic: panicked,
    });
    if (outcome.skipped !== null) rec.skipped = withSkipped(rec.skipped, outcome.skipped);
    if (outcome.panic !== null) rec.skipped = markPanic(rec.skipped, outcome.panic);
    rec.attempts = outcome.attempts;
    rec.backend = outcome.backend.name;
    rec.status = outcome.status;
    rec.upstream_ms = outcome.upstreamMs;
    const headers: Record<string, string> = {
      'content-type': outcome.contentType,
      'x-signalman-request-id': ctx.id,
      'x-signalman-model': outcome.backend.name,
      'server-timing': serverTiming(performance.now() - ctx.startedAt, rec.route_ms, outcome.upstreamMs),
    };
    if (rec.policy !== null) headers['x-signalman-policy'] = rec.policy;
    if (limitHeaders !== null) Object.assign(headers, limitHeaders);
    if (rec.skipped.length > 0) headers['x-signalman-skipped'] = skippedHeader(rec.skipped);
    if (outcome.panic !== null) headers['x-signalman-panic'] = skippedHeader(outcome.panic);
    rec.ttft_ms = performance.now() - ctx.startedAt;
    if (deps.stages.firstByte.hasSubscribers) deps.stages.firstByte.publish({ id: ctx.id, ms: rec.ttft_ms });

    if (outcome.kind === 'buffered') {
      if (outcome.retryAfter !== undefined) headers['retry-after'] = outcome.retryAfter;
      sendBuffered(raw, outcome.status, headers, outcome.body);
      // Only answers are billed: an upstream 4xx passed through costs nothing.
      if (outcome.status < 300) finishTokens(rec, body, bufferedUsage(outcome.body), outcome.body, 0);
      return;
    }
    stream = outcome;
    const strip = usageOptions !== null && outcome.backend.config.stream_usage;
    const end = await pipeStream(raw, headers, outcome, (out) => {
      // The usage chunk comes last (choices: []), so its key is the last "usage" of the bytes it arrives in.
      const at = usageObjectAt(out, 0, true);
      if (at === -1) {
        // Counted even when usage is expected: a stream cut before its usage chunk is billed by its events.
        for (let i = out.indexOf('\n\n'); i !== -1; i = out.indexOf('\n\n', i + 2)) events++;
        return out;
      }
      usage = readUsage(out, at);
      return strip ? withoutEvent(out, at) : out;
    });
    aborted = end.aborted;
    error = end.error;
    // A broken event mid-stream is the backend's failure too (one in the first chunk was counted by forward()).
    if (error?.code === 'upstream_bad_response') outcome.backend.breaker.failure(performance.now(), false);
    finishTokens(rec, body, usage, null, events, error === null && !aborted);
  } catch (err) {
    if (err instanceof ForwardError) {
      rec.attempts = err.attempts;
      rec.backend = err.attempts.at(-1)?.backend ?? null;
      if (err.skipped !== null) rec.skipped = withSkipped(rec.skipped, err.skipped);
      panicked = err.panic;
      if (panicked !== null) rec.skipped = markPanic(rec.skipped, panicked);
    }
    // Cancelled with an error of ours (the shutdown deadline): the client is told. Otherwise cancelled = the client left.
    const ours = cancel.reason instanceof SignalmanError ? cancel.reason : null;
    const e = ours ?? toSignalmanError(err);
    if (isBug(e)) deps.onBug(err, ctx.id);
    error = e;
    rec.status = e.status;
    if (cancel.aborted && ours === null) {
      aborted = true;
      return; // nobody is listening
    }
    if (!raw.headersSent) {
      // Upstream time of a failed call: what its attempts spent waiting on backends.
      let upstreamMs = 0;
      for (const a of rec.attempts) upstreamMs += a.ms;
      rec.upstream_ms = upstreamMs;
      const timing = serverTiming(performance.now() - ctx.startedAt, rec.route_ms, upstreamMs);
      const extra: Record<string, string> = rec.policy === null ? {} : { 'x-signalman-policy': rec.policy };
      if (rec.skipped.length > 0) extra['x-signalman-skipped'] = skippedHeader(rec.skipped);
      if (panicked !== null) extra['x-signalman-panic'] = skippedHeader(panicked);
      sendError(raw, ctx.id, e, timing, extra);
    } else {
      endStreamWithError(raw, e);
    }
  } finally {
    raw.removeListener('close', onClose);
    deps.open.delete(raw);
    stream?.stream.cancel();
    rec.total_ms = performance.now() - ctx.startedAt;
    finishRecord(rec, { runtime, body, error, aborted, headers: ctx.headers, routing: deps.routing }, deps.stages);
    // Charged once the answer is known (a refused request reserved nothing: reservedUsd stays -1).
    if (key !== null && reservedUsd >= 0 && deps.limiter !== null) {
      deps.limiter.charge(key, (rec.prompt_tokens ?? 0) + (rec.completion_tokens ?? 0), rec.cost_usd - reservedUsd);
    }
  }
}

/** The decision's skipped backends, then forward()'s (each backend once). */
function withSkipped(had: RequestRecord['skipped'], more: readonly Skipped[]): RequestRecord['skipped'] {
  const out = [...had];
  for (const s of more) if (!out.some((o) => o.backend === s.backend)) out.push(s);
  return out;
}

/** Token counts from the upstream's usage, or estimated from characters (and marked so). */
function finishTokens(
  rec: RequestRecord,
  body: Record<string, unknown>,
  usage: Usage | null,
  answer: Buffer | null,
  events: number,
  complete = true,
): void {
  if (usage !== null) {
    rec.prompt_tokens = usage.prompt;
    rec.completion_tokens = usage.completion;
    return;
  }
  rec.tokens_estimated = true;
  rec.prompt_tokens = estimatePrompt(body);
  // A streamed delta carries about one token; the first event (role) and, when the stream completed, the
  // last two (finish, [DONE]) none.
  rec.completion_tokens = answer !== null ? estimateAnswer(answer) : Math.max(0, events - (complete ? 3 : 1));
}

const estimatePrompt = (body: Record<string, unknown>): number => tokensOfChars(requestChars(body));
const estimateAnswer = (answer: Buffer): number => tokensOfChars(answerChars(answer));
