// decide(): pure — no I/O, no clock — so the objective is easy to table-test.
import type { CompiledBackend, CompiledPolicy } from '../config/compile.js';
import type { CandidateScore, GuardVerdict } from './types.js';

export type DecisionReason = 'objective' | 'guard_fallback' | 'fixed';

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
  guard: GuardVerdict | null;
  embedder: string | null;
  router: string;
  embedCacheHit: boolean;
  timingsMs: { extract: number; embed: number; guard: number; score: number; decide: number };
}

export interface DecideInput {
  policy: CompiledPolicy;
  backends: ReadonlyMap<string, CompiledBackend>;
  scores: readonly CandidateScore[];
  promptChars: number;
  /** Per-request override of the objective's lambda (x-signalman-quality-bias), already bounded. */
  lambda?: number;
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
    if (!policy.candidateNames.includes(s.backend)) throw new Error(`router '${policy.router.type}' scored '${s.backend}', not a candidate`);
    if (!(s.quality >= 0 && s.quality <= 1)) throw new Error(`router '${policy.router.type}' gave '${s.backend}' quality ${s.quality}, outside 0..1`);
  }
}

export function decide(input: DecideInput): Pick<Decision, 'chosen' | 'order' | 'candidates'> {
  const { policy, backends, scores } = input;
  const promptTokens = estimateTokens(input.promptChars);
  const outTokens = policy.config.expected_output_tokens;
  const objective = policy.config.objective;
  const lambda = input.lambda ?? (objective.kind === 'utility' ? objective.lambda : 0);
  const candidates: ScoredCandidate[] = scores.map((s) => {
    const cost = expectedCostUsd(backends.get(s.backend) as CompiledBackend, promptTokens, outTokens);
    return { ...s, expectedCostUsd: cost, utility: s.quality - lambda * cost };
  });

  let ranked: ScoredCandidate[];
  if (objective.kind === 'threshold' && input.lambda === undefined) {
    // Cheapest candidate that clears the bar; if none does, the best predicted quality.
    const clear = candidates.filter((c) => c.quality >= objective.min_quality).sort((a, b) => a.expectedCostUsd - b.expectedCostUsd || b.quality - a.quality);
    const rest = candidates.filter((c) => c.quality < objective.min_quality).sort((a, b) => b.quality - a.quality);
    ranked = [...clear, ...rest];
  } else {
    // Stable: ties keep the policy's candidate order.
    ranked = [...candidates].sort((a, b) => b.utility - a.utility);
  }
  const chosen = (ranked[0] as ScoredCandidate).backend;
  // Only the policy's declared fallbacks follow: ops decide which backends may absorb failures.
  const order = [chosen];
  for (const f of policy.fallbacks) if (f !== chosen) order.push(f);
  return { chosen, order, candidates };
}
