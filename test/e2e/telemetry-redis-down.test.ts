// Redis stopped mid-load, or a port that accepts and never answers: no request fails or waits, the
// records wait in the bounded buffer and arrive when Redis returns, and what overflowed is counted.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blackHole, freePort, PrivateRedis, waitFor } from '../helpers/redis.js';
import { startStack, twoBackends, type Stack } from '../helpers/stack.js';

const withRedis =
  (url: string, extra = '') =>
  (mockUrl: string) =>
    `${twoBackends(mockUrl)}
telemetry:
  redis: { url: ${url}, key_prefix: 'down:', flush_interval_ms: 20, command_timeout_ms: 200${extra} }
`;

/** Sends `n` plain requests 4 at a time; returns each one's latency in ms (throws if any fails). */
async function load(stack: Stack, n: number, tag: string): Promise<number[]> {
  const client = stack.client();
  const ms: number[] = [];
  for (let i = 0; i < n; i += 4) {
    await Promise.all(
      [0, 1, 2, 3].map(async (j) => {
        const t0 = performance.now();
        await client.chat.completions.create({ model: 'weak', messages: [{ role: 'user', content: `${tag} ${i + j}` }] });
        ms.push(performance.now() - t0);
      }),
    );
  }
  return ms;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const metric = async (stack: Stack, series: string) => {
  const text = await (await fetch(`${stack.gw.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
};

describe('Redis stopped mid-load', () => {
  let redis: PrivateRedis;
  let stack: Stack;
  beforeAll(async () => {
    redis = new PrivateRedis(await freePort());
    await redis.start();
    stack = await startStack({ config: withRedis(redis.url) });
  });
  afterAll(async () => {
    await stack.close();
    await redis.kill();
  });

  it('fails no request, adds no latency, and delivers every buffered record when Redis returns', async () => {
    await load(stack, 40, 'warm');
    const up = await load(stack, 80, 'up');
    await redis.kill();
    const down = await load(stack, 80, 'down');
    // Same median within noise: nothing on the request path waits for Redis.
    expect(median(down)).toBeLessThan(median(up) * 2 + 2);
    expect(stack.gw.telemetry.redis!.stats().buffered).toBeGreaterThan(0);
    await redis.start(); // same port, empty: the records written while it was down must all arrive
    const ids = stack.sink.records.map((r) => r.id);
    expect(ids.length).toBe(200);
    const admin = new Redis(redis.url);
    try {
      // Every record of the outage is findable by id (those sent before the kill died with that server).
      const downIds = ids.slice(-80);
      await waitFor(async () => (await Promise.all(downIds.map((id) => admin.exists(`down:req:${id}`)))).every((x) => x === 1), 10_000);
      expect(stack.gw.telemetry.redis!.stats().dropped).toBe(0);
    } finally {
      admin.disconnect();
    }
  });
});

describe('Redis that accepts and never answers', () => {
  let hole: Awaited<ReturnType<typeof blackHole>>;
  let stack: Stack;
  beforeAll(async () => {
    hole = await blackHole();
    stack = await startStack({ config: withRedis(`redis://127.0.0.1:${hole.port}`, ', buffer_max_records: 50') });
  });
  afterAll(async () => {
    await stack.close();
    await hole.close();
  });

  it('serves every request at once and counts what overflowed the buffer', async () => {
    const ms = await load(stack, 120, 'hole');
    expect(ms.length).toBe(120);
    // A command timeout is 200 ms here: a request that waited on Redis would show it.
    expect(Math.max(...ms)).toBeLessThan(150);
    const stats = stack.gw.telemetry.redis!.stats();
    expect(stats.buffered).toBe(50);
    expect(stats.dropped).toBe(70);
    expect(await metric(stack, 'signalman_telemetry_dropped_records_total{sink="redis"}')).toBe(70);
    expect(await metric(stack, 'signalman_telemetry_buffered_records{sink="redis"}')).toBe(50);
  });
});
