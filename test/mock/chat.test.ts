// Chat completions of the mock upstream, driven by the official openai client over a real socket.
import OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockUpstream, startMockUpstream } from '../../src/mock/server.js';

let mock: MockUpstream;
let client: OpenAI;
beforeAll(async () => {
  mock = await startMockUpstream({ completionTokens: 24 });
  client = new OpenAI({ baseURL: `${mock.url}/v1`, apiKey: 'x', maxRetries: 0 });
});
afterAll(() => mock.close());

const messages: ChatCompletionMessageParam[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'What is a tort?' },
];

const weather: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string' },
        days: { type: 'integer', minimum: 1, maximum: 7 },
        unit: { type: 'string', enum: ['c', 'f'] },
        detailed: { type: 'boolean' },
      },
      required: ['city', 'days', 'unit'],
    },
  },
};
const clock: ChatCompletionTool = { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } };

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

describe('chat completions (plain)', () => {
  it('answers with every field of OpenAI’s ChatCompletion and echoes the model', async () => {
    const r = await client.chat.completions.create({ model: 'mock-strong', messages });
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r).toMatchObject({ object: 'chat.completion', model: 'mock-strong', service_tier: 'default' });
    expect(r.system_fingerprint).toEqual(expect.any(String));
    expect(r.created).toBeGreaterThan(1_600_000_000);
    expect(r.choices).toHaveLength(1);
    const c = r.choices[0]!;
    expect(c).toMatchObject({ index: 0, logprobs: null, finish_reason: 'stop' });
    expect(c.message).toMatchObject({ role: 'assistant', refusal: null, annotations: [] });
    expect(c.message.content).toMatch(/^[A-Z]\w*( \w+)*\.$/);
    const words = c.message.content!.split(' ').length;
    expect(words).toBeGreaterThanOrEqual(8);
    expect(words).toBeLessThanOrEqual(24);
    expect(r.usage).toEqual({
      prompt_tokens: 4 + Math.ceil('You are terse.'.length / 4) + 4 + Math.ceil('What is a tort?'.length / 4),
      completion_tokens: words,
      total_tokens: r.usage!.prompt_tokens + words,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    });
  });

  it('is deterministic for the same request and differs for another model or prompt', async () => {
    const a = await client.chat.completions.create({ model: 'mock-strong', messages });
    const b = await client.chat.completions.create({ model: 'mock-strong', messages });
    const other = await client.chat.completions.create({ model: 'mock-weak', messages });
    const otherPrompt = await client.chat.completions.create({ model: 'mock-strong', messages: [{ role: 'user', content: 'Hi' }] });
    expect(b.choices[0]!.message.content).toBe(a.choices[0]!.message.content);
    expect(b.id).not.toBe(a.id);
    expect(other.choices[0]!.message.content).not.toBe(a.choices[0]!.message.content);
    expect(otherPrompt.choices[0]!.message.content).not.toBe(a.choices[0]!.message.content);
  });

  it('honours n with distinct choices and sums completion tokens over them', async () => {
    const r = await client.chat.completions.create({ model: 'mock-strong', messages, n: 2 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1]);
    const [a, b] = r.choices.map((c) => c.message.content!);
    expect(a).not.toBe(b);
    const tokens = a!.split(' ').length + b!.split(' ').length;
    expect(r.usage!.completion_tokens).toBe(tokens);
  });

  it('cuts at max_tokens / max_completion_tokens and reports finish_reason length', async () => {
    const r = await client.chat.completions.create({ model: 'mock-strong', messages, max_tokens: 3 });
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.choices[0]!.message.content!.split(' ')).toHaveLength(3);
    expect(r.usage!.completion_tokens).toBe(3);
    const full = await client.chat.completions.create({ model: 'mock-strong', messages });
    // The cut answer is a prefix of the natural one, without its final full stop.
    expect(full.choices[0]!.message.content!.startsWith(r.choices[0]!.message.content!)).toBe(true);
    const r2 = await client.chat.completions.create({ model: 'mock-strong', messages, max_completion_tokens: 2, max_tokens: 10 });
    expect(r2.usage!.completion_tokens).toBe(2);
    const big = await client.chat.completions.create({ model: 'mock-strong', messages, max_tokens: 1000 });
    expect(big.choices[0]!.finish_reason).toBe('stop');
  });
});

describe('chat completions (stream)', () => {
  it('streams role, one token per chunk, finish, [DONE]; text equals the plain answer', async () => {
    const plain = await client.chat.completions.create({ model: 'mock-strong', messages });
    const chunks = await collect(await client.chat.completions.create({ model: 'mock-strong', messages, stream: true }));
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '', refusal: null });
    const last = chunks[chunks.length - 1]!;
    expect(last.choices[0]).toMatchObject({ delta: {}, finish_reason: 'stop' });
    const tokens = chunks.slice(1, -1).map((c) => c.choices[0]!.delta.content);
    expect(tokens).toHaveLength(plain.usage!.completion_tokens);
    expect(tokens.join('')).toBe(plain.choices[0]!.message.content);
    for (const c of chunks) {
      expect(c).toMatchObject({ object: 'chat.completion.chunk', model: 'mock-strong', id: chunks[0]!.id });
      expect(c.usage).toBeUndefined(); // no include_usage: no usage key at all
    }
  });

  it('with include_usage: usage null on every chunk, then a final choices:[] chunk with the plain usage', async () => {
    const plain = await client.chat.completions.create({ model: 'mock-strong', messages, max_tokens: 5 });
    const chunks = await collect(
      await client.chat.completions.create({
        model: 'mock-strong',
        messages,
        max_tokens: 5,
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    const last = chunks[chunks.length - 1]!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual(plain.usage);
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
    expect(chunks[chunks.length - 2]!.choices[0]!.finish_reason).toBe('length');
  });

  it('accumulates through the client’s stream helper, n=2 included', async () => {
    const plain = await client.chat.completions.create({ model: 'mock-weak', messages, n: 2 });
    const final = await client.chat.completions.stream({ model: 'mock-weak', messages, n: 2 }).finalChatCompletion();
    expect(final.choices.map((c) => c.message.content)).toEqual(plain.choices.map((c) => c.message.content));
  });
});

describe('tools', () => {
  it('calls the first tool with arguments that fill its required parameters', async () => {
    const r = await client.chat.completions.create({ model: 'mock-strong', messages, tools: [weather, clock] });
    const c = r.choices[0]!;
    expect(c.finish_reason).toBe('tool_calls');
    expect(c.message.content).toBeNull();
    const call = c.message.tool_calls![0]!;
    expect(call.id).toMatch(/^call_/);
    expect(call.type).toBe('function');
    if (call.type !== 'function') throw new Error('expected a function call');
    expect(call.function.name).toBe('get_weather');
    const args = JSON.parse(call.function.arguments) as Record<string, unknown>;
    expect(Object.keys(args).sort()).toEqual(['city', 'days', 'unit']);
    expect(args.city).toEqual(expect.any(String));
    expect(Number.isInteger(args.days) && (args.days as number) >= 1 && (args.days as number) <= 7).toBe(true);
    expect(['c', 'f']).toContain(args.unit);
    const again = await client.chat.completions.create({ model: 'mock-strong', messages, tools: [weather, clock] });
    expect(again.choices[0]!.message.tool_calls![0]).toMatchObject({ function: call.function });
  });

  it('follows tool_choice: a named function, or none for text', async () => {
    const named = await client.chat.completions.create({
      model: 'mock-strong',
      messages,
      tools: [weather, clock],
      tool_choice: { type: 'function', function: { name: 'get_time' } },
    });
    const call = named.choices[0]!.message.tool_calls![0]!;
    expect(call.type === 'function' && call.function).toEqual({ name: 'get_time', arguments: '{}' });
    const none = await client.chat.completions.create({ model: 'mock-strong', messages, tools: [weather], tool_choice: 'none' });
    expect(none.choices[0]!.finish_reason).toBe('stop');
    expect(none.choices[0]!.message.tool_calls).toBeUndefined();
    await expect(
      client.chat.completions.create({
        model: 'mock-strong',
        messages,
        tools: [weather],
        tool_choice: { type: 'function', function: { name: 'nope' } },
      }),
    ).rejects.toMatchObject({ status: 400, param: 'tool_choice.function.name' });
  });

  it('streams the tool call; the stream helper rebuilds the same call as the plain answer', async () => {
    const plain = await client.chat.completions.create({ model: 'mock-strong', messages, tools: [weather] });
    const stream = client.chat.completions.stream({ model: 'mock-strong', messages, tools: [weather] });
    const final = await stream.finalChatCompletion();
    const got = final.choices[0]!;
    expect(got.finish_reason).toBe('tool_calls');
    const want = plain.choices[0]!.message.tool_calls![0]!;
    const call = got.message.tool_calls![0]!;
    expect(call.type === 'function' && want.type === 'function' && call.function.arguments).toBe(
      want.type === 'function' && want.function.arguments,
    );
    expect(call.id).toMatch(/^call_/);
  });

  it('round-trips a tool result: the answer quotes it verbatim, plain and streamed', async () => {
    const first = await client.chat.completions.create({ model: 'mock-strong', messages, tools: [weather] });
    const call = first.choices[0]!.message.tool_calls![0]!;
    const result = '{"temp_c": 21.5, "sky": "clear"}';
    const followUp: ChatCompletionMessageParam[] = [
      ...messages,
      { role: 'assistant', content: null, tool_calls: first.choices[0]!.message.tool_calls! },
      { role: 'tool', tool_call_id: call.id, content: result },
    ];
    const r = await client.chat.completions.create({ model: 'mock-strong', messages: followUp, tools: [weather] });
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.choices[0]!.message.content).toContain(result);
    let text = '';
    for await (const c of await client.chat.completions.create({
      model: 'mock-strong',
      messages: followUp,
      tools: [weather],
      stream: true,
    })) {
      text += c.choices[0]?.delta.content ?? '';
    }
    expect(text).toBe(r.choices[0]!.message.content);
  });
});
