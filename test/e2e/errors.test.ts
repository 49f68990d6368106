// Every error a client can meet, in OpenAI's JSON shape with the right status, seen through the official
// client (status, code, param) or raw fetch where the client cannot produce the request.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callsTo, startStack, twoBackends, type Stack } from '../helpers/stack.js';

let stack: Stack;
let client: OpenAI;
beforeAll(async () => {
  // A third backend points at a port nothing listens on: connection failures.
  stack = await startStack({
    config: (url) =>
      twoBackends(url)
        .replace(
          'policies:',
          `  - name: dead
    base_url: http://127.0.0.1:9/v1
    model: m
    max_retries: 1
    connect_timeout_ms: 500
  - name: slow
    base_url: ${url}/slow/v1
    model: m
    timeout_ms: 300
    stream_idle_timeout_ms: 300
    max_retries: 0
policies:`,
        )
        .replace('server: {', 'server: { body_limit_bytes: 65536,'),
  });
  client = stack.client();
});
afterAll(() => stack.close());

const msg = [{ role: 'user' as const, content: 'hello' }];
const SERVER_TIMING = /^gw;desc="gateway overhead";dur=[\d.]+, route;dur=[\d.]+, upstream;dur=[\d.]+$/;
const post = (path: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  fetch(`${stack.gw.url}${path}`, { method: 'POST', body, headers });

async function expectApiError(p: Promise<unknown>, status: number, code: string, param?: string | null) {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OpenAI.APIError);
  const e = err as InstanceType<typeof OpenAI.APIError>;
  expect(e.status).toBe(status);
  expect(e.code).toBe(code);
  if (param !== undefined) expect(e.param).toBe(param);
  expect(e.headers?.get('x-signalman-request-id')).toBeTruthy();
  expect(e.headers?.get('server-timing')).toMatch(SERVER_TIMING);
  return e;
}

describe('request errors', () => {
  it('400 for malformed JSON, in OpenAI shape', async () => {
    const res = await post('/v1/chat/completions', '{"model": "auto", ');
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json', param: null });
    expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(res.headers.get('server-timing')).toMatch(SERVER_TIMING);
  });

  it('every response carries Server-Timing: Fastify routes and their 404s too', async () => {
    for (const path of ['/v1/models', '/healthz', '/readyz', '/no/such/path']) {
      const res = await fetch(`${stack.gw.url}${path}`);
      expect(res.headers.get('server-timing'), path).toMatch(SERVER_TIMING);
      expect(res.headers.get('x-signalman-request-id'), path).toBeTruthy();
    }
  });

  it('400 naming the bad field for a schema violation', async () => {
    const e = await expectApiError(
      // @ts-expect-error: an invalid role on purpose
      client.chat.completions.create({ model: 'auto', messages: [{ role: 'wizard', content: 'x' }] }),
      400,
      'invalid_request',
      'messages[0].role',
    );
    expect(e.message).toContain('messages[0].role');
    await expectApiError(client.chat.completions.create({ model: 'auto', messages: [] }), 400, 'invalid_request', 'messages');
    // @ts-expect-error: max_tokens must be a positive integer
    await expectApiError(
      client.chat.completions.create({ model: 'auto', messages: msg, max_tokens: -3 }),
      400,
      'invalid_request',
      'max_tokens',
    );
    const res = await post('/v1/chat/completions', '[1,2]');
    expect(res.status).toBe(400);
  });

  it('404 for an unknown model, naming where to look', async () => {
    const e = await expectApiError(client.chat.completions.create({ model: 'gpt-9', messages: msg }), 404, 'model_not_found', 'model');
    expect(e.message).toContain('/v1/models');
    expect(callsTo(stack.mock, '/').filter((r) => (r.body as { model?: string } | null)?.model === 'gpt-9')).toHaveLength(0);
  });

  it('404 for an unknown route and 415 for a non-JSON body', async () => {
    const nf = await fetch(`${stack.gw.url}/v2/nothing`);
    expect(nf.status).toBe(404);
    expect(((await nf.json()) as { error: { code: string } }).error.code).toBe('not_found');
    const media = await post('/v1/chat/completions', 'model=auto', { 'content-type': 'text/plain' });
    expect(media.status).toBe(415);
    expect(((await media.json()) as { error: { code: string } }).error.code).toBe('unsupported_media_type');
  });

  it('413 for a body over the limit', async () => {
    const big = 'x'.repeat(70_000);
    await expectApiError(
      client.chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: big }] }),
      413,
      'body_too_large',
    );
  });
});

describe('upstream errors', () => {
  it('passes an upstream 4xx through as it came', async () => {
    const e = await expectApiError(
      // @ts-expect-error: `mock` is the mock upstream's fault-injection field, passed through by the gateway
      client.chat.completions.create({ model: 'weak', messages: msg, mock: { status: 422 } }),
      422,
      'injected_fault',
    );
    expect(e.headers?.get('x-signalman-model')).toBe('weak');
  });

  it('502 when the upstream keeps answering 5xx (after its retries)', async () => {
    stack.mock.reset();
    const e = await expectApiError(
      // @ts-expect-error: fault injection
      client.chat.completions.create({ model: 'weak', messages: msg, mock: { status: 503 } }),
      502,
      'upstream_unavailable',
    );
    expect(e.message).toContain("backend 'weak' answered 503");
    expect(callsTo(stack.mock, '/weak/')).toHaveLength(2); // 1 call + max_retries: 1
  });

  it('502 when the backend cannot be reached', async () => {
    const e = await expectApiError(client.chat.completions.create({ model: 'dead', messages: msg }), 502, 'upstream_unavailable');
    expect(e.message).toMatch(/cannot reach backend 'dead' \(ECONNREFUSED\)/);
  });

  it('504 when the upstream does not answer within timeout_ms', async () => {
    const t0 = Date.now();
    // @ts-expect-error: fault injection
    await expectApiError(client.chat.completions.create({ model: 'slow', messages: msg, mock: { stall: true } }), 504, 'upstream_timeout');
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('504 when a stream stalls before its first event, before anything reached the client', async () => {
    await expectApiError(
      // @ts-expect-error: fault injection
      client.chat.completions.create({ model: 'slow', messages: msg, stream: true, mock: { stall: true } }),
      504,
      'upstream_timeout',
    );
  });

  it('ends a stream that fails after it started with one SSE error event and a clean close', async () => {
    // @ts-expect-error: fault injection
    const stream = await client.chat.completions.create({
      model: 'weak',
      messages: msg,
      stream: true,
      max_tokens: 20,
      mock: { cut_after_chunks: 3 },
    });
    let text = '';
    const err = await (async () => {
      for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    })().then(
      () => null,
      (e: unknown) => e,
    );
    expect(text.length).toBeGreaterThan(0);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('upstream_stream_failed');
    // The usage chunk never came: what was streamed is still billed, from its events, and marked estimated.
    const cut = stack.sink.records.findLast((r) => r.error === 'upstream_stream_failed');
    expect(cut).toMatchObject({ tokens_estimated: true, backend: 'weak' });
    expect(cut?.completion_tokens).toBeGreaterThan(0);
    expect(cut?.cost_usd).toBeGreaterThan(0);

    const raw = await post(
      '/v1/chat/completions',
      JSON.stringify({ model: 'slow', stream: true, messages: msg, mock: { stall_after_chunks: 2 } }),
    );
    expect(raw.status).toBe(200);
    const body = await raw.text();
    const events = body.split('\n\n').filter((e) => e.startsWith('data: '));
    const last = JSON.parse((events.at(-1) as string).slice(6)) as { error: { code: string; type: string } };
    expect(last.error).toMatchObject({ code: 'upstream_timeout', type: 'timeout_error' });
    expect(events.slice(0, -1).every((e) => JSON.parse(e.slice(6)).object === 'chat.completion.chunk')).toBe(true);
  });

  it('passes a 429 through with retry-after once retries and fallbacks are spent', async () => {
    const e = await expectApiError(
      // @ts-expect-error: fault injection; 10 s exceeds retry_max_ms, so the gateway does not wait
      client.chat.completions.create({ model: 'weak', messages: msg, mock: { status: 429, retry_after_s: 10 } }),
      429,
      'rate_limit_exceeded',
    );
    expect(e.headers?.get('retry-after')).toBe('10');
  });

  it('keeps serving after all of the above', async () => {
    const ok = await client.chat.completions.create({ model: 'auto', messages: msg });
    expect(ok.choices[0]?.message.content).toBeTruthy();
  });
});
