// What each telemetry sink costs per finished record, in process: CPU µs per record through the `finish`
// stage, each sink alone and all four together (the gateway's "telemetry on"). The Redis sink writes to
// REDIS_URL (default redis://127.0.0.1:6379) under a throwaway key prefix, deleted afterwards.
// Run: npx tsc -p tsconfig.json && node dist/bench/sinks.js
import { openSync } from 'node:fs';
import { RedisTelemetryOptions } from '../src/config/schema.js';
import { AccessLogSink } from '../src/telemetry/access-log.js';
import { BatchedLineWriter } from '../src/telemetry/line-writer.js';
import { MemorySink } from '../src/telemetry/memory-sink.js';
import { PrometheusSink } from '../src/telemetry/prometheus-sink.js';
import { RequestRecord } from '../src/telemetry/record.js';
import { RedisSink } from '../src/telemetry/redis-sink.js';
import type { TelemetrySink } from '../src/telemetry/sink.js';
import { Stages } from '../src/telemetry/stages.js';

const N = 50_000;
const url = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const prefix = `bench-sinks:${process.pid}:`;

// A pass-through request's record, as the pipeline makes it (validated, so it cannot drift from the schema).
const record = (i: number): RequestRecord =>
  RequestRecord.parse({
    id: `bench-${i}`,
    ts: Date.now(),
    endpoint: 'chat',
    model: 'mock',
    stream: false,
    policy: null,
    backend: 'mock',
    router: null,
    embedder: null,
    reason: null,
    candidates: [],
    guard: null,
    attempts: [{ backend: 'mock', status: 200, error: null, ms: 1.2 }],
    prompt_tokens: 12,
    completion_tokens: 40,
    tokens_estimated: false,
    cost_usd: 0.0000258,
    counterfactual_cost_usd: 0.0000258,
    total_ms: 1.5,
    ttft_ms: 1.4,
    upstream_ms: 1.2,
    route_ms: 0.01,
    status: 200,
    outcome: 'ok',
    error: null,
    key_id: null,
    generation: 1,
    shadow: null,
    prompt: null,
  });

const devNull = () => new AccessLogSink(new BatchedLineWriter({ fd: openSync('/dev/null', 'w') }));
const prometheus = () => {
  const p = new PrometheusSink();
  p.gateway.setKnown({ policies: [], backends: ['mock'] });
  return p;
};
const redis = () => new RedisSink({ ...RedisTelemetryOptions.parse({ key_prefix: prefix }), url });

async function measure(name: string, sinks: TelemetrySink[]): Promise<void> {
  const stages = new Stages();
  for (const s of sinks) s.attach(stages);
  const records = Array.from({ length: 1000 }, (_, i) => record(i));
  const t0 = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    stages.finish.publish(i < 1000 ? records[i]! : { ...records[i % 1000]!, id: `bench-${i}` });
    if (i % 500 === 499) await new Promise((r) => setImmediate(r)); // let timers (batched writes) run, as in a server
  }
  await Promise.all(sinks.map((s) => s.flush(30_000)));
  const t = process.cpuUsage(t0);
  console.log(`${name.padEnd(12)} ${((t.user + t.system) / N).toFixed(2).padStart(6)} µs CPU per record`);
  await Promise.all(sinks.map((s) => s.close()));
}

await measure('access log', [devNull()]);
await measure('memory', [new MemorySink(1000)]);
await measure('prometheus', [prometheus()]);
await measure('redis', [redis()]);
await measure('all four', [devNull(), new MemorySink(1000), prometheus(), redis()]);
