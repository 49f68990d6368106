// Stages 4-8 of a routed request: sticky lookup, extract the prompt text, embed it (cached), guard,
// score every candidate, decide. resolve.ts calls routeRequest() for the pipeline and for /v1/route,
// which explains the very same Decision (as a dry run that leaves sticky and steering state alone).
import type { CancelSource } from '../embedders/cache.js';
import type { CompiledBackend } from '../upstream/backend.js';
import type { SkipWhy } from '../upstream/breaker.js';
import { whyUnavailable, type Skipped } from '../upstream/health.js';
import type { CompiledPolicy } from './compile.js';
import { extractPromptText } from './prompt-text.js';
import { E } from '../errors.js';
import { checkScores, decide, effectiveLambda, orderFrom, type Decision, type DecisionReason } from './policy.js';
import type { RoutingState } from './state.js';
import { conversationKey } from './sticky.js';
import type { CandidateScore, GuardResult, RouteQuery } from './types.js';
import type { ScoringThreads } from './scoring-threads.js';

export interface RouteInput {
  policy: CompiledPolicy;
  backends: ReadonlyMap<string, CompiledBackend>;
  body: Record<string, unknown>;
  meta: RouteQuery['meta'];
  /** Request headers the engine reads (conversation id). */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  state: RoutingState;
  /** Per-request quality bias in [0, 1] from x-signalman-quality-bias. */
  qualityBias?: number;
  /** Its `signal` is read only when an embedder needs one: making an AbortSignal costs µs and garbage per request. */
  cancel?: CancelSource;
  /** Explain only: compute the decision, change no sticky or steering state. */
  dryRun?: boolean;
  /** Called with the prompt's embedding when one was computed (online learning keeps it for feedback). */
  onEmbedding?: (embedding: Float32Array) => void;
  /** Scoring threads (server.routing_threads); the event loop scores when absent or when they decline. */
  scoring?: ScoringThreads | null;
  now?: number;
}

const NO_TIMINGS = { extract: 0, embed: 0, guard: 0, score: 0, decide: 0 };

/** A decision that scores nothing: the policy's first candidate, then its fallbacks (embeddings). */
export function fixedDecision(policy: CompiledPolicy, unavailable?: (backend: string) => SkipWhy | null): Decision {
  // The first candidate that can take the request (resolve.ts lists the ones left out).
  const first = (unavailable && policy.candidateNames.find((n) => unavailable(n) === null)) || (policy.candidateNames[0] as string);
  return {
    policy: policy.name,
    chosen: first,
    order: orderFrom(first, policy),
    reason: 'fixed',
    candidates: [],
    guard: null,
    embedder: null,
    router: 'none',
    embedCacheHit: false,
    scoreCacheHit: false,
    timingsMs: NO_TIMINGS,
  };
}

/**
 * Why a candidate cannot take a request now, or undefined when every candidate can (the usual case: one
 * field read per candidate, nothing allocated).
 */
export function unavailableOf(
  policy: CompiledPolicy,
  backends: ReadonlyMap<string, CompiledBackend>,
): ((backend: string) => SkipWhy | null) | undefined {
  const overload = policy.config.on_overload === 'next_best';
  const t = performance.now();
  for (const name of policy.candidateNames) {
    if (whyUnavailable(backends.get(name) as CompiledBackend, overload, t) !== null) {
      return (n) => whyUnavailable(backends.get(n) as CompiledBackend, overload, t);
    }
  }
  return undefined;
}

/** What a routed decision learnt on its way: everything in a Decision besides the policy's own names. */
interface Found {
  guard: GuardResult | null;
  embedCacheHit: boolean;
  scoreCacheHit: boolean;
  candidates: Decision['candidates'];
  timingsMs: Decision['timingsMs'];
}

/**
 * A Decision written out field by field. `{ ...base, guard, … }` (a spread whose fields are then set again)
 * took ~5 µs per decision in V8's slow object-clone path; this is tens of nanoseconds.
 */
function decisionOf(policy: CompiledPolicy, chosen: string, order: readonly string[], reason: DecisionReason, f: Found): Decision {
  return {
    policy: policy.name,
    guard: f.guard,
    embedder: policy.embedder?.id ?? null,
    router: policy.router.type,
    embedCacheHit: f.embedCacheHit,
    scoreCacheHit: f.scoreCacheHit,
    chosen,
    order,
    reason,
    candidates: f.candidates,
    timingsMs: f.timingsMs,
  };
}

export async function routeRequest(input: RouteInput): Promise<Decision> {
  const { policy } = input;
  const cfg = policy.config;
  const now = input.now ?? Date.now();
  const unavailable = unavailableOf(policy, input.backends);

  // Sticky: a follow-up turn goes where its conversation started, with no scoring at all.
  const sticky = cfg.sticky.enabled ? input.state.stickyFor(cfg) : null;
  const header = input.headers[cfg.sticky.header];
  const conv = sticky ? conversationKey(cfg.sticky, input.body, typeof header === 'string' ? header : undefined) : null;
  /** A conversation's backend that cannot take this turn: routed afresh, but the conversation stays on it. */
  let stickySkip: Skipped | null = null;
  if (sticky && conv?.followUp) {
    const held = sticky.get(conv.key, now);
    if (held !== undefined && policy.candidateNames.includes(held)) {
      const why = unavailable?.(held) ?? null;
      if (why === null) {
        if (!input.dryRun) sticky.set(conv.key, held, now + cfg.sticky.ttl_s * 1000);
        const f = { guard: null, embedCacheHit: false, scoreCacheHit: false, candidates: [], timingsMs: NO_TIMINGS };
        return decisionOf(policy, held, orderFrom(held, policy), 'sticky', f);
      }
      stickySkip = { backend: held, why };
    }
  }

  const t0 = performance.now();
  const text = extractPromptText(input.body, cfg.prompt);
  const t1 = performance.now();
  if (text.trim() === '' && (policy.router.needsEmbedding || policy.guard !== null)) {
    // Nothing to judge (e.g. an image-only message): say so, and take the guard's fallback if there is
    // one, else the first candidate — never a guess dressed up as a prediction.
    const chosen = policy.config.guard?.fallback ?? (policy.candidateNames[0] as string);
    const timingsMs = { extract: t1 - t0, embed: 0, guard: 0, score: 0, decide: 0 };
    return decisionOf(policy, chosen, orderFrom(chosen, policy), 'no_text', {
      guard: null,
      embedCacheHit: false,
      scoreCacheHit: false,
      candidates: [],
      timingsMs,
    });
  }
  // A text seen before (text-only routers): reuse its guard verdict and scores, skip embed + guard + score.
  const cacheKey = policy.scoreCache?.key(text);
  const hit = cacheKey === undefined ? undefined : policy.scoreCache?.get(cacheKey);
  const scoreCacheHit = hit !== undefined;
  let found: Scored;
  let scoredOn: 'worker' | undefined;
  if (hit === undefined) {
    // A scoring thread takes the work when the policy is served by one and has room; a worker lost
    // mid-request (null) or none at all: the event loop scores, with the same code.
    // A text-only router never reads the request's metadata: it is not copied to the thread.
    const meta = policy.router.textOnly === true ? null : input.meta;
    const away = input.onEmbedding === undefined ? input.scoring?.score(policy.name, text, meta) : undefined;
    const remote = away === undefined ? null : await away;
    if (remote !== null) scoredOn = 'worker';
    found = remote ?? (await scoreText(policy, text, input.meta, input.cancel, input.onEmbedding));
    if (found.guard === null || found.guard.inDomain) checkScores(policy, found.scores);
    if (cacheKey !== undefined) policy.scoreCache?.set(cacheKey, { scores: found.scores, guard: found.guard });
  } else {
    found = { guard: hit.guard, scores: hit.scores, embedCacheHit: false, embedMs: 0, guardMs: 0, scoreMs: 0 };
  }
  const { guard, scores, embedCacheHit, embedMs, guardMs, scoreMs } = found;
  if (guard !== null && !guard.inDomain) {
    const g = cfg.guard as NonNullable<typeof cfg.guard>;
    if (g.on_out_of_domain === 'reject') {
      throw E.outOfDomain(
        `policy '${policy.name}' only serves prompts like those its router was trained on; this one scored ${guard.score.toFixed(3)} against the guard threshold ${guard.threshold.toFixed(3)}`,
        'messages',
      );
    }
    const chosen = g.fallback as string;
    const timingsMs = { extract: t1 - t0, embed: embedMs, guard: guardMs, score: 0, decide: 0 };
    const out = decisionOf(policy, chosen, orderFrom(chosen, policy), 'guard_fallback', {
      guard,
      embedCacheHit,
      scoreCacheHit,
      candidates: [],
      timingsMs,
    });
    if (scoredOn !== undefined) out.scoredOn = scoredOn;
    return out;
  }
  const t4 = performance.now();
  const steer = input.state.steerFor(cfg);
  const steered = steer?.lambda();
  const d = decide({
    policy,
    backends: input.backends,
    scores,
    promptChars: text.length,
    lambda: steered,
    qualityBias: input.qualityBias,
    unavailable,
  });
  const t5 = performance.now();
  if (!input.dryRun) {
    // A request that sets its own bias says nothing about the policy's steady state.
    if (steer && input.qualityBias === undefined) {
      steer.observe(d.chosen, d.candidates.find((c) => c.backend === d.chosen)?.expectedCostUsd ?? 0, now);
    }
    if (sticky && conv && stickySkip === null) sticky.set(conv.key, d.chosen, now + cfg.sticky.ttl_s * 1000);
  }
  let skipped = d.skipped;
  if (stickySkip !== null && !skipped?.some((s) => s.backend === stickySkip.backend)) skipped = [stickySkip, ...(skipped ?? [])];
  const timingsMs = { extract: t1 - t0, embed: embedMs, guard: guardMs, score: scoreMs, decide: t5 - t4 };
  const out = decisionOf(policy, d.chosen, d.order, policy.router.type === 'fixed' ? 'fixed' : 'objective', {
    guard,
    embedCacheHit,
    scoreCacheHit,
    candidates: d.candidates,
    timingsMs,
  });
  out.lambda = cfg.objective.kind === 'utility' ? effectiveLambda({ policy, lambda: steered, qualityBias: input.qualityBias }) : null;
  if (skipped !== undefined && skipped.length > 0) out.skipped = skipped;
  if (scoredOn !== undefined) out.scoredOn = scoredOn;
  return out;
}

/** What scoring a prompt's text found: the guard's verdict, each candidate's score (none when the guard turned it away), stage times. */
export interface Scored {
  guard: GuardResult | null;
  scores: readonly CandidateScore[];
  embedCacheHit: boolean;
  embedMs: number;
  guardMs: number;
  scoreMs: number;
}

/**
 * Embed, guard and score one prompt text under a policy: the part of a decision that is a
 * function of the text and the request's metadata alone (so a scoring thread can run it too).
 */
export async function scoreText(
  policy: CompiledPolicy,
  text: string,
  meta: RouteQuery['meta'],
  cancel?: CancelSource,
  onEmbedding?: (embedding: Float32Array) => void,
): Promise<Scored> {
  let embedding: Float32Array | null = null;
  let guard: GuardResult | null = null;
  let embedCacheHit = false;
  let embedMs = 0;
  let guardMs = 0;
  let scoreMs = 0;
  const g = policy.guard;
  // A guard on one member of the policy's concat judges first: a prompt it turns away costs that
  // member's vector only (its timing is the guard's).
  if (g?.checkText !== undefined && policy.embedder !== null) {
    const tg = performance.now();
    guard = await g.checkText(text);
    guardMs = performance.now() - tg;
  }
  // After an early verdict the policy's vector is for the router (on a prompt let through) or for
  // online learning, which keeps every vector it was given before.
  const wanted = policy.router.needsEmbedding || g !== null;
  const still = guard === null || (guard.inDomain && policy.router.needsEmbedding) || onEmbedding !== undefined;
  if (wanted && still && policy.embedder !== null) {
    const te = performance.now();
    const r = await policy.embedder.embedCached(text, cancel);
    embedding = r.vec;
    embedCacheHit = r.hit;
    embedMs = performance.now() - te;
  }
  if (embedding !== null) onEmbedding?.(embedding);
  if (g !== null && guard === null && embedding !== null) {
    const tg = performance.now();
    guard = await g.check(embedding);
    guardMs = performance.now() - tg;
  }
  let scores: readonly CandidateScore[] = [];
  if (guard === null || guard.inDomain) {
    const ts = performance.now();
    scores = await policy.router.score({ text, embedding, candidates: policy.candidateNames, meta });
    scoreMs = performance.now() - ts;
  }
  return { guard, scores, embedCacheHit, embedMs, guardMs, scoreMs };
}
