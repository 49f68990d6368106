import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRemoteEmbedder, RemoteOptions } from '../../src/embedders/remote.js';
import { LexicalOptions, LexicalVectorizer } from '../../src/embedders/lexical.js';
import { SignalmanError } from '../../src/errors.js';
import { startStubEmbeddings, type StubServer } from './stub-embeddings-server.js';

const DIM = 32;
let stub: StubServer;
beforeAll(async () => {
  stub = await startStubEmbeddings(DIM);
});
afterAll(() => stub.close());

const opts = (o: Partial<RemoteOptions> = {}): RemoteOptions =>
  RemoteOptions.parse({ type: 'remote', base_url: stub.baseURL, model: 'emb-small', dim: DIM, ...o });
const lex = new LexicalVectorizer(LexicalOptions.parse({ type: 'lexical', dim: DIM }));
const close = (a: Float32Array, b: Float32Array) => a.every((x, i) => Math.abs(x - b[i]!) < 1e-6);

describe('remote embedder', () => {
  it('posts to {base_url}/embeddings with model, key and input, and normalises the answer', async () => {
    stub.behaviour = {};
    const e = createRemoteEmbedder(opts({ api_key_env: 'EMB_KEY' }), { EMB_KEY: 'sk-test' });
    expect(e.id).toBe('remote/v1/emb-small/d32/m8192');
    const v = await e.embed('What is a tort?');
    const last = stub.requests.at(-1)!;
    expect(last.auth).toBe('Bearer sk-test');
    expect(last.body).toMatchObject({ model: 'emb-small', input: ['What is a tort?'] });
    expect(last.body.dimensions).toBeUndefined();
    expect(close(v, lex.vectorize('What is a tort?'))).toBe(true); // unit length again after the ×3
    await e.close();
  });

  it('batches embedMany by max_batch, keeps order by index, and reads base64 vectors', async () => {
    stub.behaviour = { reverse: true, base64: true };
    const e = createRemoteEmbedder(opts({ max_batch: 2, send_dimensions: true }));
    const before = stub.requests.length;
    const texts = ['one', 'two', 'three', 'four', 'five'];
    const progress: number[] = [];
    const vs = await e.embedMany(texts, (d) => progress.push(d));
    expect(stub.requests.length - before).toBe(3);
    expect(stub.requests.at(-1)!.body.dimensions).toBe(DIM);
    expect(progress).toEqual([2, 4, 5]);
    texts.forEach((t, i) => expect(close(vs[i]!, lex.vectorize(t))).toBe(true));
    // An empty prompt is sent as a space (OpenAI refuses empty strings) and still gives a vector.
    expect((await e.embed('')).length).toBe(DIM);
    expect(stub.requests.at(-1)!.body.input).toEqual([' ']);
    await e.close();
  });

  it('fails clearly on a wrong dimension, an HTTP error or a malformed body', async () => {
    const e = createRemoteEmbedder(opts());
    stub.behaviour = { answerDim: 16 };
    await expect(e.embed('x')).rejects.toThrow(/dimension 16, but dim is 32/);
    stub.behaviour = { status: 401, rawBody: '{"error":{"message":"bad key"}}' };
    const err = await e.embed('x').catch((x: unknown) => x);
    expect(err).toBeInstanceOf(SignalmanError);
    expect((err as SignalmanError).code).toBe('upstream_bad_response');
    expect((err as SignalmanError).message).toMatch(/HTTP 401.*bad key/);
    stub.behaviour = { rawBody: '{"data":"nope"}' };
    await expect(e.embed('x')).rejects.toThrow(/not an embeddings list/);
    stub.behaviour = { rawBody: '{"data":[]}' };
    await expect(e.embed('x')).rejects.toThrow(/0 embeddings for 1 inputs/);
    await e.close();
  });

  it('times out with upstream_timeout, and a caller abort wins over the timeout', async () => {
    stub.behaviour = { delayMs: 400 };
    const e = createRemoteEmbedder(opts({ timeout_ms: 50 }));
    const err = await e.embed('slow').catch((x: unknown) => x);
    expect((err as SignalmanError).code).toBe('upstream_timeout');
    const e2 = createRemoteEmbedder(opts({ timeout_ms: 5_000 }));
    const ac = new AbortController();
    const p = e2.embed('slow', ac.signal);
    setTimeout(() => ac.abort(new Error('client went away')), 20);
    await expect(p).rejects.toThrow('client went away');
    await Promise.all([e.close(), e2.close()]);
  });

  it('reports an unreachable endpoint and a missing key variable', async () => {
    stub.behaviour = {};
    const e = createRemoteEmbedder(opts({ base_url: 'http://127.0.0.1:9/v1' }));
    const err = await e.embed('x').catch((x: unknown) => x);
    expect((err as SignalmanError).code).toBe('upstream_unavailable');
    expect((err as Error).message).toContain('http://127.0.0.1:9/v1/embeddings');
    await e.close();
    expect(() => createRemoteEmbedder(opts({ api_key_env: 'NOPE_NOT_SET' }), {})).toThrow(/NOPE_NOT_SET.*not set/);
    expect(RemoteOptions.safeParse({ type: 'remote', base_url: 'not a url' }).success).toBe(false);
  });
});
