// Text completions, embeddings and models of the mock upstream through the official openai client.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockUpstream, startMockUpstream } from '../../src/mock/server.js';

let mock: MockUpstream;
let client: OpenAI;
beforeAll(async () => {
  mock = await startMockUpstream({ embeddingDim: 64, completionTokens: 12 });
  client = new OpenAI({ baseURL: `${mock.url}/v1`, apiKey: 'x', maxRetries: 0 });
});
afterAll(() => mock.close());

const norm = (v: number[]): number => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const cosine = (a: number[], b: number[]): number => a.reduce((s, x, i) => s + x * b[i]!, 0) / (norm(a) * norm(b));

describe('completions', () => {
  it('answers text_completion with every field, deterministically', async () => {
    const r = await client.completions.create({ model: 'mock-weak', prompt: 'Once upon a time' });
    expect(r.id).toMatch(/^cmpl-/);
    expect(r).toMatchObject({ object: 'text_completion', model: 'mock-weak' });
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]).toMatchObject({ index: 0, logprobs: null, finish_reason: 'stop' });
    const words = r.choices[0]!.text.split(' ').length;
    expect(words).toBeGreaterThanOrEqual(8);
    expect(words).toBeLessThanOrEqual(12);
    expect(r.usage).toMatchObject({ prompt_tokens: 4, completion_tokens: words, total_tokens: 4 + words });
    const again = await client.completions.create({ model: 'mock-weak', prompt: 'Once upon a time' });
    expect(again.choices[0]!.text).toBe(r.choices[0]!.text);
  });

  it('orders choices prompt by prompt, n each, and caps at max_tokens', async () => {
    const r = await client.completions.create({ model: 'mock-weak', prompt: ['a', 'b'], n: 2, max_tokens: 3 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(new Set(r.choices.map((c) => c.text)).size).toBe(4);
    for (const c of r.choices) {
      expect(c.finish_reason).toBe('length');
      expect(c.text.split(' ')).toHaveLength(3);
    }
    expect(r.usage).toMatchObject({ prompt_tokens: 2, completion_tokens: 12 });
    const single = await client.completions.create({ model: 'mock-weak', prompt: 'b', max_tokens: 3 });
    expect(single.choices[0]!.text).toBe(r.choices[2]!.text);
    const ids = await client.completions.create({ model: 'mock-weak', prompt: [1, 2, 3], max_tokens: 2 });
    expect(ids.usage!.prompt_tokens).toBe(3);
  });

  it('streams the same text, with usage last when asked', async () => {
    const plain = await client.completions.create({ model: 'mock-weak', prompt: 'Stream me' });
    const stream = await client.completions.create({
      model: 'mock-weak',
      prompt: 'Stream me',
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null = null;
    let usage: unknown = undefined;
    let chunks = 0;
    for await (const c of stream) {
      chunks++;
      expect(c.object).toBe('text_completion');
      text += c.choices[0]?.text ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(plain.choices[0]!.text);
    expect(finish).toBe('stop');
    expect(usage).toEqual(plain.usage);
    expect(chunks).toBe(plain.usage!.completion_tokens + 2); // tokens, finish chunk, usage chunk
  });
});

describe('embeddings', () => {
  it('returns equal unit vectors as float and as base64 (the client default), of the asked dimension', async () => {
    const input = ['The court ruled on the contract.', 'A river flows to the sea.'];
    const asFloat = await client.embeddings.create({ model: 'mock-embedding', input, encoding_format: 'float' });
    const asB64 = await client.embeddings.create({ model: 'mock-embedding', input }); // client sends base64, decodes
    expect(asFloat).toMatchObject({ object: 'list', model: 'mock-embedding' });
    expect(asFloat.data.map((d) => [d.object, d.index])).toEqual([
      ['embedding', 0],
      ['embedding', 1],
    ]);
    for (let i = 0; i < 2; i++) {
      const f = asFloat.data[i]!.embedding;
      expect(f).toHaveLength(64);
      expect(Math.abs(norm(f) - 1)).toBeLessThan(1e-5);
      expect(asB64.data[i]!.embedding).toEqual(f);
    }
    expect(asFloat.data[0]!.embedding).not.toEqual(asFloat.data[1]!.embedding);
    const tokens = Math.ceil(input[0]!.length / 4) + Math.ceil(input[1]!.length / 4);
    expect(asFloat.usage).toEqual({ prompt_tokens: tokens, total_tokens: tokens });

    const raw = await fetch(`${mock.url}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-embedding', input: input[0], encoding_format: 'base64' }),
    });
    const body = (await raw.json()) as { data: { embedding: string }[] };
    expect(typeof body.data[0]!.embedding).toBe('string');
    const buf = Buffer.from(body.data[0]!.embedding, 'base64');
    const decoded = Array.from({ length: buf.length / 4 }, (_, i) => buf.readFloatLE(i * 4));
    expect(decoded).toEqual(asFloat.data[0]!.embedding);
  });

  it('honours dimensions, token-id inputs, and keeps shared words closer than unrelated text', async () => {
    const r = await client.embeddings.create({ model: 'mock-embedding', input: 'hello', dimensions: 8, encoding_format: 'float' });
    expect(r.data[0]!.embedding).toHaveLength(8);
    const ids = await client.embeddings.create({ model: 'mock-embedding', input: [[1, 2, 3], [4]], encoding_format: 'float' });
    expect(ids.data).toHaveLength(2);
    expect(ids.usage.prompt_tokens).toBe(4);
    const [a, b, c] = (
      await client.embeddings.create({
        model: 'mock-embedding',
        input: ['the court ruled on the contract law', 'the court ruled on the tort law', 'orbit of a small planet'],
        encoding_format: 'float',
      })
    ).data.map((d) => d.embedding);
    expect(cosine(a!, b!)).toBeGreaterThan(cosine(a!, c!));
  });
});

describe('models', () => {
  it('lists fixed models and retrieves any id', async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) {
      expect(m).toMatchObject({ object: 'model', owned_by: 'signalman-mock' });
      expect(m.created).toEqual(expect.any(Number));
      ids.push(m.id);
    }
    expect(ids).toEqual(['mock-strong', 'mock-weak', 'mock-embedding']);
    expect(await client.models.retrieve('gpt-x')).toMatchObject({ id: 'gpt-x', object: 'model' });
  });
});
