// What each telemetry sink costs per finished record, in process: CPU µs per record through the `finish`
// stage, each sink alone and all four together (the gateway's "telemetry on"). The Redis sink writes to
// REDIS_URL (default redis://127.0.0.1:6379) under a throwaway key prefix, deleted afterwards; with it, the
// redis-server's own CPU per record is read from INFO cpu (the whole server: run it on an idle Redis).
// Records are published at RATE per second (default 10,000), so batches form as they do in a server.
// Run: npx tsc -p tsconfig.json && node dist/bench/sinks.js
import { openSync } from 'node:fs';
import { Redis } from 'ioredis';
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
/** Records per second published: about what the gateway serves at c=16 on the bench machine. */
const RATE = Number(process.env.RATE ?? 10_000);
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
    attempts: [{ backend: 'mock', status: 200, error: null, ms: 0.665 }],
    prompt_tokens: 12,
    completion_tokens: 40,
    tokens_estimated: false,
    cost_usd: 0.0000258,
    counterfactual_cost_usd: 0.0000258,
    // Durations as the pipeline records them: to the microsecond (src/server/record-builder.ts).
    total_ms: 1.008,
    ttft_ms: 0.893,
    upstream_ms: 0.672,
    route_ms: 0.005,
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
// A prefix per sink made: the same record ids written twice under one prefix would be skipped as duplicates.
let sinksMade = 0;
const redis = () => new RedisSink({ ...RedisTelemetryOptions.parse({ key_prefix: `${prefix}${sinksMade++}:` }), url });

const admin = new Redis(url, { lazyConnect: true });
/** redis-server's CPU seconds (user + sys, all its threads) from INFO cpu. */
async function redisCpu(): Promise<number> {
  const info = await admin.info('cpu');
  const field = (k: string): number => Number(new RegExp(`^${k}:([0-9.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  return field('used_cpu_user') + field('used_cpu_sys');
}

/** Removes what the bench wrote (records by id, stream, totals). */
async function deletePrefix(): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length > 0) await admin.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}

/** The loop's own CPU per record (publishing to no sink, pacing): subtracted from every reading. */
let floor = 0;

async function measure(name: string, sinks: TelemetrySink[]): Promise<number> {
  const stages = new Stages();
  for (const s of sinks) s.attach(stages);
  const records = Array.from({ length: 1000 }, (_, i) => record(i));
  const withRedis = sinks.some((s) => s instanceof RedisSink);
  const r0 = withRedis ? await redisCpu() : 0;
  const t0 = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < N; i++) {
    stages.finish.publish(i < 1000 ? records[i]! : { ...records[i % 1000]!, id: `bench-${i}` });
    if (i % 500 === 499) {
      // Paced like a server at RATE requests/s, so timers (batched writes) run as they would there; unpaced,
      // the Redis buffer overflows and dropped records look free.
      const ahead = (i + 1) / RATE - (performance.now() - start) / 1000;
      await new Promise((r) => (ahead > 0.001 ? setTimeout(r, ahead * 1000) : setImmediate(r)));
    }
  }
  await Promise.all(sinks.map((s) => s.flush(30_000)));
  const t = process.cpuUsage(t0);
  const server = withRedis ? `, redis-server ${((((await redisCpu()) - r0) * 1e6) / N).toFixed(2)} µs` : '';
  const dropped = sinks.reduce((n, s) => n + s.stats().dropped, 0);
  const note = dropped > 0 ? ` (${dropped} dropped: not a fair reading)` : '';
  const us = (t.user + t.system) / N;
  if (sinks.length > 0) console.log(`${name.padEnd(12)} ${(us - floor).toFixed(2).padStart(6)} µs CPU per record${server}${note}`);
  await Promise.all(sinks.map((s) => s.close()));
  return us;
}

floor = await measure('no sink', []);
console.log(`(the paced loop alone: ${floor.toFixed(2)} µs CPU per record, subtracted below)`);
await measure('access log', [devNull()]);
await measure('memory', [new MemorySink(1000)]);
await measure('prometheus', [prometheus()]);
await measure('redis', [redis()]);
await measure('all four', [devNull(), new MemorySink(1000), prometheus(), redis()]);
await deletePrefix();
admin.disconnect();
