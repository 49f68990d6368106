// One suite over every telemetry sink: each subscribes through the stages, takes every finished record
// without throwing or blocking, reports honest stats, stops on detach and closes cleanly. Redis is real.
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { AccessLogSink } from '../../src/telemetry/access-log.js';
import { MemorySink } from '../../src/telemetry/memory-sink.js';
import { PrometheusSink } from '../../src/telemetry/prometheus-sink.js';
import { RedisSink } from '../../src/telemetry/redis-sink.js';
import type { TelemetrySink } from '../../src/telemetry/sink.js';
import { Stages } from '../../src/telemetry/stages.js';
import { deletePrefix, REDIS_URL, uniquePrefix } from '../helpers/redis.js';
import { makeRecord } from '../telemetry/records.js';

const admin = new Redis(REDIS_URL);
const prefixes: string[] = [];
afterAll(async () => {
  for (const p of prefixes) await deletePrefix(admin, p);
  admin.disconnect();
});

interface Case {
  name: string;
  make(): { sink: TelemetrySink; received(): Promise<number> };
}

const CASES: Case[] = [
  {
    name: 'access log',
    make() {
      const lines: string[] = [];
      return { sink: new AccessLogSink({ write: (l: string) => lines.push(l) }), received: async () => lines.length };
    },
  },
  {
    name: 'memory',
    make() {
      const sink = new MemorySink(100);
      return { sink, received: async () => sink.records.length };
    },
  },
  {
    name: 'prometheus',
    make() {
      const sink = new PrometheusSink();
      sink.gateway.setKnown({ policies: ['auto'], backends: ['weak', 'strong'] });
      return {
        sink,
        received: async () => {
          const text = await sink.metrics();
          return text
            .split('\n')
            .filter((l) => l.startsWith('signalman_requests_total{'))
            .reduce((s, l) => s + Number(l.split(' ').at(-1)), 0);
        },
      };
    },
  },
  {
    name: 'redis',
    make() {
      const prefix = uniquePrefix();
      prefixes.push(prefix);
      const sink = new RedisSink({ url: REDIS_URL, key_prefix: prefix, flush_interval_ms: 10 });
      return { sink, received: async () => admin.xlen(`${prefix}records`) };
    },
  },
];

// Records as the pipeline makes them, the awkward ones included: refused before routing, aborted, shadowed.
const records = () => [
  makeRecord(),
  makeRecord({
    policy: null,
    backend: null,
    chosen: null,
    router: null,
    reason: null,
    candidates: [],
    attempts: [],
    status: 415,
    outcome: 'invalid_request',
    prompt_tokens: null,
    completion_tokens: null,
    cost_usd: 0,
    counterfactual_cost_usd: 0,
    ttft_ms: null,
  }),
  makeRecord({ outcome: 'client_abort', status: 0, attempts: [{ backend: 'weak', status: null, error: 'aborted', ms: 3 }] }),
  makeRecord({
    stream: true,
    tokens_estimated: true,
    shadow: { policy: 'cheap', chosen: 'strong', agree: false, cost_usd: 0.01, counterfactual_cost_usd: 0.01, error: null },
  }),
  makeRecord({ policy: 'not-in-config', backend: 'nor-this', model: 'x'.repeat(500) }),
];

describe.each(CASES)('telemetry sink: $name', (c) => {
  it('takes every record from the finish stage, synchronously and without throwing', async () => {
    const { sink, received } = c.make();
    const stages = new Stages();
    sink.attach(stages);
    const batch = records();
    const t0 = performance.now();
    for (const r of batch) expect(() => stages.finish.publish(r)).not.toThrow();
    expect(performance.now() - t0).toBeLessThan(50); // nothing waited on I/O
    await sink.flush(2_000);
    expect(await received()).toBe(batch.length);
    const st = sink.stats();
    expect(st).toEqual({ buffered: 0, dropped: 0, lastError: null });

    sink.detach(stages);
    stages.finish.publish(makeRecord());
    await sink.flush(500);
    expect(await received()).toBe(batch.length);
    await expect(sink.close()).resolves.toBeUndefined();
  });
});
