// Fault injection of the mock upstream: every fault seen from the official client (or raw fetch).
import OpenAI from 'openai';
import type { ChatCompletionCreateParamsNonStreaming } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type MockOutcome, type MockUpstream, startMockUpstream } from '../../src/mock/server.js';

let mock: MockUpstream;
let client: OpenAI;
beforeAll(async () => {
  mock = await startMockUpstream();
  client = new OpenAI({ baseURL: `${mock.url}/v1`, apiKey: 'x', maxRetries: 0 });
});
afterAll(() => mock.close());
beforeEach(() => mock.reset());

const base = { model: 'mock-strong', messages: [{ role: 'user' as const, content: 'Tell me about faults.' }] };
const fault = (spec: object) => ({ headers: { 'x-mock-fault': JSON.stringify(spec) } });

/** The mock learns of a client abort a moment after the client gives up: poll briefly for it. */
async function outcomeOf(seq: number, want: MockOutcome): Promise<MockOutcome | undefined> {
  for (let i = 0; i < 300; i++) {
    const got = mock.requests().find((r) => r.seq === seq)?.outcome;
    if (got === want) return got;
    await new Promise((r) => setTimeout(r, 10));
  }
  return mock.requests().find((r) => r.seq === seq)?.outcome;
}

function post(path: string, body: unknown, headers: Record<string, string> = {}, url = mock.url): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

describe('status faults', () => {
  it('answers the injected status with an OpenAI error body and retry-after', async () => {
    const err = await client.chat.completions.create(base, fault({ status: 429, retry_after_s: 2 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const apiErr = err as InstanceType<typeof OpenAI.APIError>;
    expect(apiErr.status).toBe(429);
    expect(apiErr.headers?.get('retry-after')).toBe('2');
    expect(apiErr.error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded', param: null });
    expect(mock.requests()[0]!.outcome).toBe('fault');
  });

  it('fails only the first fail_times requests of a key (body field `mock`, as a gateway forwards it)', async () => {
    // A variable, not a literal: the extra `mock` field is passed through by the client untouched.
    const body = { ...base, mock: { status: 503, fail_times: 2 } };
    const params: ChatCompletionCreateParamsNonStreaming = body;
    await expect(client.chat.completions.create(params)).rejects.toMatchObject({ status: 503 });
    await expect(client.chat.completions.create(params)).rejects.toMatchObject({ status: 503 });
    const ok = await client.chat.completions.create(params);
    expect(ok.choices[0]!.finish_reason).toBe('stop');
    // Another body is another key; an explicit key is shared across bodies.
    await expect(client.chat.completions.create({ ...params, max_tokens: 5 })).rejects.toMatchObject({ status: 503 });
    const keyed = { status: 500, fail_times: 1, key: 'k1' };
    await expect(client.chat.completions.create(base, fault(keyed))).rejects.toMatchObject({ status: 500 });
    await expect(client.chat.completions.create({ ...base, n: 2 }, fault(keyed))).resolves.toBeTruthy();
    expect(mock.requests().map((r) => r.outcome)).toEqual(['fault', 'fault', 'completed', 'fault', 'fault', 'completed']);
  });

  it('applies only_paths and only_models, so one mock can fail one provider', async () => {
    const spec = JSON.stringify({ status: 500, only_paths: ['/weak/'] });
    expect((await post('/weak/v1/chat/completions', base, { 'x-mock-fault': spec })).status).toBe(500);
    const strong = await post('/strong/v1/chat/completions', base, { 'x-mock-fault': spec });
    expect(strong.status).toBe(200);
    const weakClient = new OpenAI({ baseURL: `${mock.url}/weak/v1`, apiKey: 'x', maxRetries: 0 });
    await expect(weakClient.chat.completions.create(base, fault({ status: 502, only_paths: ['/weak/'] }))).rejects.toMatchObject({
      status: 502,
    });
    const byModel = { status: 500, only_models: ['mock-weak'] };
    await expect(client.chat.completions.create(base, fault(byModel))).resolves.toBeTruthy();
    await expect(client.chat.completions.create({ ...base, model: 'mock-weak' }, fault(byModel))).rejects.toMatchObject({
      status: 500,
    });
  });
});

describe('connection faults', () => {
  it('stall: no headers until the client times out; the log shows aborted', async () => {
    const err = await client.chat.completions.create(base, { ...fault({ stall: true }), timeout: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
    expect(await outcomeOf(0, 'aborted')).toBe('aborted');
  });

  it('stall_after_chunks: a streamed answer stops; aborting the client marks it aborted', async () => {
    const ac = new AbortController();
    const stream = await client.chat.completions.create(
      { ...base, stream: true },
      { ...fault({ stall_after_chunks: 2 }), signal: ac.signal },
    );
    const seen: string[] = [];
    const reading = (async () => {
      for await (const c of stream) {
        seen.push(c.choices[0]?.delta.content ?? '');
        if (seen.length === 2) setTimeout(() => ac.abort(), 50); // give a third chunk time to (not) arrive
      }
    })();
    await reading; // the client ends the iteration quietly on its own abort
    expect(seen).toHaveLength(2);
    expect(ac.signal.aborted).toBe(true);
    expect(await outcomeOf(0, 'aborted')).toBe('aborted');
  });

  it('cut_after_chunks: the stream breaks without finish or [DONE]; the log shows fault', async () => {
    const stream = await client.chat.completions.create({ ...base, stream: true }, fault({ cut_after_chunks: 3 }));
    let chunks = 0;
    const reading = (async () => {
      for await (const c of stream) {
        chunks++;
        expect(c.choices[0]?.finish_reason).toBeNull();
      }
    })();
    await expect(reading).rejects.toThrow();
    expect(chunks).toBe(3);
    expect(mock.requests()[0]!.outcome).toBe('fault');
  });

  it('destroy: the connection drops with no response', async () => {
    const err = await client.chat.completions.create(base, fault({ destroy: true })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIConnectionError);
    expect(err).not.toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
    expect(mock.requests()[0]!.outcome).toBe('fault');
    // The server is unharmed: the next request on a new connection succeeds.
    await expect(client.chat.completions.create(base)).resolves.toBeTruthy();
  });
});

describe('delays', () => {
  it('latency_ms delays the answer; inter_token_ms spaces stream chunks (lower bounds only)', async () => {
    let t = performance.now();
    await client.chat.completions.create(base, fault({ latency_ms: 120 }));
    expect(performance.now() - t).toBeGreaterThanOrEqual(110);
    t = performance.now();
    const stream = await client.chat.completions.create({ ...base, stream: true, max_tokens: 3 }, fault({ inter_token_ms: 30 }));
    const arrivals: number[] = [];
    for await (const _ of stream) arrivals.push(performance.now() - t);
    expect(arrivals).toHaveLength(5); // role, 3 tokens, finish
    expect(arrivals[4]! - arrivals[0]!).toBeGreaterThanOrEqual(4 * 30 - 10);
  });

  it('process-wide defaults apply to every request', async () => {
    const slow = await startMockUpstream({ latencyMs: 100 });
    try {
      const t = performance.now();
      expect((await post('/v1/chat/completions', base, {}, slow.url)).status).toBe(200);
      expect(performance.now() - t).toBeGreaterThanOrEqual(90);
    } finally {
      await slow.close();
    }
  });
});

describe('bad fault specs', () => {
  it('answers 400 naming the field, from the header or the body', async () => {
    const r1 = await post('/v1/chat/completions', base, { 'x-mock-fault': '{"status":"soon"}' });
    expect(r1.status).toBe(400);
    expect(((await r1.json()) as { error: { param: string } }).error).toMatchObject({
      param: 'x-mock-fault.status',
      type: 'invalid_request_error',
    });
    const r2 = await post('/v1/chat/completions', { ...base, mock: { stall: true, nap: 1 } });
    const e2 = ((await r2.json()) as { error: { param: string; message: string } }).error;
    expect(r2.status).toBe(400);
    expect(e2.param).toBe('mock');
    expect(e2.message).toContain('nap');
    const r3 = await post('/v1/chat/completions', base, { 'x-mock-fault': '{oops' });
    expect(r3.status).toBe(400);
    expect(((await r3.json()) as { error: { param: string } }).error.param).toBe('x-mock-fault');
  });
});

describe('broken answers (corrupt)', () => {
  it('answers 200 with a truncated or garbage body', async () => {
    const truncated = await post('/v1/chat/completions', base, { 'x-mock-fault': JSON.stringify({ corrupt: 'truncated' }) });
    expect(truncated.status).toBe(200);
    const text = await truncated.text();
    expect(text.startsWith('{"id":"chatcmpl-')).toBe(true);
    expect(() => JSON.parse(text)).toThrow();
    const garbage = await post('/v1/chat/completions', base, { 'x-mock-fault': JSON.stringify({ corrupt: 'garbage' }) });
    expect(garbage.status).toBe(200);
    expect(await garbage.text()).toContain('<html>');
    expect(mock.requests().map((r) => r.outcome)).toEqual(['fault', 'fault']);
  });

  it('streams one event with broken data after corrupt_after_chunks good ones, then the rest', async () => {
    const res = await post('/v1/chat/completions', { ...base, stream: true, mock: { corrupt: 'garbage', corrupt_after_chunks: 2 } });
    const events = (await res.text()).split('\n\n').filter((e) => e.startsWith('data: '));
    expect(JSON.parse(events[0]!.slice(6)).object).toBe('chat.completion.chunk');
    expect(JSON.parse(events[1]!.slice(6)).object).toBe('chat.completion.chunk');
    expect(events[2]).toBe('data: <html><body>502 Bad Gateway</body></html>');
    expect(JSON.parse(events[3]!.slice(6)).object).toBe('chat.completion.chunk');
    expect(events.at(-1)).toBe('data: [DONE]');
    // fail_times gates it like any failure
    const spec = { corrupt: 'truncated', fail_times: 1, key: 'c1' };
    const first = await post('/v1/chat/completions', base, { 'x-mock-fault': JSON.stringify(spec) });
    await expect(first.text().then((t) => JSON.parse(t))).rejects.toThrow();
    const second = await post('/v1/chat/completions', base, { 'x-mock-fault': JSON.stringify(spec) });
    expect((await second.json()).object).toBe('chat.completion');
  });
});
