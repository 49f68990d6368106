// Client keys and their limits, through real HTTP with the official client: 401 without a valid key,
// 403 for a model the key may not use, the key id (never the secret) in records and the access log,
// limits and budgets counted in the real Redis and shared by two replicas, and what Redis failing does.
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load.js';
import { startGateway } from '../../src/server/listen.js';
import { MemorySink } from '../../src/telemetry/memory-sink.js';
import { startMockUpstream, type MockUpstream } from '../../src/mock/server.js';
import { deletePrefix, freePort, PrivateRedis, REDIS_URL, uniquePrefix } from '../helpers/redis.js';
import { startStack, twoBackends, type Stack } from '../helpers/stack.js';

const HASHED = 'sk-team-a-5b1c9e0d';
const FROM_ENV = 'sk-team-b-77aa01f3';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const backends = (url: string) => twoBackends(url).split('policies:')[0] as string;

const keysConfig = (url: string, prefix: string | null, extraKeys = '', extraPolicy = '') => `${backends(url)}
policies:
  - name: auto
    candidates: [strong, weak]
    router: { type: fixed, backend: strong }
    on_budget_exceeded: downgrade
  - name: premium
    candidates: [strong, weak]
    router: { type: fixed, backend: strong }
${extraPolicy}
keys:
  - { id: team-a, secret_sha256: ${sha(HASHED)}, policies: [auto] }
  - { id: team-b, secret_env: TEST_TEAM_B_KEY, policies: ['*'], backends: [weak] }
${extraKeys}
${prefix === null ? '' : `telemetry: { redis: { url: ${REDIS_URL}, key_prefix: '${prefix}', flush_interval_ms: 20 } }`}
`;

const msg = [{ role: 'user' as const, content: 'hello there' }];
async function apiError(p: Promise<unknown>) {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(OpenAI.APIError);
  return e as InstanceType<typeof OpenAI.APIError>;
}

describe('client keys', () => {
  let stack: Stack;
  const lines: string[] = [];
  beforeAll(async () => {
    process.env.TEST_TEAM_B_KEY = FROM_ENV;
    stack = await startStack({
      config: (url) => keysConfig(url, null).replace('access_log: false', 'access_log: true'),
      accessLog: { write: (l: string) => lines.push(l) },
    });
  });
  afterAll(() => stack.close());

  it('a missing or wrong key is 401 invalid_api_key in OpenAI shape, and is recorded', async () => {
    for (const apiKey of ['sk-wrong', `${HASHED}x`, HASHED.toUpperCase()]) {
      const e = await apiError(stack.client({ apiKey }).chat.completions.create({ model: 'auto', messages: msg }));
      expect(e.status).toBe(401);
      expect(e.code).toBe('invalid_api_key');
    }
    const noHeader = await fetch(`${stack.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'auto', messages: msg }),
    });
    expect(noHeader.status).toBe(401);
    expect(stack.sink.records.at(-1)).toMatchObject({ outcome: 'unauthorized', status: 401, key_id: null });
    expect(stack.mock.requests()).toHaveLength(0);
  });

  it('a hashed secret and an env secret both work; the record and access log carry the key id, never the secret', async () => {
    const a = await stack.client({ apiKey: HASHED }).chat.completions.create({ model: 'auto', messages: msg }).withResponse();
    const b = await stack.client({ apiKey: FROM_ENV }).chat.completions.create({ model: 'premium', messages: msg }).withResponse();
    const ids = [a, b].map((r) => r.response.headers.get('x-signalman-request-id'));
    const recs = ids.map((id) => stack.sink.get(id as string));
    expect(recs.map((r) => r?.key_id)).toEqual(['team-a', 'team-b']);
    const text = lines.join('\n');
    expect(text).toContain('"keyId":"team-a"');
    expect(text).not.toContain(HASHED);
    expect(text).not.toContain(FROM_ENV);
    // The upstream sees the backend's own key, never the client's.
    for (const r of stack.mock.requests()) expect(JSON.stringify(r.headers)).not.toContain(HASHED);
  });

  it('a policy or backend the key may not use is 403 model_not_allowed naming it, before any upstream call', async () => {
    const before = stack.mock.requests().length;
    const p = await apiError(stack.client({ apiKey: HASHED }).chat.completions.create({ model: 'premium', messages: msg }));
    expect([p.status, p.code, p.param]).toEqual([403, 'model_not_allowed', 'model']);
    expect(p.message).toContain("key 'team-a' may not use policy 'premium'");
    const b = await apiError(stack.client({ apiKey: HASHED }).chat.completions.create({ model: 'weak', messages: msg }));
    expect(b.message).toContain("backend 'weak'");
    const strong = await apiError(stack.client({ apiKey: FROM_ENV }).chat.completions.create({ model: 'strong', messages: msg }));
    expect(strong.status).toBe(403);
    expect(await stack.client({ apiKey: FROM_ENV }).chat.completions.create({ model: 'weak', messages: msg })).toBeTruthy();
    expect(stack.mock.requests().length).toBe(before + 1);
    // The explain endpoint checks the same grant.
    const route = await fetch(`${stack.baseURL}/route`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${HASHED}` },
      body: JSON.stringify({ model: 'premium', messages: msg }),
    });
    expect(route.status).toBe(403);
  });

  it('GET /v1/models needs a key and lists what that key may use', async () => {
    expect((await fetch(`${stack.baseURL}/models`)).status).toBe(401);
    const list = async (k: string) => (await stack.client({ apiKey: k }).models.list()).data.map((m) => m.id).sort();
    expect(await list(HASHED)).toEqual(['auto']);
    expect(await list(FROM_ENV)).toEqual(['auto', 'premium', 'weak']);
  });
});

describe('an open gateway', () => {
  it('warns loudly at start when it listens with no keys on a non-loopback address, and not on 127.0.0.1', async () => {
    const mock = await startMockUpstream({ port: 0 });
    const dir = await mkdtemp(join(tmpdir(), 'signalman-open-'));
    const file = join(dir, 'c.yaml');
    await writeFile(file, twoBackends(mock.url));
    const warnings = async (host: string) => {
      const lines: string[] = [];
      const logger = pino({ level: 'warn' }, { write: (l: string) => lines.push(l) });
      const gw = await startGateway({ configFile: file, logger, host, port: 0, sinks: [] });
      await gw.close(500);
      return lines.join('');
    };
    try {
      expect(await warnings('0.0.0.0')).toContain('NO CLIENT KEYS: anyone who reaches 0.0.0.0 can spend through this gateway');
      expect(await warnings('127.0.0.1')).not.toContain('NO CLIENT KEYS');
    } finally {
      await mock.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('key config errors', () => {
  const check = async (yaml: string) => {
    const dir = await mkdtemp(join(tmpdir(), 'signalman-keys-'));
    const file = join(dir, 'c.yaml');
    await writeFile(file, yaml);
    try {
      return await loadConfigFile(file).then(
        () => 'loaded',
        (e: Error) => e.message,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };
  it('a plaintext secret, both or no secret, an unknown policy: file:line and what to do', async () => {
    const base = backends('http://127.0.0.1:1');
    const plaintext = await check(`${base}keys:\n  - { id: k, secret: sk-123 }\n`);
    expect(plaintext).toMatch(/c\.yaml:\d+:\d+: .*plaintext secret never goes in YAML/);
    expect(await check(`${base}keys:\n  - { id: k }\n`)).toContain('exactly one of secret_sha256 and secret_env');
    expect(await check(`${base}keys:\n  - { id: k, secret_sha256: abc }\n`)).toContain('SHA-256 digest: 64 hex digits');
    expect(await check(`${base}keys:\n  - { id: k, secret_env: X, policies: [nope] }\n`)).toContain(
      "grants policy 'nope', which is not declared",
    );
  });
});

describe('limits and budgets in Redis', () => {
  const prefix = uniquePrefix();
  let stack: Stack;
  let redis: Redis;
  const limited = `
  - { id: rl, secret_env: TEST_RL_KEY, limits: { requests_per_minute: 5 } }
  - { id: tok, secret_env: TEST_TOK_KEY, limits: { tokens_per_minute: 100 } }
  - { id: spend, secret_env: TEST_SPEND_KEY, budget: { usd_per_day: 0.001 } }`;
  beforeAll(async () => {
    Object.assign(process.env, { TEST_TEAM_B_KEY: FROM_ENV, TEST_RL_KEY: 'k-rl', TEST_TOK_KEY: 'k-tok', TEST_SPEND_KEY: 'k-spend' });
    stack = await startStack({ config: (url) => keysConfig(url, prefix, limited) });
    redis = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    await stack.close();
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  it('requests per minute: the 6th is 429 rate_limited with retry-after and OpenAI x-ratelimit-* headers', async () => {
    const c = stack.client({ apiKey: 'k-rl' });
    for (let i = 0; i < 5; i++) {
      const { response } = await c.chat.completions.create({ model: 'auto', messages: msg }).withResponse();
      expect(response.headers.get('x-ratelimit-limit-requests')).toBe('5');
      expect(response.headers.get('x-ratelimit-remaining-requests')).toBe(String(4 - i));
    }
    const e = await apiError(c.chat.completions.create({ model: 'auto', messages: msg }));
    expect([e.status, e.code]).toEqual([429, 'rate_limited']);
    expect(Number(e.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(e.headers?.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(stack.sink.records.at(-1)).toMatchObject({ outcome: 'rate_limited', key_id: 'rl', status: 429 });
    // In /metrics by key id and limit (ids from the config: bounded).
    const metrics = await (await fetch(`${stack.gw.url}/metrics`)).text();
    expect(metrics).toContain('signalman_limit_refusals_total{key="rl",limit="requests"} 1');
    expect(metrics).toContain('signalman_key_requests_total{key="rl",outcome="rate_limited"} 1');
    expect(metrics).toContain('signalman_key_requests_total{key="rl",outcome="ok"} 5');
    // Counted in Redis, under the telemetry prefix.
    const keys = await redis.keys(`${prefix}rl:{rl}:r:*`);
    expect(keys.length).toBe(1);
    expect(await redis.get(keys[0] as string)).toBe('5');
  });

  it('tokens per minute: a request that can never fit is 400 before any upstream call; usage is charged after the answer', async () => {
    const c = stack.client({ apiKey: 'k-tok' });
    const before = stack.mock.requests().length;
    const big = await apiError(c.chat.completions.create({ model: 'auto', messages: msg, max_tokens: 500 }));
    expect([big.status, big.code, big.param]).toEqual([400, 'request_too_large', 'max_tokens']);
    expect(stack.mock.requests().length).toBe(before);
    // The mock answers 24 completion tokens: a few answers use up 100 tokens, then the key waits.
    let served = 0;
    let refused: InstanceType<typeof OpenAI.APIError> | null = null;
    for (let i = 0; i < 10 && refused === null; i++) {
      try {
        await c.chat.completions.create({ model: 'auto', messages: msg });
        served++;
      } catch (err) {
        refused = err as InstanceType<typeof OpenAI.APIError>;
      }
    }
    expect(served).toBeGreaterThanOrEqual(2);
    expect(served).toBeLessThanOrEqual(4);
    expect([refused?.status, refused?.code]).toEqual([429, 'rate_limited']);
    expect(refused?.message).toContain('tokens_per_minute');
  });

  it('a key over its daily budget: 429 budget_exceeded on a reject policy, the cheapest candidate on a downgrade policy', async () => {
    process.env.TEST_SPEND_KEY = 'k-spend';
    const c = stack.client({ apiKey: 'k-spend' });
    // strong costs ~$0.0008 a request here: the second request finds the $0.001 budget spent.
    await c.chat.completions.create({ model: 'premium', messages: msg });
    await c.chat.completions.create({ model: 'premium', messages: msg });
    const e = await apiError(c.chat.completions.create({ model: 'premium', messages: msg }));
    expect([e.status, e.code]).toEqual([429, 'budget_exceeded']);
    expect(Number(e.headers?.get('retry-after'))).toBeGreaterThan(0);
    const { response } = await c.chat.completions.create({ model: 'auto', messages: msg }).withResponse();
    expect(response.headers.get('x-signalman-model')).toBe('weak');
    expect(response.headers.get('x-signalman-budget')).toContain('downgraded');
    const rec = stack.sink.get(response.headers.get('x-signalman-request-id') as string);
    expect(rec).toMatchObject({ reason: 'budget_downgrade', chosen: 'weak', backend: 'weak', key_id: 'spend' });
  });
});

describe('two replicas on one Redis', () => {
  const prefix = uniquePrefix();
  let mock: MockUpstream;
  let dir: string;
  const gws: Array<Awaited<ReturnType<typeof startGateway>>> = [];
  let redis: Redis;
  beforeAll(async () => {
    Object.assign(process.env, { TEST_TEAM_B_KEY: FROM_ENV, TEST_SHARED_KEY: 'k-shared', TEST_SHARED_SPEND: 'k-shared-spend' });
    mock = await startMockUpstream({ port: 0 });
    dir = await mkdtemp(join(tmpdir(), 'signalman-replicas-'));
    const file = join(dir, 'c.yaml');
    await writeFile(
      file,
      keysConfig(
        mock.url,
        prefix,
        `  - { id: shared, secret_env: TEST_SHARED_KEY, limits: { requests_per_minute: 30 } }
  - { id: shared-spend, secret_env: TEST_SHARED_SPEND, budget: { usd_per_day: 0.01 } }`,
      ),
    );
    for (let i = 0; i < 2; i++) {
      gws.push(
        await startGateway({ configFile: file, logger: pino({ level: 'silent' }), host: '127.0.0.1', port: 0, sinks: [new MemorySink()] }),
      );
    }
    redis = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    for (const g of gws) await g.close(1000);
    await mock.close();
    await rm(dir, { recursive: true, force: true });
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  /** `n` requests, 8 at a time, alternating between the replicas: how many were answered. */
  async function burst(apiKey: string, n: number, model = 'auto', maxTokens?: number): Promise<{ ok: number; limited: number }> {
    const clients = gws.map((g) => new OpenAI({ baseURL: `${g.url}/v1`, apiKey, maxRetries: 0 }));
    let next = 0;
    const out = { ok: 0, limited: 0 };
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < n) {
          const i = next++;
          try {
            await (clients[i % 2] as OpenAI).chat.completions.create({ model, messages: msg, max_tokens: maxTokens });
            out.ok++;
          } catch (e) {
            if ((e as { status?: number }).status === 429) out.limited++;
            else throw e;
          }
        }
      }),
    );
    return out;
  }

  it('enforce one requests-per-minute limit under concurrent load', async () => {
    const r = await burst('k-shared', 60);
    expect(r.ok).toBe(30); // atomic in Redis: exact, not per replica (which would let 60 through)
    expect(r.limited).toBe(30);
  });

  it('enforce one USD budget within a request or two', async () => {
    // strong at $10/$30 per M tokens: ~$0.0008 a request, so a $0.01 budget is spent after ~12 requests.
    // With max_tokens the reservation at admission is the whole expected cost, so 8 requests in flight
    // cannot all slip under the budget together.
    const r = await burst('k-shared-spend', 40, 'premium', 24);
    const spent = Number(await redis.get(`${prefix}rl:{shared-spend}:usd:d:${new Date().toISOString().slice(0, 10).replaceAll('-', '')}`));
    const perRequest = spent / r.ok;
    const fit = Math.floor(0.01 / perRequest);
    expect(Math.abs(r.ok - fit)).toBeLessThanOrEqual(2);
    expect(r.limited).toBe(40 - r.ok);
  });
});

describe('when Redis fails', () => {
  const run = async (policy: 'fail_open' | 'fail_closed', how: 'kill' | 'pause') => {
    const redis = new PrivateRedis(await freePort());
    await redis.start();
    process.env.TEST_FAIL_KEY = 'k-fail';
    const stack = await startStack({
      config: (url) =>
        keysConfig(url, null, '  - { id: fail, secret_env: TEST_FAIL_KEY, limits: { requests_per_minute: 1000 } }') +
        `telemetry: { redis: { url: ${redis.url}, key_prefix: 'x:' } }\nlimits: { on_redis_error: ${policy}, redis_timeout_ms: 50 }\n`,
    });
    const c = stack.client({ apiKey: 'k-fail' });
    try {
      await c.chat.completions.create({ model: 'auto', messages: msg });
      if (how === 'kill') await redis.kill();
      else redis.pause(); // hangs with its connections open: the limit check times out (redis_timeout_ms)
      const results = await Promise.all(
        Array.from({ length: 5 }, () =>
          c.chat.completions.create({ model: 'auto', messages: msg }).then(
            () => 200,
            (e: { status?: number; code?: string }) => `${e.status} ${e.code}`,
          ),
        ),
      );
      return results;
    } finally {
      await stack.close();
      await redis.kill();
    }
  };
  it('fail_open (the default) keeps serving, counting in the process, whether Redis is down or hangs', async () => {
    expect(await run('fail_open', 'kill')).toEqual([200, 200, 200, 200, 200]);
    expect(await run('fail_open', 'pause')).toEqual([200, 200, 200, 200, 200]);
  });
  it('fail_closed refuses keys with limits: 503 limits_unavailable', async () => {
    expect(new Set(await run('fail_closed', 'kill'))).toEqual(new Set(['503 limits_unavailable']));
  });
});
