// Which backends a request goes to, in order: the one place that turns a request's `model` into a
// routing decision. The forwarding pipeline and POST /v1/route (a dry run) both call resolveRoute().
import type { IncomingHttpHeaders } from 'node:http';
import { E, type SignalmanError } from '../errors.js';
import type { CompiledBackend } from '../upstream/backend.js';
import { CLOSED } from '../upstream/breaker.js';
import { whyUnavailable, type Skipped } from '../upstream/health.js';
import type { Endpoint } from '../upstream/forward.js';
import type { CompiledPolicy } from './compile.js';
import { fixedDecision, routeRequest, unavailableOf } from './engine.js';
import type { Decision } from './policy.js';
import type { RoutingState } from './state.js';

const QUALITY_BIAS_HEADER = 'x-signalman-quality-bias';

export interface RoutingTable {
  readonly backends: ReadonlyMap<string, CompiledBackend>;
  readonly policies: ReadonlyMap<string, CompiledPolicy>;
}

export interface ResolveInput {
  table: RoutingTable;
  endpoint: Endpoint;
  /** The validated body: `model` is a string. */
  body: Record<string, unknown>;
  headers: IncomingHttpHeaders;
  state: RoutingState;
  /** The request's cancellation; its `signal` is made only if routing needs one (see RouteInput.cancel). */
  cancel?: { readonly signal: AbortSignal };
  /** Explain only (POST /v1/route): `model` must name a policy, and no sticky or steering state changes. */
  dryRun?: boolean;
  /** See RouteInput.onEmbedding. */
  onEmbedding?: (embedding: Float32Array) => void;
}

export interface Resolution {
  /** Chosen backend first, then fallbacks. */
  order: CompiledBackend[];
  /** null when the client named a backend directly (nothing was routed). */
  decision: Decision | null;
}

/**
 * A backend named directly resolves synchronously (no promise on the plain-proxy path); a policy goes
 * through the routing engine. Unknown names are 404 `model_not_found`.
 */
export function resolveRoute(input: ResolveInput): Resolution | Promise<Resolution> {
  const { table, body } = input;
  const model = body.model as string;
  const backend = table.backends.get(model);
  if (backend !== undefined) {
    if (input.dryRun) throw E.modelNotFound(`'${model}' is a backend, not a policy: requests to it are not routed`, 'model');
    // Named directly, so no fallback: an open breaker answers at once instead of calling it.
    if (backend.breaker.state !== CLOSED && backend.breaker.unavailable(performance.now()) !== null) throw circuitOpen([backend]);
    return { order: [backend], decision: null };
  }
  const policy = table.policies.get(model);
  if (!policy) {
    throw E.modelNotFound(`model '${model}' is neither a backend nor a policy of this gateway; see GET /v1/models`, 'model');
  }
  // Embeddings are not routed by content: the policy's first candidate, then its fallbacks.
  if (input.endpoint === 'embeddings') return withOrder(table, fixedDecision(policy, unavailableOf(policy, table.backends)));
  return routeRequest({
    policy,
    backends: table.backends,
    body,
    meta: routeMeta(input.endpoint, body),
    headers: input.headers,
    state: input.state,
    qualityBias: qualityBias(input.headers),
    cancel: input.cancel,
    dryRun: input.dryRun,
    onEmbedding: input.onEmbedding,
  }).then((d) => withOrder(table, d));
}

/**
 * A shadow policy's decision for a request the live policy routed: a dry run (no sticky or steering
 * state changes), for the record only.
 */
export function shadowDecision(input: Omit<ResolveInput, 'dryRun' | 'onEmbedding' | 'cancel'> & { policy: string }): Promise<Decision> {
  const policy = input.table.policies.get(input.policy);
  if (!policy) return Promise.reject(new Error(`shadow policy '${input.policy}' is not loaded`));
  if (input.endpoint === 'embeddings') return Promise.resolve(fixedDecision(policy));
  return routeRequest({
    policy,
    backends: input.table.backends,
    body: input.body,
    meta: routeMeta(input.endpoint, input.body),
    headers: input.headers,
    state: input.state,
    dryRun: true,
  });
}

/**
 * The decision's order as backends, leaving out those that cannot take the request now (breaker open,
 * waiting out a retry-after, a full pool under on_overload: next_best) and saying so in `skipped`. When
 * none is left: a full pool still queues; an open breaker everywhere is a fast 503.
 */
function withOrder(table: RoutingTable, decision: Decision): Resolution {
  const order: CompiledBackend[] = [];
  const overload = (table.policies.get(decision.policy) as CompiledPolicy).config.on_overload === 'next_best';
  const now = performance.now();
  let skipped: Skipped[] | null = null;
  for (const name of decision.order) {
    const b = table.backends.get(name) as CompiledBackend;
    const why = whyUnavailable(b, overload, now);
    if (why === null) order.push(b);
    else (skipped ??= [...(decision.skipped ?? [])]).push({ backend: name, why });
  }
  if (skipped === null) return { order, decision };
  const listed = new Set<string>();
  skipped = skipped.filter((s) => !listed.has(s.backend) && listed.add(s.backend));
  if (order.length === 0) {
    const full = skipped.filter((s) => s.why === 'overloaded').map((s) => table.backends.get(s.backend) as CompiledBackend);
    if (full.length === 0) throw circuitOpen(skipped.map((s) => table.backends.get(s.backend) as CompiledBackend));
    order.push(...full); // every one is busy: wait in the queues, as on_overload: queue would
  }
  return { order, decision: { ...decision, skipped } };
}

/** A fast 503: every backend the request could go to is out (open breaker or retry-after); retry-after says when one is back. */
export function circuitOpen(out: readonly CompiledBackend[]): SignalmanError {
  const now = performance.now();
  const wait = Math.min(...out.map((b) => b.breaker.retryAfterS(now)));
  const names = out.map((b) => `'${b.name}'`).join(', ');
  return E.upstreamCircuitOpen(
    `backend ${names} ${out.length === 1 ? 'is' : 'are'} unavailable after repeated failures or an upstream retry-after (circuit breaker open); retry in ${wait} s`,
  ).withHeaders({ 'retry-after': String(wait) });
}

/** The request's bias toward quality in [0, 1]: 1 = best predicted quality at any cost, 0 = cheapest. */
function qualityBias(headers: IncomingHttpHeaders): number | undefined {
  const raw = headers[QUALITY_BIAS_HEADER];
  if (raw === undefined) return undefined;
  const v = Number(Array.isArray(raw) ? raw[0] : raw);
  if (!Number.isFinite(v) || v < 0 || v > 1) {
    throw E.invalidRequest(
      `${QUALITY_BIAS_HEADER} must be a number from 0 (cheapest) to 1 (best quality at any cost)`,
      QUALITY_BIAS_HEADER,
    );
  }
  return v;
}

/** What rules routers may match on besides the text. */
function routeMeta(endpoint: Endpoint, body: Record<string, unknown>): Record<string, string | number | boolean> {
  const messages = Array.isArray(body.messages) ? body.messages.length : 0;
  return {
    endpoint,
    messages,
    has_tools: Array.isArray(body.tools) && body.tools.length > 0,
    stream: body.stream === true,
    user: typeof body.user === 'string' ? body.user : '',
  };
}
