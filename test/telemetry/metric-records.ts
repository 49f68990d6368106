// Valid RequestRecords for the metrics tests: every record passes the zod schema, so a field the schema
// renames breaks these tests rather than silently feeding the sink something the pipeline never sends.
import type { RequestRecord } from '../../src/telemetry/record.js';
import { makeRecord as baseRecord } from './records.js';

let seq = 0;

/** The shared factory with the figures these tests sum: sequential ids, a guard verdict, round costs and times. */
export function makeRecord(over: Partial<RequestRecord> = {}): RequestRecord {
  seq++;
  return baseRecord({
    id: `req-${seq}`,
    ts: 1_700_000_000_000 + seq,
    embedder: 'minilm',
    candidates: [
      { backend: 'weak', quality: 0.7, expected_cost_usd: 0.001, utility: 0.6 },
      { backend: 'strong', quality: 0.9, expected_cost_usd: 0.01, utility: 0.5 },
    ],
    guard: { score: 0.8, threshold: 0.5, in_domain: true },
    attempts: [{ backend: over.backend ?? 'weak', status: 200, error: null, ms: 40 }],
    cost_usd: 0.001,
    counterfactual_cost_usd: 0.01,
    total_ms: 50,
    ttft_ms: 45,
    upstream_ms: 40,
    route_ms: 2,
    ...over,
  });
}

/** A record whose backends failed over: first `from` (5xx) then `to` (ok). */
export function fallbackRecord(from: string, to: string, over: Partial<RequestRecord> = {}): RequestRecord {
  return makeRecord({
    backend: to,
    outcome: 'fallback_ok',
    attempts: [
      { backend: from, status: 503, error: 'upstream_unavailable', ms: 10 },
      { backend: to, status: 200, error: null, ms: 30 },
    ],
    ...over,
  });
}
