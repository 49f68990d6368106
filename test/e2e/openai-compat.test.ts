// The official `openai` client against a listening gateway and the mock upstream: what app developers
// rely on when they change only baseURL.
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callsTo, startStack, type Stack } from '../helpers/stack.js';

let stack: Stack;
let client: OpenAI;
beforeAll(async () => {
  stack = await startStack();
  client = stack.client();
});
afterAll(() => stack.close());

const ask = [{ role: 'user' as const, content: 'What is a tort?' }];

describe('chat completions through the gateway', () => {
  it('answers a plain request routed by the policy, with the routing headers', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'auto', messages: ask }).withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.choices[0]?.message.content).toMatch(/\w+/);
    expect(data.usage?.completion_tokens).toBeGreaterThan(0);
    expect(response.headers.get('x-signalman-model')).toBe('weak');
    expect(response.headers.get('x-signalman-policy')).toBe('auto');
    expect(response.headers.get('x-signalman-request-id')).toMatch(/^[0-9a-f]{6}-[0-9a-z]+$/);
    expect(response.headers.get('server-timing')).toMatch(/gw;desc="gateway overhead";dur=[\d.]+, route;dur=[\d.]+, upstream;dur=[\d.]+/);
    // The upstream saw its own model id, not the virtual one.
    expect(data.model).toBe('mixtral-8x7b-instruct-v0.1');
  });

  it('reaches a backend directly by its name, without a policy header', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'strong', messages: ask }).withResponse();
    expect(data.model).toBe('gpt-4-1106-preview');
    expect(response.headers.get('x-signalman-model')).toBe('strong');
    expect(response.headers.get('x-signalman-policy')).toBeNull();
  });

  it('streams chunks as SSE and reports usage in the last chunk when asked', async () => {
    const { data, response } = await client.chat.completions
      .create({ model: 'auto', messages: ask, stream: true, stream_options: { include_usage: true }, max_tokens: 12 })
      .withResponse();
    expect(response.headers.get('content-type')).toMatch(/text\/event-stream/);
    expect(response.headers.get('x-signalman-model')).toBe('weak');
    let text = '';
    let chunks = 0;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const c of data) {
      chunks++;
      text += c.choices[0]?.delta?.content ?? '';
      if (c.usage) usage = c.usage;
    }
    expect(chunks).toBeGreaterThan(3);
    expect(text.split(' ').length).toBe(12);
    expect(usage?.completion_tokens).toBe(12);
    // Same deterministic answer as the non-streamed call.
    const plain = await client.chat.completions.create({ model: 'auto', messages: ask, max_tokens: 12 });
    expect(plain.choices[0]?.message.content).toBe(text);
    expect(plain.usage?.prompt_tokens).toBe(usage?.prompt_tokens);
  });

  it('streams without usage when include_usage is not set', async () => {
    const stream = await client.chat.completions.create({ model: 'auto', messages: ask, stream: true, max_tokens: 3 });
    const usages: unknown[] = [];
    for await (const c of stream) usages.push(c.usage);
    expect(usages.every((u) => u === null || u === undefined)).toBe(true);
  });

  it('carries a tool call round-trip, plain and streamed', async () => {
    const tools: OpenAI.ChatCompletionTool[] = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        },
      },
    ];
    const first = await client.chat.completions.create({
      model: 'auto',
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
      tools,
    });
    const call = first.choices[0]?.message.tool_calls?.[0];
    expect(first.choices[0]?.finish_reason).toBe('tool_calls');
    expect(call?.type).toBe('function');
    if (call?.type !== 'function') throw new Error('expected a function call');
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toHaveProperty('city');

    const second = await client.chat.completions.create({
      model: 'auto',
      tools,
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: [call] },
        { role: 'tool', tool_call_id: call.id, content: '{"temp_c": 21}' },
      ],
    });
    expect(second.choices[0]?.message.content).toContain('{"temp_c": 21}');

    const streamed = client.chat.completions.stream({ model: 'auto', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools });
    const final = await streamed.finalChatCompletion();
    const streamedCall = final.choices[0]?.message.tool_calls?.[0];
    expect(streamedCall?.type === 'function' && streamedCall.function.name).toBe('get_weather');
    expect(streamedCall?.type === 'function' && JSON.parse(streamedCall.function.arguments)).toEqual(JSON.parse(call.function.arguments));
  });

  it('passes unknown fields, response_format and tools through untouched, and sends the backend key instead of the client key', async () => {
    stack.mock.reset();
    await client.chat.completions.create(
      // @ts-expect-error: a field the gateway has never heard of must reach the upstream as sent
      { model: 'strong', messages: ask, response_format: { type: 'json_object' }, seed: 7, vendor_extension: { a: [1, 2] } },
      {
        headers: {
          cookie: 'session=secret',
          'x-forwarded-for': '10.0.0.1',
          'proxy-authorization': 'Basic eA==',
          'openai-beta': 'assistants=v2',
        },
      },
    );
    const [seen] = callsTo(stack.mock, '/strong/');
    expect(seen).toBeDefined();
    const body = seen?.body as Record<string, unknown>;
    expect(body.model).toBe('gpt-4-1106-preview');
    expect(body.response_format).toEqual({ type: 'json_object' });
    expect(body.seed).toBe(7);
    expect(body.vendor_extension).toEqual({ a: [1, 2] });
    const h = seen?.headers ?? {};
    expect(h.authorization).toBe('Bearer sk-strong-backend-key');
    expect(h.cookie).toBeUndefined();
    expect(h['x-forwarded-for']).toBeUndefined();
    expect(h['proxy-authorization']).toBeUndefined();
    expect(h['openai-beta']).toBe('assistants=v2');
    expect(h['x-signalman-request-id']).toMatch(/-/);
  });

  it('does not send any Authorization to a backend without a key, even if the client sent one', async () => {
    stack.mock.reset();
    await client.chat.completions.create({ model: 'weak', messages: ask });
    expect(callsTo(stack.mock, '/weak/')[0]?.headers.authorization).toBeUndefined();
  });
});

describe('other endpoints', () => {
  it('serves legacy completions, plain and streamed', async () => {
    const plain = await client.completions.create({ model: 'auto', prompt: 'Say hi', max_tokens: 4 });
    expect(plain.object).toBe('text_completion');
    expect(plain.choices[0]?.text.split(' ').length).toBe(4);
    let text = '';
    for await (const c of await client.completions.create({ model: 'auto', prompt: 'Say hi', max_tokens: 4, stream: true })) {
      text += c.choices[0]?.text ?? '';
    }
    expect(text).toBe(plain.choices[0]?.text);
  });

  it('serves embeddings in both encodings (the client asks for base64 by default)', async () => {
    const b64 = await client.embeddings.create({ model: 'weak', input: ['alpha', 'beta'] });
    const flt = await client.embeddings.create({ model: 'weak', input: ['alpha', 'beta'], encoding_format: 'float' });
    expect(b64.data).toHaveLength(2);
    const a = b64.data[0]?.embedding ?? [];
    const b = flt.data[0]?.embedding ?? [];
    expect(a.length).toBeGreaterThan(0);
    expect(a.length).toBe(b.length);
    for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i] as number, 6);
  });

  it('lists backends and virtual policy models', async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids.sort()).toEqual(['auto', 'strong', 'weak']);
    const one = await client.models.retrieve('auto');
    expect(one.owned_by).toBe('signalman-policy');
  });

  it('reports health and readiness', async () => {
    const health = await fetch(`${stack.gw.url}/healthz`);
    expect(health.status).toBe(200);
    const ready = await fetch(`${stack.gw.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, generation: 1, policies: ['auto'] });
  });
});
