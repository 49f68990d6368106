import { describe, expect, it } from 'vitest';
import { AccessLogSink } from '../../src/telemetry/access-log.js';
import { BatchedLineWriter } from '../../src/telemetry/line-writer.js';
import { Stages } from '../../src/telemetry/stages.js';
import { makeRecord } from '../telemetry/records.js';

describe('access log line', () => {
  it('is one valid JSON line with the request summary, tokens, cost, ttft and outcome, escaping client-chosen strings', () => {
    const lines: string[] = [];
    const stages = new Stages();
    new AccessLogSink({ write: (l: string) => lines.push(l) }).attach(stages);
    stages.finish.publish(
      makeRecord({
        id: 'abc-1',
        model: 'evil"\n}{"admin":true',
        policy: 'auto',
        chosen: 'weak',
        backend: 'weak',
        reason: 'objective',
        router: 'knn',
        total_ms: 1.23456,
        ttft_ms: 0.5,
        prompt_tokens: 12,
        completion_tokens: 30,
        cost_usd: 0.0000123,
        outcome: 'ok',
      }),
    );
    stages.finish.publish(makeRecord({ status: 502, error: 'upstream_unavailable', backend: null, outcome: 'upstream_error' }));
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l.endsWith('}\n') && l.indexOf('\n') === l.length - 1).toBe(true);
    const a = JSON.parse(lines[0] as string);
    expect(a).toMatchObject({
      level: 30,
      msg: 'request',
      reqId: 'abc-1',
      model: 'evil"\n}{"admin":true',
      status: 200,
      ms: 1.235,
      ttftMs: 0.5,
      promptTokens: 12,
      completionTokens: 30,
      costUsd: 0.0000123,
      outcome: 'ok',
      route: { chosen: 'weak', reason: 'objective' },
    });
    expect(a.admin).toBeUndefined();
    expect(JSON.parse(lines[1] as string)).toMatchObject({
      status: 502,
      error: 'upstream_unavailable',
      backend: null,
      outcome: 'upstream_error',
    });
  });
});

describe('batched line writer', () => {
  const tmpFile = async () => {
    const { mkdtemp, open } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const path = join(await mkdtemp(join(tmpdir(), 'signalman-lines-')), 'out.log');
    const fh = await open(path, 'w');
    return { path, fh };
  };
  const read = async (path: string) => (await import('node:fs/promises')).readFile(path, 'utf8');

  it('writes every line whole and in order, in few writes, and end() waits for them', async () => {
    const { path, fh } = await tmpFile();
    const w = new BatchedLineWriter({ fd: fh.fd, flushBytes: 4096, flushIntervalMs: 1000 });
    const n = 5000;
    for (let i = 0; i < n; i++) w.write(`{"i":${i},"pad":"${'x'.repeat(i % 50)}"}\n`);
    await w.end();
    const lines = (await read(path)).split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(n);
    lines.forEach((l, i) => expect(JSON.parse(l).i).toBe(i));
    await fh.close();
  });

  it('flushes a lone line after the interval, without being asked', async () => {
    const { path, fh } = await tmpFile();
    const w = new BatchedLineWriter({ fd: fh.fd, flushBytes: 1 << 20, flushIntervalMs: 20 });
    w.write('{"only":1}\n');
    expect(await read(path)).toBe('');
    const deadline = Date.now() + 2000;
    while ((await read(path)) === '' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(await read(path)).toBe('{"only":1}\n');
    await fh.close();
  });

  it('is bounded: past maxBufferedBytes lines are dropped, counted, and the count is logged', async () => {
    const { path, fh } = await tmpFile();
    const w = new BatchedLineWriter({ fd: fh.fd, flushBytes: 1 << 20, flushIntervalMs: 60_000, maxBufferedBytes: 100 });
    const line = '{"n":"0123456789"}\n'; // 19 bytes: five fit in 100
    const kept = Array.from({ length: 8 }, () => w.write(line));
    expect(kept).toEqual([true, true, true, true, true, false, false, false]);
    expect(w.dropped).toBe(3);
    w.write(line); // still full
    await w.end();
    const lines = (await read(path)).split('\n').filter((l) => l !== '');
    expect(JSON.parse(lines[0] as string)).toMatchObject({ level: 40, dropped: 4 });
    expect(lines.slice(1)).toEqual(Array(5).fill(line.trim()));
    expect(w.dropped).toBe(0);
    await fh.close();
  });
});
