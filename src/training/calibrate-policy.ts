// Calibrates a policy exactly as the gateway will run it: every prompt goes through the policy's own
// embedder, guard and router (routeRequest, dry run), and the objective's knob — lambda for utility,
// min_quality for threshold — is searched until the decisions hit a target share of one backend or a
// target expected cost. The answer is a value to paste into the YAML, not a protocol-specific score.
import type { Runtime } from '../runtime/compile.js';
import { routeRequest } from '../routers/engine.js';
import { decide, type ScoredCandidate } from '../routers/policy.js';
import { RoutingState } from '../routers/state.js';

export type CalibrationTarget = { kind: 'share'; backend: string; share: number } | { kind: 'cost'; usdPer1k: number };

export interface CalibrationResult {
  knob: 'lambda' | 'min_quality';
  value: number;
  share: Record<string, number>;
  usdPer1k: number;
  prompts: number;
  /** Prompts the guard sent to its fallback (or rejected), whatever the knob. */
  guarded: number;
}

interface Scored {
  promptChars: number;
  scores: ScoredCandidate[];
}

/** Scores every prompt once through the policy (embed, guard, router); the knob search reuses them. */
export async function scorePrompts(
  runtime: Runtime,
  policyName: string,
  prompts: readonly string[],
  onProgress?: (n: number) => void,
): Promise<{ scored: Scored[]; guarded: number }> {
  const policy = runtime.policies.get(policyName);
  if (!policy) throw new Error(`policy '${policyName}' is not in the config (policies: ${[...runtime.policies.keys()].join(', ')})`);
  const state = new RoutingState();
  const scored: Scored[] = [];
  let guarded = 0;
  let done = 0;
  for (const p of prompts) {
    const body = { model: policyName, messages: [{ role: 'user', content: p }] };
    const d = await routeRequest({ policy, backends: runtime.backends, body, meta: {}, headers: {}, state, dryRun: true });
    onProgress?.(++done);
    if (d.candidates.length === 0) {
      guarded++;
      continue;
    }
    scored.push({ promptChars: p.length, scores: [...d.candidates] });
  }
  return { scored, guarded };
}

function outcome(runtime: Runtime, policyName: string, scored: readonly Scored[], knob: 'lambda' | 'min_quality', value: number) {
  const policy = runtime.policies.get(policyName)!;
  const counts: Record<string, number> = {};
  let usd = 0;
  for (const s of scored) {
    const d =
      knob === 'lambda'
        ? decide({ policy, backends: runtime.backends, scores: s.scores, promptChars: s.promptChars, lambda: value })
        : decide({ policy, backends: runtime.backends, scores: s.scores, promptChars: s.promptChars, qualityBias: value });
    counts[d.chosen] = (counts[d.chosen] ?? 0) + 1;
    usd += d.candidates.find((c) => c.backend === d.chosen)?.expectedCostUsd ?? 0;
  }
  const n = Math.max(1, scored.length);
  const share = Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / n]));
  return { share, usdPer1k: (usd / n) * 1000 };
}

/**
 * Bisection on the knob. Both the target backend's share (when it is the expensive one) and the mean
 * cost fall as lambda rises and rise as min_quality rises, so the search is monotone in practice.
 */
export function calibrateKnob(
  runtime: Runtime,
  policyName: string,
  scored: readonly Scored[],
  guarded: number,
  target: CalibrationTarget,
): CalibrationResult {
  const policy = runtime.policies.get(policyName)!;
  const knob = policy.config.objective.kind === 'utility' ? 'lambda' : 'min_quality';
  if (target.kind === 'share' && !policy.candidateNames.includes(target.backend)) {
    throw new Error(`--backend '${target.backend}' is not a candidate of policy '${policyName}' (${policy.candidateNames.join(', ')})`);
  }
  const measure = (v: number) => {
    const o = outcome(runtime, policyName, scored, knob, v);
    return target.kind === 'share' ? (o.share[target.backend] ?? 0) : o.usdPer1k;
  };
  const want = target.kind === 'share' ? target.share : target.usdPer1k;
  // lambda: search log-space over [1e-6, 1e9]; the measured quantity falls as lambda grows.
  // min_quality: search [0, 1]; the quantity grows with the bar when it is the expensive backend's share / cost.
  let lo = knob === 'lambda' ? Math.log(1e-6) : 0;
  let hi = knob === 'lambda' ? Math.log(1e9) : 1;
  const at = (x: number) => (knob === 'lambda' ? Math.exp(x) : x);
  const falling = measure(at(lo)) >= measure(at(hi));
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    const m = measure(at(mid));
    if (m > want === falling) lo = mid;
    else hi = mid;
  }
  // Decisions jump at the boundary (many prompts can share one cost/quality ratio): take whichever side
  // of the final bracket lands nearer the target.
  const value = Math.abs(measure(at(lo)) - want) <= Math.abs(measure(at(hi)) - want) ? at(lo) : at(hi);
  const o = outcome(runtime, policyName, scored, knob, value);
  return { knob, value, share: o.share, usdPer1k: o.usdPer1k, prompts: scored.length + guarded, guarded };
}
