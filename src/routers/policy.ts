// decide(): pure — no I/O, no clock — so the objective is easy to table-test.
import type { CompiledBackend } from '../upstream/backend.js';
import type { SkipWhy } from '../upstream/breaker.js';
import type { Skipped } from '../upstream/health.js';
import type { CompiledPolicy } from './compile.js';
import type { CandidateScore, GuardResult } from './types.js';

export type DecisionReason = 'objective' | 'guard_fallback' | 'fixed' | 'sticky' | 'no_text';

export interface ScoredCandidate extends CandidateScore {
  expectedCostUsd: number;
  utility: number;
}

export interface Decision {
  policy: string;
  chosen: string;
  /** Chosen first, then the policy's fallbacks in order; no repeats. */
  order: readonly string[];
  reason: DecisionReason;
  candidates: readonly ScoredCandidate[];
  guard: GuardResult | null;
  /** The lambda the utility objective used (steered, per request, or configured); null for threshold. */
  lambda?: number | null;
  embedder: string | null;
  router: string;
  embedCacheHit: boolean;
  /** The guard verdict and scores came from the policy's per-text cache (no embed, guard or score ran). */
  scoreCacheHit: boolean;
  timingsMs: { extract: number; embed: number; guard: number; score: number; decide: number };
  /**
   * Backends left out because they could not take the request (circuit breaker open, waiting out an
   * upstream retry-after, or saturated with on_overload: next_best); absent when none was.
   */
  skipped?: readonly Skipped[];
  /** 'worker': embed, guard and score ran on a scoring thread (server.routing_threads); absent: on the event loop, or nothing ran. */
  scoredOn?: 'worker';
}

export interface DecideInput {
  policy: CompiledPolicy;
  backends: ReadonlyMap<string, CompiledBackend>;
  scores: readonly CandidateScore[];
  promptChars: number;
  /** The utility objective's lambda when steered online; else the configured one is used. */
  lambda?: number;
  /**
   * Per-request bias toward quality in [0, 1] (x-signalman-quality-bias). Utility: lambda is scaled by
   * (1 - b) / b, so 0.5 keeps it, 1 ignores cost, 0 takes the cheapest. Threshold: b is the quality bar.
   */
  qualityBias?: number;
  /** Why a candidate cannot take the request now (null: it can); the best one that can is chosen. */
  unavailable?: (backend: string) => SkipWhy | null;
}

/** Rough token estimate: ~4 characters per token for English text (good enough to rank costs). */
export const estimateTokens = (chars: number): number => Math.ceil(chars / 4);

export function expectedCostUsd(b: CompiledBackend, promptTokens: number, outputTokens: number): number {
  return (promptTokens * b.config.price.input_per_mtok + outputTokens * b.config.price.output_per_mtok) / 1e6;
}

export function checkScores(policy: CompiledPolicy, scores: readonly CandidateScore[]): void {
  if (scores.length !== policy.candidateNames.length) {
    throw new Error(`router '${policy.router.type}' returned ${scores.length} scores for ${policy.candidateNames.length} candidates`);
  }
  for (const s of scores) {
    if (!policy.candidateNames.includes(s.backend))
      throw new Error(`router '${policy.router.type}' scored '${s.backend}', not a candidate`);
    if (!(s.quality >= 0 && s.quality <= 1))
      throw new Error(`router '${policy.router.type}' gave '${s.backend}' quality ${s.quality}, outside 0..1`);
  }
}

/** The lambda a utility decision uses: steered or configured, then scaled by the request's quality bias. */
export function effectiveLambda(input: Pick<DecideInput, 'policy' | 'lambda' | 'qualityBias'>): number {
  const objective = input.policy.config.objective;
  const base = input.lambda ?? (objective.kind === 'utility' ? objective.lambda : 0);
  const b = input.qualityBias;
  if (b === undefined) return base;
  if (b >= 1) return 0;
  if (b <= 0) return Number.MAX_VALUE;
  return (base > 0 ? base : 1) * ((1 - b) / b);
}

/** Chosen first, then only the policy's declared fallbacks: ops decide which backends may absorb failures. */
export function orderFrom(chosen: string, policy: CompiledPolicy): string[] {
  const order = [chosen];
  for (const f of policy.fallbacks) if (f !== chosen) order.push(f);
  return order;
}

export function decide(input: DecideInput): Pick<Decision, 'chosen' | 'order' | 'candidates' | 'skipped'> {
  const { policy, backends, scores } = input;
  const promptTokens = estimateTokens(input.promptChars);
  const outTokens = policy.config.expected_output_tokens;
  const objective = policy.config.objective;
  const lambda = effectiveLambda(input);
  const candidates: ScoredCandidate[] = scores.map((s) => {
    const cost = expectedCostUsd(backends.get(s.backend) as CompiledBackend, promptTokens, outTokens);
    // Named fields, not `{ ...s }`: a spread of router-made objects took ~1.5 µs each here (V8's slow clone path).
    return { backend: s.backend, quality: s.quality, evidence: s.evidence, expectedCostUsd: cost, utility: s.quality - lambda * cost };
  });

  let ranked: ScoredCandidate[];
  if (objective.kind === 'threshold') {
    // Cheapest candidate that clears the bar; if none does, the best predicted quality.
    const bar = input.qualityBias ?? objective.min_quality;
    const clear = candidates.filter((c) => c.quality >= bar).sort((a, b) => a.expectedCostUsd - b.expectedCostUsd || b.quality - a.quality);
    const rest = candidates.filter((c) => c.quality < bar).sort((a, b) => b.quality - a.quality);
    ranked = [...clear, ...rest];
  } else {
    // Stable: ties keep the policy's candidate order.
    ranked = [...candidates].sort((a, b) => b.utility - a.utility);
  }
  let chosen = (ranked[0] as ScoredCandidate).backend;
  const unavailable = input.unavailable;
  if (unavailable === undefined) return { chosen, order: orderFrom(chosen, policy), candidates };
  // The best candidate that can take the request; the ones ranked above it are said to be skipped.
  const skipped: Skipped[] = [];
  for (const c of ranked) {
    const why = unavailable(c.backend);
    if (why === null) {
      chosen = c.backend;
      break;
    }
    skipped.push({ backend: c.backend, why });
  }
  // None can: the best one stays chosen, and resolve.ts decides (queue on a full pool, or panic mode).
  return { chosen, order: orderFrom(chosen, policy), candidates, skipped };
}
