// The sink and the store through Redis Cluster and Sentinel URLs, against real (private, throwaway)
// servers: a 3-master cluster and a master watched by one sentinel, started in a temp dir.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisClient } from '../../src/telemetry/redis-client.js';
import { RedisSink } from '../../src/telemetry/redis-sink.js';
import { getRecord, listFeedback, putFeedback, readTotals } from '../../src/telemetry/redis-store.js';
import { makeRecord } from './records.js';
import { freePort, waitFor } from '../helpers/redis.js';

const dir = mkdtempSync(join(tmpdir(), 'signalman-redis-'));
const procs: ChildProcess[] = [];
const cli = (...args: string[]): string => execFileSync('redis-cli', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
const pinged = (port: number) => () => {
  try {
    return cli('-p', String(port), 'ping').trim() === 'PONG';
  } catch {
    return false;
  }
};
const serve = (cwd: string, args: string[]): void => {
  procs.push(spawn('redis-server', args, { cwd, stdio: 'ignore' }));
};
let clusterUrl = '';
let sentinelUrl = '';

beforeAll(async () => {
  const ports = [await freePort(), await freePort(), await freePort()];
  for (const p of ports) {
    const d = join(dir, String(p));
    mkdirSync(d, { recursive: true });
    serve(d, ['--port', String(p), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--save', '', '--appendonly', 'no']);
  }
  for (const p of ports) await waitFor(pinged(p), 10_000, `cluster node ${p}`);
  execFileSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], {
    stdio: 'ignore',
  });
  await waitFor(() => cli('-p', String(ports[0]), 'cluster', 'info').includes('cluster_state:ok'), 10_000, 'cluster ok');
  clusterUrl = `redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}`;

  const master = await freePort();
  const sentinel = await freePort();
  serve(dir, ['--port', String(master), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(conf, `port ${sentinel}\nbind 127.0.0.1\nsentinel monitor tmaster 127.0.0.1 ${master} 1\n`);
  serve(dir, [conf, '--sentinel']);
  await waitFor(pinged(master), 10_000, 'master');
  await waitFor(pinged(sentinel), 10_000, 'sentinel');
  sentinelUrl = `redis+sentinel://127.0.0.1:${sentinel}/tmaster`;
}, 30_000);

afterAll(() => {
  for (const p of procs) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe.each([
  ['cluster', () => clusterUrl, '{sm}:'],
  ['sentinel', () => sentinelUrl, 'sm:'],
])('through %s', (_kind, url, prefix) => {
  it('writes records, totals and feedback, and reads them back', async () => {
    const sink = new RedisSink({ url: url(), key_prefix: prefix, flush_interval_ms: 10 });
    const recs = Array.from({ length: 30 }, () => makeRecord({ cost_usd: 0.5 }));
    recs.forEach((r) => sink.push(r));
    await sink.flush(10_000);
    expect(sink.stats()).toEqual({ buffered: 0, dropped: 0, lastError: null });
    await sink.close();
    const c = createRedisClient(url());
    try {
      expect(await getRecord(c, prefix, recs[3]?.id ?? '')).toEqual(recs[3]);
      expect(await putFeedback(c, prefix, recs[3]?.id ?? '', 'user', { score: 1 })).toBe('created');
      expect(await putFeedback(c, prefix, recs[3]?.id ?? '', 'user', { score: 0 })).toBe('updated');
      expect((await listFeedback(c, prefix)).map((r) => r.id)).toEqual([recs[3]?.id]);
      const t = await readTotals(c, prefix, {
        from: new Date(Date.now() - 600_000),
        to: new Date(Date.now() + 60_000),
        granularity: 'minute',
      });
      expect(t.all.requests).toBe(30);
      expect(t.all.cost_usd).toBeCloseTo(15, 9);
    } finally {
      c.disconnect();
    }
  });
});
