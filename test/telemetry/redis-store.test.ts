import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseRedisUrl, redact } from '../../src/telemetry/redis-client.js';
import { KEY_SCHEME, keySchemeMarkdown, redisKeys } from '../../src/telemetry/redis-keys.js';
import { RedisSink } from '../../src/telemetry/redis-sink.js';
import { bucketNames, getRecord, listFeedback, putFeedback, readTotals } from '../../src/telemetry/redis-store.js';
import { buildReport, chooseGranularity, formatReportTable } from '../../src/telemetry/report.js';
import { makeRecord } from './records.js';
import { deletePrefix, REDIS_URL, uniquePrefix } from '../helpers/redis.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 11, 6, 23, 58, 30); // near midnight: the window spans two days
let admin: Redis;
let prefix: string;

beforeAll(() => {
  admin = new Redis(REDIS_URL);
});
afterEach(async () => {
  await deletePrefix(admin, prefix);
});
afterAll(async () => {
  await admin.quit();
});

async function write(records: ReturnType<typeof makeRecord>[]): Promise<void> {
  const sink = new RedisSink({ url: REDIS_URL, key_prefix: prefix, flush_interval_ms: 10 });
  records.forEach((r) => sink.push(r));
  await sink.flush(5_000);
  expect(sink.stats().buffered).toBe(0);
  await sink.close();
}

describe('redis-store', () => {
  it('getRecord returns the stored record, null for an unknown id', async () => {
    prefix = uniquePrefix();
    const r = makeRecord({
      ts: T0,
      shadow: { policy: 's', chosen: 'weak', agree: true, cost_usd: 0.1, counterfactual_cost_usd: 0.2, error: null },
    });
    await write([r]);
    expect(await getRecord(admin, prefix, r.id)).toEqual(r);
    expect(await getRecord(admin, prefix, 'nope')).toBeNull();
  });

  it('putFeedback is idempotent per id + source, and listFeedback pairs feedback with records', async () => {
    prefix = uniquePrefix();
    const [a, b] = [makeRecord({ ts: T0 }), makeRecord({ ts: T0 + 1 })];
    await write([a, b]);
    const now = Date.now();
    expect(await putFeedback(admin, prefix, a.id, 'user', { score: 1 }, { now })).toBe('created');
    expect(await putFeedback(admin, prefix, a.id, 'user', { score: 0, comment: 'changed my mind' }, { now: now + 10 })).toBe('updated');
    expect(await putFeedback(admin, prefix, a.id, 'judge', { label: 'good' }, { now: now + 20 })).toBe('created');
    expect(await putFeedback(admin, prefix, b.id, 'user', { score: 0.5 }, { now: now + 1000 })).toBe('created');
    expect(await putFeedback(admin, prefix, 'unknown-id', 'user', { score: 1 }, { now: now + 2000 })).toBe('created');
    const k = redisKeys(prefix);
    expect(await admin.hlen(k.fb(a.id))).toBe(2);
    expect(await admin.ttl(k.fb(a.id))).toBeGreaterThan(86_400 - 60);
    expect(await admin.zcard(k.fbset)).toBe(3);

    const rows = await listFeedback(admin, prefix);
    expect(rows.map((r) => r.id)).toEqual([a.id, b.id, 'unknown-id']);
    expect(rows[0]?.record).toEqual(a);
    expect(rows[0]?.feedback.sort((x, y) => x.source.localeCompare(y.source))).toEqual([
      { source: 'judge', score: null, label: 'good', comment: null, ts: now + 20 },
      { source: 'user', score: 0, label: null, comment: 'changed my mind', ts: now + 10 },
    ]);
    expect(rows[2]?.record).toBeNull();
    const windowed = await listFeedback(admin, prefix, { since: new Date(now + 500), until: new Date(now + 1500) });
    expect(windowed.map((r) => r.id)).toEqual([b.id]);
  });

  it('readTotals sums minute and day buckets of a window; buildReport derives savings, shares and error rates', async () => {
    prefix = uniquePrefix();
    const recs = [
      makeRecord({
        ts: T0,
        policy: 'auto',
        backend: 'weak',
        prompt_tokens: 100,
        completion_tokens: 10,
        cost_usd: 0.1,
        counterfactual_cost_usd: 1,
      }),
      makeRecord({
        ts: T0 + 60_000,
        policy: 'auto',
        backend: 'weak',
        prompt_tokens: 100,
        completion_tokens: 10,
        cost_usd: 0.1,
        counterfactual_cost_usd: 1,
      }),
      makeRecord({
        ts: T0 + 120_000,
        policy: 'auto',
        backend: 'strong',
        outcome: 'upstream_error',
        status: 502,
        prompt_tokens: 200,
        completion_tokens: 0,
        cost_usd: 0,
        counterfactual_cost_usd: 0,
      }),
      makeRecord({
        ts: T0 + 180_000,
        policy: 'auto',
        backend: 'strong',
        prompt_tokens: 300,
        completion_tokens: 30,
        cost_usd: 1,
        counterfactual_cost_usd: 1,
      }),
      makeRecord({
        ts: T0 + 3 * DAY,
        policy: null,
        backend: 'weak',
        prompt_tokens: 7,
        completion_tokens: 3,
        cost_usd: 0.01,
        counterfactual_cost_usd: 0.01,
      }),
    ];
    await write(recs);

    // 23:58 .. 00:02: two days of minute buckets, five minutes.
    const from = new Date(T0 - 30_000);
    const to = new Date(T0 + 240_000); // 00:02:30, exclusive: the 00:02 bucket is read (and empty)
    expect(chooseGranularity(from, to)).toBe('minute');
    expect(bucketNames(from, to, 'minute')).toEqual(['202612062358', '202612062359', '202612070000', '202612070001', '202612070002']);
    const m = await readTotals(admin, prefix, { from, to, granularity: 'minute' });
    expect(m.buckets).toBe(5);
    expect(m.bucketsWithData).toBe(4);
    expect(m.all).toMatchObject({
      requests: 4,
      prompt_tokens: 700,
      completion_tokens: 50,
      errors: 1,
      outcomes: { ok: 3, upstream_error: 1 },
    });
    expect(m.all.cost_usd).toBeCloseTo(1.2, 12);
    expect(m.all.counterfactual_cost_usd).toBeCloseTo(3, 12);
    expect(m.route.auto?.weak?.requests).toBe(2);
    expect(m.route.auto?.strong?.requests).toBe(2);
    expect(m.backend['-']).toBeUndefined();

    // Day buckets: whole UTC days, including the later record.
    const d = await readTotals(admin, prefix, { from: new Date(T0), to: new Date(T0 + 4 * DAY), granularity: 'day' });
    expect(chooseGranularity(new Date(T0), new Date(T0 + 4 * DAY))).toBe('day');
    expect(d.buckets).toBe(5);
    expect(d.all.requests).toBe(5);
    expect(d.policy['-']?.requests).toBe(1);
    expect(d.backend.weak?.prompt_tokens).toBe(207);

    const rep = buildReport(m, { from, to });
    expect(rep.window.granularity).toBe('minute');
    expect(rep.total).toMatchObject({ requests: 4, prompt_tokens: 700, completion_tokens: 50, share: 1, error_rate: 0.25 });
    expect(rep.total.spend_usd).toBeCloseTo(1.2, 12);
    expect(rep.total.savings_usd).toBeCloseTo(1.8, 12);
    expect(rep.total.savings_pct).toBeCloseTo(60, 9);
    const auto = rep.policies.find((r) => r.name === 'auto');
    expect(auto).toMatchObject({ requests: 4, share: 1, error_rate: 0.25 });
    const weak = rep.routes.find((r) => r.policy === 'auto' && r.backend === 'weak');
    expect(weak).toMatchObject({ requests: 2, share: 0.5, error_rate: 0 });
    expect(weak?.savings_usd).toBeCloseTo(1.8, 12);
    expect(weak?.savings_pct).toBeCloseTo(90, 9);
    const strong = rep.routes.find((r) => r.backend === 'strong');
    expect(strong).toMatchObject({ share: 0.5, error_rate: 0.5, savings_pct: 0 });

    const dayRep = buildReport(d, { from: new Date(T0), to: new Date(T0 + 4 * DAY) });
    expect(dayRep.backends.find((r) => r.name === 'weak')?.share).toBeCloseTo(3 / 5, 12);
    expect(dayRep.routes.find((r) => r.policy === '-')).toMatchObject({ backend: 'weak', share: 1, savings_pct: 0 });

    const table = formatReportTable(rep);
    const lines = table.split('\n');
    expect(lines[0]).toContain('minute buckets');
    const header = lines.find((l) => l.startsWith('name'));
    const autoLine = lines.find((l) => l.startsWith('auto '));
    expect(autoLine).toBeDefined();
    expect(autoLine?.length).toBe(header?.length); // columns aligned
    expect(table).toContain('auto → weak');
    expect(table).toContain('60.0%');
    expect(table).toContain('$1.2000');
  });
});

describe('redis urls and key docs', () => {
  it('parses cluster and sentinel urls', () => {
    expect(parseRedisUrl('redis://:pw@localhost:6380/2')).toEqual({ kind: 'standalone', url: 'redis://:pw@localhost:6380/2' });
    expect(parseRedisUrl('rediss+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002')).toEqual({
      kind: 'cluster',
      tls: true,
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 6379 },
        { host: '::1', port: 7002 },
      ],
      username: 'u',
      password: 'p@ss',
    });
    expect(parseRedisUrl('redis+sentinel://:secret@s1:26379,s2/mymaster/3?sentinel_password=sp')).toEqual({
      kind: 'sentinel',
      tls: false,
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26379 },
      ],
      name: 'mymaster',
      db: 3,
      password: 'secret',
      sentinelPassword: 'sp',
    });
    expect(() => parseRedisUrl('redis+sentinel://s1:26379')).toThrow(/names the master/);
    expect(() => parseRedisUrl('memcached://x')).toThrow();
    expect(redact('redis+cluster://u:secret@a:1,b:2')).toBe('redis+cluster://u:***@a:1,b:2');
  });

  it('documents every key in the markdown table', () => {
    const md = keySchemeMarkdown('signalman:');
    for (const k of KEY_SCHEME) expect(md).toContain(k.key.replace('{p}', 'signalman:'));
    expect(md.split('\n')[0]).toBe('| Key | Type | TTL | Contents |');
  });
});
