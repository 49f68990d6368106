// Retries, fallbacks and cancellation, observed from both ends: what the client got and what the mock saw.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callsTo, startStack, waitFor, type Stack } from '../helpers/stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(() => stack.close());

const msg = [{ role: 'user' as const, content: 'resilience please' }];

describe('retries and fallbacks', () => {
  it('retries a failing backend with backoff and succeeds without the client noticing', async () => {
    stack.mock.reset();
    const { data, response } = await stack
      .client()
      // @ts-expect-error: fault injection — the first two calls with this key fail with 503
      .chat.completions.create({ model: 'strong', messages: msg, mock: { status: 503, fail_times: 2, key: 'retry-1' } })
      .withResponse();
    expect(data.choices[0]?.message.content).toBeTruthy();
    expect(response.headers.get('x-signalman-model')).toBe('strong');
    expect(callsTo(stack.mock, '/strong/').map((r) => r.outcome)).toEqual(['fault', 'fault', 'completed']);
  });

  it('falls back to the policy fallback once the chosen backend has spent its retries', async () => {
    stack.mock.reset();
    const { data, response } = await stack
      .client()
      // @ts-expect-error: fault injection — every call to the weak backend fails
      .chat.completions.create({ model: 'auto', messages: msg, mock: { status: 500, only_paths: ['/weak/'] } })
      .withResponse();
    expect(data.model).toBe('gpt-4-1106-preview');
    expect(response.headers.get('x-signalman-model')).toBe('strong');
    expect(response.headers.get('x-signalman-policy')).toBe('auto');
    expect(callsTo(stack.mock, '/weak/')).toHaveLength(2); // 1 + max_retries
    expect(callsTo(stack.mock, '/strong/')).toHaveLength(1);
    const ev = stack.sink.records.at(-1);
    expect(ev?.attempts.map((a) => [a.backend, a.status])).toEqual([
      ['weak', 500],
      ['weak', 500],
      ['strong', 200],
    ]);
  });

  it('falls back on a connection reset before the first byte of a stream', async () => {
    stack.mock.reset();
    const stream = await stack
      .client()
      // @ts-expect-error: fault injection — the weak backend drops the connection
      .chat.completions.create({ model: 'auto', messages: msg, stream: true, mock: { destroy: true, only_paths: ['/weak/'] } });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    expect(text.length).toBeGreaterThan(0);
    expect(callsTo(stack.mock, '/strong/')).toHaveLength(1);
  });

  it('does not retry a client error (4xx) or fall back from it', async () => {
    stack.mock.reset();
    // @ts-expect-error: fault injection
    const err = await stack
      .client()
      .chat.completions.create({ model: 'auto', messages: msg, mock: { status: 400 } })
      .catch((e: unknown) => e);
    expect((err as { status?: number }).status).toBe(400);
    expect(stack.mock.requests()).toHaveLength(1);
  });
});

describe('client aborts', () => {
  it('cancels the upstream request when the client goes away mid-stream', async () => {
    stack.mock.reset();
    const controller = new AbortController();
    const stream = await stack
      .client()
      // @ts-expect-error: fault injection — a slow stream
      .chat.completions.create(
        { model: 'weak', messages: msg, stream: true, max_tokens: 200, mock: { inter_token_ms: 50 } },
        { signal: controller.signal },
      );
    let chunks = 0;
    await (async () => {
      for await (const _ of stream) {
        if (++chunks === 2) controller.abort();
      }
    })().catch(() => undefined);
    await waitFor(() => callsTo(stack.mock, '/weak/')[0]?.outcome === 'aborted');
    await waitFor(() => stack.sink.records.at(-1)?.outcome === 'client_abort');
  });

  it('cancels the upstream request when the client goes away while waiting for headers', async () => {
    stack.mock.reset();
    const controller = new AbortController();
    const pending = stack
      .client()
      // @ts-expect-error: fault injection — a slow upstream
      .chat.completions.create({ model: 'weak', messages: msg, mock: { latency_ms: 1500 } }, { signal: controller.signal })
      .catch(() => 'aborted');
    await waitFor(() => callsTo(stack.mock, '/weak/').length === 1);
    controller.abort();
    expect(await pending).toBe('aborted');
    await waitFor(() => callsTo(stack.mock, '/weak/')[0]?.outcome === 'aborted', 1000);
    // Nothing was retried or sent to a fallback on the client's behalf.
    expect(callsTo(stack.mock, '/strong/')).toHaveLength(0);
  });
});

describe('client aborts before the first streamed event', () => {
  it('cancels the upstream stream that has sent headers but no event yet', async () => {
    stack.mock.reset();
    const controller = new AbortController();
    const pending = stack
      .client()
      // @ts-expect-error: fault injection — a stream whose first token is slow
      .chat.completions.create({ model: 'weak', messages: msg, stream: true, mock: { ttft_ms: 1500 } }, { signal: controller.signal })
      .then(async (s) => {
        for await (const _ of s) return 'got an event';
        return 'ended';
      })
      .catch(() => 'aborted');
    await waitFor(() => callsTo(stack.mock, '/weak/').length === 1);
    await new Promise((r) => setTimeout(r, 100)); // the mock has flushed its headers by now
    controller.abort();
    expect(await pending).toBe('aborted');
    await waitFor(() => callsTo(stack.mock, '/weak/')[0]?.outcome === 'aborted', 1000);
    await waitFor(() => stack.sink.records.at(-1)?.outcome === 'client_abort');
    expect(callsTo(stack.mock, '/strong/')).toHaveLength(0);
  });
});

describe('shutdown', () => {
  it('lets in-flight requests finish, then refuses new ones', async () => {
    const own = await startStack();
    const client = own.client();
    // @ts-expect-error: fault injection — a slow upstream
    const inFlight = client.chat.completions.create({ model: 'weak', messages: msg, mock: { latency_ms: 400 } });
    await waitFor(() => callsTo(own.mock, '/weak/').length === 1);
    const closing = own.gw.close(5000);
    const res = await inFlight;
    expect(res.choices[0]?.message.content).toBeTruthy();
    await closing;
    const after = await client.chat.completions.create({ model: 'weak', messages: msg }).catch((e: unknown) => e);
    expect(after).toBeInstanceOf(Error);
    await own.close();
  });
});
