// Which backends a request goes to, in order: the one place that turns a request's `model` into a
// routing decision. The forwarding pipeline and POST /v1/route (a dry run) both call resolveRoute().
import type { CancelSource } from '../embedders/cache.js';
import type { IncomingHttpHeaders } from 'node:http';
import { E } from '../errors.js';
import type { CompiledBackend } from '../upstream/backend.js';
import { CLOSED } from '../upstream/breaker.js';
import { markPanic, whyUnavailable, type Out, type Skipped } from '../upstream/health.js';
import type { Endpoint } from '../upstream/forward.js';
import type { CompiledPolicy } from './compile.js';
import { fixedDecision, routeRequest, unavailableOf } from './engine.js';
import type { Decision } from './policy.js';
import type { RoutingState } from './state.js';
import type { ScoringThreads } from './scoring-threads.js';

const QUALITY_BIAS_HEADER = 'x-signalman-quality-bias';

export interface RoutingTable {
  readonly backends: ReadonlyMap<string, CompiledBackend>;
  readonly policies: ReadonlyMap<string, CompiledPolicy>;
  /** Scoring threads (server.routing_threads), or null: the event loop scores. */
  readonly scoring?: ScoringThreads | null;
}

export interface ResolveInput {
  table: RoutingTable;
  endpoint: Endpoint;
  /** The validated body: `model` is a string. */
  body: Record<string, unknown>;
  headers: IncomingHttpHeaders;
  state: RoutingState;
  /** The request's cancellation; its `signal` is made only if routing needs one (see RouteInput.cancel). */
  cancel?: CancelSource;
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
  /**
   * Panic mode: every backend of the order was out (breaker open or an upstream retry-after), so the
   * request goes to them anyway, in the router's order; listed with why each was out. null: no panic.
   */
  panic: Out[] | null;
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
    // Named directly, so there is nowhere else to go: an open breaker changes nothing but the request's
    // retries (panic mode, see withOrder). A fast 503 here would turn a backend failing 5 % of requests into
    // one failing 100 % for the cooldown, for a deployment with a single backend most of all.
    const why = backend.breaker.state === CLOSED ? null : backend.breaker.unavailable(performance.now());
    return { order: [backend], decision: null, panic: why === null ? null : [{ backend: backend.name, why }] };
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
    scoring: table.scoring,
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
    scoring: input.table.scoring,
  });
}

/**
 * The decision's order as backends, leaving out those that cannot take the request now (breaker open,
 * waiting out a retry-after, a full pool under on_overload: next_best) and saying so in `skipped`. When
 * none is left: full pools still queue; otherwise panic mode, as Envoy's load balancer does below its
 * panic threshold — the whole order is called anyway, in the router's order, and `skipped` says `panic`.
 * Refusing instead would fail every request while the breakers are open: a few % of failures that opened
 * them by chance, or a backend named directly, would become 100 %. In panic mode forward() calls an open
 * backend once per request before moving on (its retries only on the last one), and an answer closes it.
 */
function withOrder(table: RoutingTable, decision: Decision): Resolution {
  const order: CompiledBackend[] = [];
  const overload = (table.policies.get(decision.policy) as CompiledPolicy).config.on_overload === 'next_best';
  const now = performance.now();
  let out: Out[] | null = null;
  for (const name of decision.order) {
    const b = table.backends.get(name) as CompiledBackend;
    const why = whyUnavailable(b, overload, now);
    if (why === null) order.push(b);
    else (out ??= []).push({ backend: name, why });
  }
  if (out === null && decision.skipped === undefined) return { order, decision, panic: null };
  let panic: Out[] | null = null;
  if (order.length === 0 && out !== null) {
    const full = out.filter((s) => s.why === 'overloaded');
    if (full.length > 0) {
      order.push(...full.map((s) => table.backends.get(s.backend) as CompiledBackend)); // every one is busy or out: wait in the queues
    } else {
      panic = out;
      for (const name of decision.order) order.push(table.backends.get(name) as CompiledBackend);
    }
  }
  let skipped: Skipped[] = [...(decision.skipped ?? []), ...(out ?? [])];
  const listed = new Set<string>();
  skipped = skipped.filter((s) => !listed.has(s.backend) && listed.add(s.backend));
  if (panic !== null) skipped = markPanic(skipped, panic);
  return { order, decision: { ...decision, skipped }, panic };
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
