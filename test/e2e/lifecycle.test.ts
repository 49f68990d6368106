// Shutdown as an orchestrator does it: a real `signalman serve` process, SIGTERM while streams are open.
// Readiness turns 503 at once, open streams finish (or, past server.drain_timeout_ms, end with one
// `shutting_down` error event), a request on a kept-alive socket is told to go elsewhere, the process exits
// 0, and every request's record is in the real Redis.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import OpenAI, { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../../src/mock/server.js';
import type { RequestRecord } from '../../src/telemetry/record.js';
import { deletePrefix, REDIS_URL, uniquePrefix, waitFor } from '../helpers/redis.js';

const root = join(import.meta.dirname, '../..');
const prefix = uniquePrefix();
let mock: MockUpstream;
let redis: Redis;
let dir: string;

beforeAll(async () => {
  mock = await startMockUpstream({ port: 0, completionTokens: 5_000 }); // long answers: max_tokens sets each length
  redis = new Redis(REDIS_URL);
  dir = await mkdtemp(join(tmpdir(), 'signalman-lifecycle-'));
});
afterAll(async () => {
  await mock.close();
  await deletePrefix(redis, prefix);
  redis.disconnect();
  await rm(dir, { recursive: true, force: true });
});

const config = (server: string) => `
version: 1
server: { watch: false, access_log: true, ${server} }
backends:
  - name: weak
    base_url: ${mock.url}/weak/v1
    model: mixtral-8x7b-instruct-v0.1
    price: { input_per_mtok: 0.24, output_per_mtok: 0.24 }
    timeout_ms: 10000
    stream_idle_timeout_ms: 5000
    max_retries: 0
telemetry:
  redis: { url: ${REDIS_URL}, key_prefix: '${prefix}', flush_interval_ms: 20 }
`;

interface Gateway {
  proc: ChildProcessWithoutNullStreams;
  url: string;
  /** Parsed JSON log lines written so far. */
  logs(): Array<Record<string, any>>;
  exited: Promise<number | null>;
  client: OpenAI;
}

async function serve(name: string, server: string): Promise<Gateway> {
  const file = join(dir, `${name}.yaml`);
  await writeFile(file, config(server));
  const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), 'serve', '--config', file, '--port', '0'], {
    cwd: root,
    env: { ...process.env, SIGNALMAN_ADMIN_KEY: '', REDIS_URL: '' },
  });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const until = Date.now() + 30_000;
  let url: string | undefined;
  while ((url = /signalman listening on (http:\/\/[\d.:]+)/.exec(out)?.[1]) === undefined) {
    if (proc.exitCode !== null || Date.now() > until) throw new Error(`gateway did not start:\n${out}\n${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const logs = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, any>);
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sk-client', maxRetries: 0, timeout: 20_000 });
  return { proc, url, logs, exited, client };
}

const msg = [{ role: 'user' as const, content: 'tell me a long story' }];
/** A stream of `tokens` content chunks, one every `everyMs` (the mock's pacing, forwarded in the body). */
const slowStream = (tokens: number, everyMs: number) => ({
  model: 'weak',
  messages: msg,
  stream: true as const,
  max_tokens: tokens,
  mock: { inter_token_ms: everyMs },
});

const readyz = async (url: string) => {
  const r = await fetch(`${url}/readyz`);
  return { status: r.status, body: (await r.json()) as Record<string, any> };
};
const refusesConnections = async (url: string) =>
  fetch(`${url}/healthz`).then(
    () => false,
    (e: { cause?: { code?: string } }) => e.cause?.code === 'ECONNREFUSED',
  );
const inRedis = async (id: string): Promise<RequestRecord> => {
  await waitFor(async () => (await redis.exists(`${prefix}req:${id}`)) === 1, 5_000, `record ${id} in Redis`);
  return JSON.parse((await redis.get(`${prefix}req:${id}`)) as string) as RequestRecord;
};

/**
 * A raw request sent up to the middle of its headers (or of its body): the connection is busy, not idle, so
 * draining does not close it; finish() sends the rest and resolves with the whole response once the socket closes.
 */
function halfSentRequest(url: string, upTo: 'headers' | 'body' = 'headers'): Promise<{ socket: Socket; finish(): Promise<string> }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.setEncoding('utf8');
  let response = '';
  socket.on('data', (d: string) => (response += d));
  const ended = new Promise<void>((r) => socket.once('close', () => r()));
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.once('connect', () => {
      const body = JSON.stringify({ model: 'weak', messages: msg, max_tokens: 5 });
      const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\n`;
      const rest = `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
      const split = upTo === 'headers' ? 0 : rest.length - 10;
      socket.write(head + rest.slice(0, split));
      resolve({
        socket,
        finish: async () => {
          socket.write(rest.slice(split));
          await ended; // the gateway answers with connection: close
          return response;
        },
      });
    });
  });
}

describe('SIGTERM', () => {
  it('mid-stream: readiness 503 at once, streams finish, new connections are refused, a kept-alive request gets 503, exit 0, every request in Redis', async () => {
    const gw = await serve('finish', 'drain_timeout_ms: 15000, drain_delay_ms: 1000');
    try {
      mock.reset();
      const pending = await halfSentRequest(gw.url);
      // Two streams of 40 tokens, 70 ms apart: ~2.8 s each, far longer than the drain delay.
      const { data: stream, response } = await gw.client.chat.completions.create(slowStream(40, 70)).withResponse();
      const streamId = response.headers.get('x-signalman-request-id')!;
      const iter = stream[Symbol.asyncIterator]();
      const first = await iter.next();
      expect(first.done).toBe(false);
      const raw = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(slowStream(40, 70)),
      });
      const rawId = raw.headers.get('x-signalman-request-id')!;
      const rawText = raw.text();
      rawText.catch(() => undefined); // awaited below; a failure before that must not be an unhandled rejection
      expect((await readyz(gw.url)).status).toBe(200);

      const signalled = Date.now();
      gw.proc.kill('SIGTERM');
      // Readiness drops at once, while both streams still run.
      await waitFor(async () => (await readyz(gw.url)).status === 503, 2_000, 'readyz 503');
      expect(Date.now() - signalled).toBeLessThan(800);
      const ready = await readyz(gw.url);
      expect(ready.body).toMatchObject({ ready: false, draining: true });
      // During drain_delay_ms new requests are still served (load balancers are still noticing).
      const { data: during, response: duringRes } = await gw.client.chat.completions
        .create({ model: 'weak', messages: msg, max_tokens: 5 })
        .withResponse();
      expect(during.choices[0]?.message.content).toBeTruthy();
      const duringId = duringRes.headers.get('x-signalman-request-id')!;
      // Then the listener closes: a new connection is refused, while the streams go on.
      await waitFor(() => refusesConnections(gw.url), 3_000, 'the listener to close');
      expect(Date.now() - signalled).toBeGreaterThanOrEqual(950);
      expect(mock.requests().filter((r) => r.outcome === 'pending')).toHaveLength(2);
      // A request on a connection that was already open is told to go elsewhere, and recorded.
      const answer = await pending.finish();
      expect(answer).toMatch(/^HTTP\/1\.1 503 /);
      expect(answer.toLowerCase()).toContain('connection: close');
      expect(answer).toContain('"code":"shutting_down"');
      const refusedId = /x-signalman-request-id: (\S+)/i.exec(answer)?.[1];
      expect(refusedId).toBeTruthy();

      // Both streams finish, every token and [DONE].
      let chunks = 1;
      let finish: string | null = null;
      for (let r = await iter.next(); !r.done; r = await iter.next()) {
        chunks++;
        finish = r.value.choices[0]?.finish_reason ?? finish;
      }
      expect(finish).toBe('length');
      expect(chunks).toBeGreaterThanOrEqual(41); // role chunk + 40 tokens (+ finish)
      const text = await rawText;
      expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      expect(text).not.toContain('"error"');
      expect(text.match(/"content":"/g)?.length).toBeGreaterThanOrEqual(40);

      expect(await gw.exited).toBe(0);
      expect(mock.requests().every((r) => r.outcome === 'completed')).toBe(true);

      for (const id of [streamId, rawId]) {
        const rec = await inRedis(id);
        expect(rec).toMatchObject({ outcome: 'ok', stream: true, status: 200, completion_tokens: 40 });
      }
      expect(await inRedis(duringId)).toMatchObject({ outcome: 'ok', stream: false });
      expect(await inRedis(refusedId!)).toMatchObject({ outcome: 'rejected', status: 503, error: 'shutting_down' });

      const logs = gw.logs();
      const start = logs.find((l) => l.msg.startsWith('shutdown: draining'));
      expect(start).toMatchObject({ streams: 2, drain_timeout_ms: 15000, drain_delay_ms: 1000 });
      const done = logs.find((l) => l.msg === 'shutdown: drained');
      expect(done).toMatchObject({ cut_at_deadline: 0, connections_forced: 0, records_lost: 0 });
      expect(done!.finished).toBeGreaterThanOrEqual(3);
      expect(done!.records_flushed).toBeGreaterThanOrEqual(0);
    } finally {
      if (gw.proc.exitCode === null) gw.proc.kill('SIGKILL');
    }
  }, 60_000);

  it('past drain_timeout_ms: an open stream ends with exactly one shutting_down error event, a pending request gets 503, exit 0', async () => {
    const gw = await serve('deadline', 'drain_timeout_ms: 800');
    try {
      mock.reset();
      // 200 tokens 50 ms apart: 10 s, far past the deadline.
      const { data: stream, response } = await gw.client.chat.completions.create(slowStream(200, 50)).withResponse();
      const streamId = response.headers.get('x-signalman-request-id')!;
      const iter = stream[Symbol.asyncIterator]();
      expect((await iter.next()).done).toBe(false);
      const raw = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(slowStream(200, 50)),
      });
      const rawId = raw.headers.get('x-signalman-request-id')!;
      const rawText = raw.text();
      rawText.catch(() => undefined); // awaited below; a failure before that must not be an unhandled rejection
      // A plain request whose upstream answers in 10 s: still waiting at the deadline.
      const plain = gw.client.chat.completions
        // @ts-expect-error: fault injection — a slow upstream
        .create({ model: 'weak', messages: msg, mock: { latency_ms: 10_000 } })
        .then(
          () => null,
          (e: unknown) => e,
        );
      await waitFor(() => mock.requests().length === 3, 3_000, 'three upstream calls');
      // A request whose body is still arriving at the deadline: its handler starts after the cut.
      const late = await halfSentRequest(gw.url, 'body');

      const signalled = Date.now();
      gw.proc.kill('SIGTERM');
      let caught: unknown = null;
      let after = 0;
      try {
        for (let r = await iter.next(); !r.done; r = await iter.next()) after++;
      } catch (e) {
        caught = e;
      }
      const endedAt = Date.now() - signalled;
      expect(caught).toBeInstanceOf(APIError);
      expect((caught as APIError).code).toBe('shutting_down');
      const lateAnswer = await late.finish();
      expect(lateAnswer).toMatch(/^HTTP\/1\.1 503 /);
      expect(lateAnswer).toContain('"code":"shutting_down"');
      const lateId = /x-signalman-request-id: (\S+)/i.exec(lateAnswer)?.[1];
      expect(after).toBeGreaterThan(5); // it kept streaming until the deadline
      expect(endedAt).toBeGreaterThanOrEqual(700);
      expect(endedAt).toBeLessThan(3_000);

      const text = await rawText;
      expect(text.match(/"error"/g)).toHaveLength(1);
      // The error event is the last thing on the stream, on an event boundary: no [DONE], nothing cut mid-event.
      const events = text.split('\n\n').filter((e) => e.trim() !== '');
      expect(JSON.parse(events.at(-1)!.replace(/^data: /, ''))).toMatchObject({ error: { code: 'shutting_down', type: 'server_error' } });
      for (const e of events.slice(0, -1)) expect(() => JSON.parse(e.replace(/^data: /, ''))).not.toThrow();

      const plainErr = (await plain) as APIError;
      expect(plainErr).toBeInstanceOf(APIError);
      expect(plainErr.status).toBe(503);
      expect(plainErr.code).toBe('shutting_down');
      const plainId = plainErr.headers?.get('x-signalman-request-id');

      expect(await gw.exited).toBe(0);
      // The upstream calls were cancelled, not left running.
      await waitFor(() => mock.requests().every((r) => r.outcome === 'aborted'), 2_000, 'upstream calls aborted');

      for (const id of [streamId, rawId]) {
        const rec = await inRedis(id);
        expect(rec).toMatchObject({ outcome: 'rejected', error: 'shutting_down', stream: true, status: 200 });
      }
      expect(await inRedis(plainId!)).toMatchObject({ outcome: 'rejected', error: 'shutting_down', status: 503 });
      expect(await inRedis(lateId!)).toMatchObject({ outcome: 'rejected', error: 'shutting_down', status: 503 });
      const done = gw.logs().find((l) => l.msg === 'shutdown: drained');
      expect(done).toMatchObject({ cut_at_deadline: 3, connections_forced: 0, records_lost: 0 });
    } finally {
      if (gw.proc.exitCode === null) gw.proc.kill('SIGKILL');
    }
  }, 60_000);
});
