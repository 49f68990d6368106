import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisTelemetryOptions } from '../../src/config/schema.js';
import { RedisSink, type SinkLogger } from '../../src/telemetry/redis-sink.js';
import { redisKeys } from '../../src/telemetry/redis-keys.js';
import { Stages } from '../../src/telemetry/stages.js';
import { makeRecord } from './records.js';
import { blackHole, deletePrefix, freePort, PrivateRedis, REDIS_URL, uniquePrefix, waitFor } from '../helpers/redis.js';

const TS = Date.UTC(2026, 11, 6, 10, 30, 15); // 2026-12-06 10:30:15 UTC
let admin: Redis;
const prefixes: string[] = [];
const sinks: RedisSink[] = [];

function newSink(opts: Partial<RedisTelemetryOptions> = {}, logger?: SinkLogger): { sink: RedisSink; prefix: string } {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  const sink = new RedisSink({ url: REDIS_URL, key_prefix: prefix, flush_interval_ms: 20, ...opts }, logger);
  sinks.push(sink);
  return { sink, prefix };
}

function recordingLogger(): SinkLogger & { lines: Array<[string, string]> } {
  const lines: Array<[string, string]> = [];
  return {
    lines,
    info: (_o, msg) => void lines.push(['info', msg]),
    warn: (_o, msg) => void lines.push(['warn', msg]),
    error: (_o, msg) => void lines.push(['error', msg]),
  };
}

beforeAll(() => {
  admin = new Redis(REDIS_URL);
});
afterEach(async () => {
  await Promise.all(sinks.splice(0).map((s) => s.close()));
  for (const p of prefixes.splice(0)) await deletePrefix(admin, p);
});
afterAll(async () => {
  await admin.quit();
});

describe('RedisSink writes', () => {
  it('writes each record to the stream, its req hash (with TTL) and the minute and day totals', async () => {
    const { sink, prefix } = newSink();
    const stages = new Stages();
    sink.attach(stages);
    const a = makeRecord({
      ts: TS,
      policy: 'auto',
      backend: 'weak',
      prompt_tokens: 100,
      completion_tokens: 20,
      cost_usd: 0.1,
      counterfactual_cost_usd: 0.3,
    });
    const b = makeRecord({
      ts: TS + 1000,
      policy: 'auto',
      backend: 'strong',
      outcome: 'fallback_ok',
      prompt_tokens: 50,
      completion_tokens: 10,
      cost_usd: 0.2,
      counterfactual_cost_usd: 0.3,
    });
    const c = makeRecord({
      ts: TS + 2000,
      policy: null,
      backend: null,
      outcome: 'rejected',
      status: 403,
      prompt_tokens: null,
      completion_tokens: null,
      cost_usd: 0,
      counterfactual_cost_usd: 0,
    });
    for (const r of [a, b, c]) stages.finish.publish(r);
    sink.detach(stages);
    await sink.flush(5_000);
    expect(sink.stats()).toEqual({ buffered: 0, dropped: 0, lastError: null });
    expect(sink.written).toBe(3);
    expect(sink.flushes).toBeGreaterThanOrEqual(1);

    const k = redisKeys(prefix);
    const entries = await admin.xrange(k.records, '-', '+');
    expect(entries.map(([, f]) => f[1])).toEqual([a.id, b.id, c.id]);
    expect(entries[0]?.[1]).toEqual(['id', a.id, 'rec', JSON.stringify(a)]);

    expect(await admin.get(k.req(a.id))).toBe(JSON.stringify(a));
    expect(JSON.parse((await admin.get(k.req(c.id))) as string)).toEqual(c);
    const ttl = await admin.ttl(k.req(a.id));
    expect(ttl).toBeGreaterThan(86_400 - 60);
    expect(ttl).toBeLessThanOrEqual(86_400);

    const minuteKey = `${prefix}totals:m:202612061030`;
    const dayKey = `${prefix}totals:d:20261206`;
    expect(k.totalsMinute(TS)).toBe(minuteKey);
    for (const key of [minuteKey, dayKey]) {
      const t = await admin.hgetall(key);
      expect(Number(t['all|*|requests'])).toBe(3);
      expect(Number(t['all|*|prompt_tokens'])).toBe(150);
      expect(Number(t['all|*|completion_tokens'])).toBe(30);
      expect(Number(t['all|*|cost_usd'])).toBeCloseTo(0.3, 12);
      expect(Number(t['all|*|counterfactual_cost_usd'])).toBeCloseTo(0.6, 12);
      expect(Number(t['all|*|errors'])).toBe(1);
      expect(Number(t['all|*|outcome:ok'])).toBe(1);
      expect(Number(t['all|*|outcome:fallback_ok'])).toBe(1);
      expect(Number(t['all|*|outcome:rejected'])).toBe(1);
      expect(Number(t['policy|auto|requests'])).toBe(2);
      expect(Number(t['policy|auto|cost_usd'])).toBeCloseTo(0.3, 12);
      expect(t['policy|auto|errors']).toBeUndefined();
      expect(Number(t['policy|-|requests'])).toBe(1);
      expect(Number(t['policy|-|errors'])).toBe(1);
      expect(Number(t['backend|weak|prompt_tokens'])).toBe(100);
      expect(Number(t['backend|strong|completion_tokens'])).toBe(10);
      expect(Number(t['backend|-|outcome:rejected'])).toBe(1);
      expect(Number(t['route|auto>weak|requests'])).toBe(1);
      expect(Number(t['route|auto>strong|requests'])).toBe(1);
      expect(Number(t['route|->-|requests'])).toBe(1);
    }
    const mttl = await admin.ttl(minuteKey);
    expect(mttl).toBeGreaterThan(48 * 3600 - 60);
    expect(await admin.ttl(dayKey)).toBeGreaterThan(399 * 86_400);
  });

  it('does not double count a record sent again (retried batch)', async () => {
    const { sink, prefix } = newSink();
    const r = makeRecord({ ts: TS, cost_usd: 0.25, counterfactual_cost_usd: 0.5 });
    sink.push(r);
    sink.push(r);
    await sink.flush(5_000);
    sink.push(r);
    await sink.flush(5_000);
    expect(sink.written).toBe(1);
    expect(sink.duplicates).toBe(2);
    const k = redisKeys(prefix);
    expect(await admin.xlen(k.records)).toBe(1);
    const t = await admin.hgetall(k.totalsDay(TS));
    expect(t['all|*|requests']).toBe('1');
    expect(Number(t['all|*|cost_usd'])).toBe(0.25);
    expect(Number(t['all|*|counterfactual_cost_usd'])).toBe(0.5);
  });

  it('sums a batch that meets records already written from the new records alone (the retry path)', async () => {
    // Two minutes, routed and unrouted, ok and failed, null tokens: every kind of totals field.
    const recs = [
      makeRecord({ ts: TS, policy: 'auto', backend: 'weak', prompt_tokens: 100, completion_tokens: 20, cost_usd: 0.1 }),
      makeRecord({ ts: TS + 1, policy: 'auto', backend: 'strong', outcome: 'fallback_ok', cost_usd: 0.2, counterfactual_cost_usd: 0.3 }),
      makeRecord({
        ts: TS + 2,
        policy: null,
        backend: null,
        outcome: 'rejected',
        status: 403,
        prompt_tokens: null,
        completion_tokens: null,
      }),
      makeRecord({ ts: TS + 60_000, policy: 'auto', backend: 'weak', outcome: 'timeout', status: 504, cost_usd: 0.05 }),
      makeRecord({ ts: TS + 60_001, policy: 'other', backend: 'weak', prompt_tokens: 7, completion_tokens: 3, cost_usd: 0.0000258 }),
    ];
    const once = newSink();
    recs.forEach((r) => once.sink.push(r));
    await once.sink.flush(5_000);
    const twice = newSink();
    twice.sink.push(recs[0]!);
    twice.sink.push(recs[3]!);
    await twice.sink.flush(5_000);
    recs.forEach((r) => twice.sink.push(r)); // one batch: two records already there, three new
    await twice.sink.flush(5_000);
    expect(twice.sink.written).toBe(5);
    expect(twice.sink.duplicates).toBe(2);

    const a = redisKeys(once.prefix);
    const b = redisKeys(twice.prefix);
    expect((await admin.xrange(b.records, '-', '+')).map(([, f]) => f[1])).toEqual([
      recs[0]!.id,
      recs[3]!.id,
      recs[1]!.id,
      recs[2]!.id,
      recs[4]!.id,
    ]);
    expect(await admin.get(b.req(recs[2]!.id))).toBe(JSON.stringify(recs[2]));
    for (const [ka, kb] of [
      [a.totalsDay(TS), b.totalsDay(TS)],
      [a.totalsMinute(TS), b.totalsMinute(TS)],
      [a.totalsMinute(TS + 60_000), b.totalsMinute(TS + 60_000)],
    ] as const) {
      const ta = await admin.hgetall(ka);
      const tb = await admin.hgetall(kb);
      expect(Object.keys(tb).sort()).toEqual(Object.keys(ta).sort());
      for (const f of Object.keys(ta)) expect(Number(tb[f])).toBeCloseTo(Number(ta[f]), 12);
      expect(await admin.ttl(kb)).toBeGreaterThan(0);
    }
    const day = await admin.hgetall(a.totalsDay(TS));
    expect(day['all|*|requests']).toBe('5');
    expect(day['all|*|errors']).toBe('2');
    expect(day['route|->-|outcome:rejected']).toBe('1');
    expect(Number(day['policy|auto|cost_usd'])).toBeCloseTo(0.35, 12);
    expect(day['backend|weak|prompt_tokens']).toBe('207');
    expect((await admin.hgetall(a.totalsMinute(TS + 60_000)))['all|*|requests']).toBe('2');
  });

  it('caps the stream near stream_max_len', async () => {
    const { sink, prefix } = newSink({ stream_max_len: 10 });
    for (let i = 0; i < 500; i++) sink.push(makeRecord({ ts: TS }));
    await sink.flush(10_000);
    expect(sink.written).toBe(500);
    // MAXLEN ~ trims whole macro nodes (100 entries by default): far below 500, at least 10.
    const len = await admin.xlen(redisKeys(prefix).records);
    expect(len).toBeGreaterThanOrEqual(10);
    expect(len).toBeLessThan(500);
  });
});

describe('RedisSink when Redis is unreachable', () => {
  it('buffers without throwing against a closed port, and flush() returns by its deadline', async () => {
    const log = recordingLogger();
    const { sink } = newSink({ url: 'redis://127.0.0.1:1' }, log);
    const stages = new Stages();
    sink.attach(stages);
    for (let i = 0; i < 50; i++) expect(() => stages.finish.publish(makeRecord())).not.toThrow();
    expect(sink.stats().buffered).toBe(50);
    const t0 = Date.now();
    await sink.flush(200);
    expect(Date.now() - t0).toBeLessThan(600);
    expect(sink.stats().buffered).toBe(50);
    await waitFor(() => log.lines.length > 0, 3_000, 'the down log');
    expect(log.lines.filter(([, m]) => m.includes('unavailable'))).toHaveLength(1);
    expect(sink.stats().lastError).not.toBeNull();
    sink.detach(stages);
  });

  it('counts drops exactly past buffer_max_records (the new record is dropped)', async () => {
    const log = recordingLogger();
    const { sink } = newSink({ url: 'redis://127.0.0.1:1', buffer_max_records: 10 }, log);
    for (let i = 0; i < 25; i++) sink.push(makeRecord());
    expect(sink.stats()).toMatchObject({ buffered: 10, dropped: 15 });
    await sink.close();
    // Drops are logged as a count, not per record.
    expect(log.lines.filter(([, m]) => m.includes('dropped'))).toEqual([['warn', 'redis telemetry: records dropped']]);
  });

  it('never blocks the handler against a server that accepts TCP and never answers', async () => {
    const hole = await blackHole();
    try {
      const { sink } = newSink({ url: `redis://127.0.0.1:${hole.port}`, command_timeout_ms: 300 });
      const stages = new Stages();
      sink.attach(stages);
      await new Promise((r) => setTimeout(r, 100)); // connected at TCP level, ready check pending
      const t0 = performance.now();
      for (let i = 0; i < 1000; i++) stages.finish.publish(makeRecord());
      expect(performance.now() - t0).toBeLessThan(200);
      expect(sink.stats().buffered).toBe(1000);
      const t1 = Date.now();
      await sink.flush(400);
      expect(Date.now() - t1).toBeLessThan(900);
      expect(sink.stats().buffered).toBe(1000);
      sink.detach(stages);
      const t2 = Date.now();
      await sink.close();
      expect(Date.now() - t2).toBeLessThan(3_000);
    } finally {
      await hole.close();
    }
  });

  it('delivers everything buffered while Redis was down once it is back (first start, then a restart)', async () => {
    const server = new PrivateRedis(await freePort());
    const log = recordingLogger();
    const { sink, prefix } = newSink({ url: server.url }, log);
    try {
      // Not started yet: the sink has never connected.
      const early = Array.from({ length: 5 }, () => makeRecord({ ts: TS }));
      early.forEach((r) => sink.push(r));
      await new Promise((r) => setTimeout(r, 200));
      expect(sink.stats().buffered).toBe(5);

      await server.start();
      await sink.flush(10_000);
      expect(sink.stats().buffered).toBe(0);

      await server.kill();
      await waitFor(() => sink.client.status !== 'ready', 5_000, 'the sink to notice');
      const during = Array.from({ length: 40 }, () => makeRecord({ ts: TS, cost_usd: 0.01 }));
      during.forEach((r) => sink.push(r));
      await new Promise((r) => setTimeout(r, 300));
      expect(sink.stats().buffered).toBe(40);

      await server.start();
      await sink.flush(10_000);
      expect(sink.stats()).toMatchObject({ buffered: 0, dropped: 0 });

      const check = new Redis(server.url);
      try {
        const k = redisKeys(prefix);
        const ids = (await check.xrange(k.records, '-', '+')).map(([, f]) => f[1]);
        // The restarted server is empty (no persistence): exactly the records written since.
        expect(ids).toEqual(during.map((r) => r.id));
        const t = await check.hgetall(k.totalsDay(TS));
        expect(t['all|*|requests']).toBe('40');
        expect(Number(t['all|*|cost_usd'])).toBeCloseTo(0.4, 10);
      } finally {
        check.disconnect();
      }
      expect(log.lines.filter(([, m]) => m.includes('unavailable')).length).toBe(2);
      expect(log.lines.filter(([, m]) => m.includes('restored')).length).toBe(2);
    } finally {
      await sink.close();
      await server.kill();
    }
  });
});

describe('RedisSink against a server that hangs mid-connection', () => {
  it('keeps the handler and flush() fast while Redis is stopped, then writes everything exactly once', async () => {
    const server = new PrivateRedis(await freePort());
    await server.start();
    const { sink, prefix } = newSink({ url: server.url, command_timeout_ms: 300 });
    try {
      await waitFor(() => sink.client.status === 'ready', 5_000, 'ready');
      server.pause();
      const recs = Array.from({ length: 300 }, (_, i) => makeRecord({ ts: TS, prompt_tokens: i }));
      const t0 = performance.now();
      recs.forEach((r) => sink.push(r));
      expect(performance.now() - t0).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 100)); // let a batch go out and hang
      const t1 = Date.now();
      await sink.flush(400);
      expect(Date.now() - t1).toBeLessThan(900);
      expect(sink.stats().buffered).toBe(300);
      await new Promise((r) => setTimeout(r, 500)); // the hung batch times out, goes back to the buffer
      server.resume();
      await sink.flush(10_000);
      expect(sink.stats()).toMatchObject({ buffered: 0, dropped: 0 });
      expect(sink.flushErrors).toBeGreaterThan(0);
      const check = new Redis(server.url);
      try {
        const k = redisKeys(prefix);
        // A timed-out batch the server did apply once it resumed was sent again: the script skipped it.
        expect(await check.xlen(k.records)).toBe(300);
        const t = await check.hgetall(k.totalsDay(TS));
        expect(t['all|*|requests']).toBe('300');
        expect(t['all|*|prompt_tokens']).toBe(String((299 * 300) / 2));
      } finally {
        check.disconnect();
      }
    } finally {
      await sink.close();
      await server.kill();
    }
  });
});

describe('RedisTelemetryOptions', () => {
  it('has the documented defaults', () => {
    expect(RedisTelemetryOptions.parse({})).toEqual({
      enabled: true,
      key_prefix: 'signalman:',
      stream_max_len: 100_000,
      record_ttl_s: 86_400,
      minute_ttl_s: 172_800,
      day_ttl_s: 34_560_000,
      buffer_max_records: 10_000,
      batch_max: 500,
      flush_interval_ms: 100,
      command_timeout_ms: 1_000,
    });
  });
  it('refuses a cluster url without a hash tag in the prefix, and unknown schemes', () => {
    expect(RedisTelemetryOptions.safeParse({ url: 'redis+cluster://a:7000,b:7001' }).success).toBe(false);
    expect(RedisTelemetryOptions.safeParse({ url: 'redis+cluster://a:7000,b:7001', key_prefix: '{signalman}:' }).success).toBe(true);
    expect(RedisTelemetryOptions.safeParse({ url: 'http://x' }).success).toBe(false);
    expect(() => new RedisSink({ url: 'redis+cluster://a:7000,b:7001' })).toThrow(/hash tag/);
  });
});
