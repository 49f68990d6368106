// Routing, error shapes, the request log and the CLI of the mock upstream.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type MockRequestLog, type MockUpstream, startMockUpstream } from '../../src/mock/server.js';

let mock: MockUpstream;
beforeAll(async () => {
  mock = await startMockUpstream();
});
afterAll(() => mock.close());
beforeEach(() => mock.reset());

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}
const chat = { model: 'mock-weak', messages: [{ role: 'user', content: 'hello' }] };

function send(path: string, init: RequestInit & { json?: unknown } = {}, url = mock.url): Promise<Response> {
  const { json, ...rest } = init;
  return fetch(`${url}${path}`, {
    method: json === undefined ? (rest.method ?? 'GET') : 'POST',
    ...rest,
    headers: { 'content-type': 'application/json', ...(rest.headers as Record<string, string> | undefined) },
    body: json === undefined ? rest.body : JSON.stringify(json),
  });
}

function expectOpenAIError(body: unknown): asserts body is ErrorBody {
  expect(body).toEqual({
    error: {
      message: expect.any(String),
      type: expect.any(String),
      param: expect.toSatisfy((p: unknown) => p === null || typeof p === 'string'),
      code: expect.any(String),
    },
  });
}

describe('routing', () => {
  it('matches on the path suffix, so one mock plays several providers', async () => {
    for (const path of ['/v1/chat/completions', '/weak/v1/chat/completions', '/chat/completions']) {
      const r = await send(path, { json: chat });
      expect(r.status, path).toBe(200);
      expect(((await r.json()) as { object: string }).object).toBe('chat.completion');
    }
    const c = await send('/strong/v1/completions', { json: { model: 'm', prompt: 'x' } });
    expect(((await c.json()) as { object: string }).object).toBe('text_completion');
    const e = await send('/x/embeddings', { json: { model: 'm', input: 'x' } });
    expect(((await e.json()) as { object: string }).object).toBe('list');
    const m = await send('/any/v1/models?limit=3');
    expect(((await m.json()) as { data: unknown[] }).data).toHaveLength(3);
    expect(await (await send('/healthz')).json()).toEqual({ status: 'ok' });
  });

  it('answers an unknown path with 404 and a wrong method with 405, OpenAI-shaped', async () => {
    const r = await send('/v1/nothing-here', { json: chat });
    expect(r.status).toBe(404);
    const body: unknown = await r.json();
    expectOpenAIError(body);
    expect(body.error.message).toContain('/v1/nothing-here');
    const g = await send('/v1/chat/completions');
    expect(g.status).toBe(405);
    expectOpenAIError(await g.json());
  });

  it('answers malformed JSON and invalid fields with 400 naming the problem', async () => {
    const r = await send('/v1/chat/completions', { method: 'POST', body: '{"model": "x", messages: [' });
    expect(r.status).toBe(400);
    const body: unknown = await r.json();
    expectOpenAIError(body);
    expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json' });
    const client = new OpenAI({ baseURL: `${mock.url}/v1`, apiKey: 'x', maxRetries: 0 });
    await expect(client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], n: 0 })).rejects.toMatchObject({
      status: 400,
      param: 'n',
      type: 'invalid_request_error',
    });
    const emb = await send('/v1/embeddings', { json: { model: 'm', input: 'x', encoding_format: 'hex' } });
    expect(emb.status).toBe(400);
    expect(((await emb.json()) as ErrorBody).error.param).toBe('encoding_format');
  });
});

describe('request log', () => {
  it('records path, model, lower-cased headers, parsed body and outcome, oldest first', async () => {
    const client = new OpenAI({
      baseURL: `${mock.url}/weak/v1`,
      apiKey: 'sk-test',
      maxRetries: 0,
      defaultHeaders: { 'X-Trace-Id': 'abc' },
    });
    await client.chat.completions.create({ model: 'mock-weak', messages: [{ role: 'user', content: 'logged' }], max_tokens: 2 });
    await send('/v1/models');
    const log = mock.requests();
    expect(log).toHaveLength(2);
    const first = log[0]!;
    expect(first).toMatchObject({
      seq: 0,
      path: '/weak/v1/chat/completions',
      model: 'mock-weak',
      outcome: 'completed',
      body: { model: 'mock-weak', messages: [{ role: 'user', content: 'logged' }], max_tokens: 2 },
    });
    expect(first.headers['x-trace-id']).toBe('abc');
    expect(first.headers.authorization).toBe('Bearer sk-test');
    expect(first.receivedAt).toBeGreaterThan(Date.now() - 60_000);
    expect(log[1]).toMatchObject({ seq: 1, path: '/v1/models', model: null, body: null });
  });

  it('is served over HTTP, cleared by POST /__mock/reset, and does not log itself', async () => {
    await send('/v1/chat/completions', { json: chat });
    const listed = (await (await send('/__mock/requests')).json()) as MockRequestLog[];
    expect(listed.map((r) => [r.path, r.model, r.outcome])).toEqual([['/v1/chat/completions', 'mock-weak', 'completed']]);
    expect(await (await send('/__mock/reset', { method: 'POST' })).json()).toEqual({ ok: true });
    expect(mock.requests()).toEqual([]);
  });

  it('keeps only the last logSize requests', async () => {
    const small = await startMockUpstream({ logSize: 3 });
    try {
      for (let i = 0; i < 5; i++) await send('/v1/embeddings', { json: { model: `m${i}`, input: 'x' } }, small.url);
      expect(small.requests().map((r) => [r.seq, r.model])).toEqual([
        [2, 'm2'],
        [3, 'm3'],
        [4, 'm4'],
      ]);
    } finally {
      await small.close();
    }
  });
});

describe('signalman mock-upstream CLI', () => {
  it('prints its URL, serves, and exits 0 on SIGTERM', async () => {
    const entry = fileURLToPath(new URL('../../src/cli/mock-upstream.ts', import.meta.url));
    const script = `import { mockUpstreamCommand } from ${JSON.stringify(entry)};
      await mockUpstreamCommand(['--port', '0', '--tokens', '3', '--dim', '5']);`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      child.stdout.setEncoding('utf8');
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: string) => {
          out += d;
          if (out.includes('\n')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`exited early (${code})`)));
      });
      const url = /^mock-upstream listening on (http:\/\/127\.0\.0\.1:\d+)$/m.exec(out)?.[1];
      expect(url, out).toBeDefined();
      const r = (await (await send('/v1/chat/completions', { json: chat }, url)).json()) as { usage: { completion_tokens: number } };
      expect(r.usage.completion_tokens).toBe(3);
      const e = (await (await send('/v1/embeddings', { json: { model: 'm', input: 'x' } }, url)).json()) as {
        data: { embedding: number[] }[];
      };
      expect(e.data[0]!.embedding).toHaveLength(5);
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 20_000);

  it('rejects a bad flag value naming the flag', async () => {
    const { mockUpstreamCommand } = await import('../../src/cli/mock-upstream.js');
    await expect(mockUpstreamCommand(['--port', 'eighty'])).rejects.toThrow(/--port: expected an integer, got 'eighty'/);
    await expect(mockUpstreamCommand(['--dim', '0'])).rejects.toThrow(/--dim/);
    await expect(mockUpstreamCommand(['--nope', '1'])).rejects.toThrow(/nope/);
  });
});
