// A valid RequestRecord (checked against the schema), with overrides, for telemetry tests.
import { randomUUID } from 'node:crypto';
import { RequestRecord } from '../../src/telemetry/record.js';

export function makeRecord(over: Partial<RequestRecord> = {}): RequestRecord {
  return RequestRecord.parse({
    id: randomUUID(),
    ts: Date.now(),
    endpoint: 'chat',
    model: 'auto',
    stream: false,
    policy: 'auto',
    backend: 'weak',
    router: 'knn',
    embedder: 'lexical',
    reason: 'objective',
    candidates: [
      { backend: 'weak', quality: 0.7, expected_cost_usd: 0.0001, utility: 0.6 },
      { backend: 'strong', quality: 0.9, expected_cost_usd: 0.001, utility: 0.5 },
    ],
    guard: null,
    attempts: [{ backend: over.backend ?? 'weak', status: 200, error: null, ms: 12 }],
    prompt_tokens: 100,
    completion_tokens: 20,
    tokens_estimated: false,
    cost_usd: 0.0001,
    counterfactual_cost_usd: 0.001,
    total_ms: 15,
    ttft_ms: 13,
    upstream_ms: 12,
    route_ms: 1,
    status: 200,
    outcome: 'ok',
    error: null,
    key_id: null,
    generation: 1,
    shadow: null,
    prompt: null,
    ...over,
  });
}
