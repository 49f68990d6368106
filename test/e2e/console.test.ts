// The built-in console over HTTP: the page and its assets (CSP, types, caching), the JSON endpoints' contents
// after known traffic (from memory, and from Redis across two replicas), the admin key, the bounded limit.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RequestRecord } from '../../src/telemetry/record.js';
import { deletePrefix, freePort, REDIS_URL, uniquePrefix, waitFor } from '../helpers/redis.js';
import { startStack, twoBackends, type Stack } from '../helpers/stack.js';

const ADMIN_ENV = 'CONSOLE_TEST_ADMIN_KEY';
const OPEN_ENV = 'CONSOLE_TEST_UNSET_KEY';
const ADMIN = 'console-admin-secret-3f9a';

/** twoBackends plus a second policy (`cheap` → strong, recording prompts), with the admin key read from `keyEnv`. */
const config =
  (keyEnv: string, extra = '') =>
  (url: string) =>
    twoBackends(url).replace('server: { ', `server: { admin_key_env: ${keyEnv}, `) +
    `
  - name: cheap
    candidates: [weak, strong]
    router: { type: fixed, backend: strong }
    record_prompts: { max_chars: 12 }
${extra}`;

const chat = async (s: Stack, model: string, content: string): Promise<string> => {
  const { response } = await s
    .client()
    .chat.completions.create({ model, messages: [{ role: 'user', content }] })
    .withResponse();
  return response.headers.get('x-signalman-request-id') as string;
};

const get = async (s: Stack, path: string, key?: string) => {
  const res = await fetch(`${s.gw.url}${path}`, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } });
  const text = await res.text();
  return { res, text, json: () => JSON.parse(text) as Record<string, any> };
};

const sum = (rs: RequestRecord[], f: (r: RequestRecord) => number): number => rs.reduce((s, r) => s + f(r), 0);

describe('console on one gateway without Redis (in-memory records), no admin key', () => {
  let stack: Stack;
  const ids: string[] = [];

  beforeAll(async () => {
    delete process.env[OPEN_ENV];
    stack = await startStack({ config: config(OPEN_ENV) });
    for (let i = 0; i < 3; i++) ids.push(await chat(stack, 'auto', `what is the capital of peru ${i}`));
    ids.push(await chat(stack, 'cheap', 'write a haiku about the sea'));
    ids.push(await chat(stack, 'strong', 'a backend named directly'));
    await waitFor(() => ids.every((id) => stack.gw.telemetry.memory.get(id) !== undefined));
  });
  afterAll(() => stack.close());

  it('serves the page with a strict CSP, no inline script or style, no caching surprises', async () => {
    const { res, text } = await get(stack, '/ui');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(text).toContain('<script type="module" src="/ui/console.js"></script>');
    // Every <script> has a src, and no element carries a style attribute or an inline handler.
    expect(
      text.match(/<script\b[^>]*>/g)?.every((t) => t.includes(' src=')),
      'inline script',
    ).toBe(true);
    expect(text).not.toMatch(/\sstyle=|\son[a-z]+=|<style/i);
    expect(text).not.toMatch(/https?:\/\//); // no CDN, nothing off-site
  });

  it('redirects /ui/ to /ui, keeping the query', async () => {
    for (const [from, to] of [
      ['/ui/', '/ui'],
      ['/ui/?a=1', '/ui?a=1'],
    ]) {
      const res = await fetch(`${stack.gw.url}${from}`, { redirect: 'manual' });
      expect(res.status).toBe(301);
      expect(res.headers.get('location')).toBe(to);
    }
  });

  it('serves the script, the stylesheet and the icon with their types, and 304 on a matching ETag', async () => {
    for (const [path, type] of [
      ['/ui/console.js', 'text/javascript; charset=utf-8'],
      ['/ui/console.css', 'text/css; charset=utf-8'],
      ['/ui/favicon.svg', 'image/svg+xml'],
    ] as const) {
      const { res, text } = await get(stack, path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type'), path).toBe(type);
      expect(text, path).toBe(await readFile(join(import.meta.dirname, '../../ui', path.slice('/ui/'.length)), 'utf8'));
      const etag = res.headers.get('etag') as string;
      expect(etag).toMatch(/^".+"$/);
      const again = await fetch(`${stack.gw.url}${path}`, { headers: { 'if-none-match': etag } });
      expect(again.status, path).toBe(304);
    }
  });

  it('ships a script that never writes markup from data', async () => {
    const js = await readFile(join(import.meta.dirname, '../../ui/console.js'), 'utf8');
    expect(js).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/);
    expect(js).not.toMatch(/https?:\/\//);
  });

  it('says the console is open when no admin key is configured', async () => {
    const { res, json } = await get(stack, '/ui/api/session');
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(json()).toEqual({ auth_required: false, admin_key_env: OPEN_ENV });
    expect((await get(stack, '/ui/api/summary')).res.status).toBe(200);
  });

  it('summarises rate, routing share and spend per policy from the records in memory', async () => {
    const records = stack.gw.telemetry.memory.records;
    expect(records.map((r) => r.id)).toEqual(ids);
    const { res, json } = await get(stack, '/ui/api/summary');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const s = json();
    expect(s).toMatchObject({ object: 'signalman.console.summary', source: 'memory', scope: 'this_replica', note: null, generation: 1 });
    expect(s.window).toMatchObject({ seconds: 900, truncated: false, capacity: 1000 });
    expect(s.rate).toMatchObject({ seconds: 60, requests: 5 });
    expect(s.rate.per_second).toBeCloseTo(5 / 60, 6);
    const cost = sum(records, (r) => r.cost_usd);
    const cf = sum(records, (r) => r.counterfactual_cost_usd);
    expect(cost).toBeGreaterThan(0);
    expect(s.total).toMatchObject({ requests: 5, errors: 0 });
    expect(s.total.cost_usd).toBeCloseTo(cost, 12);
    expect(s.total.savings_usd).toBeCloseTo(cf - cost, 12);

    const byName = Object.fromEntries((s.policies as any[]).map((p) => [p.policy ?? '(none)', p]));
    expect(Object.keys(byName).sort()).toEqual(['(none)', 'auto', 'cheap']);
    const auto = records.filter((r) => r.policy === 'auto');
    expect(byName.auto).toMatchObject({
      configured: true,
      router: 'fixed',
      candidates: ['strong', 'weak'],
      requests: 3,
      routes: [{ backend: 'weak', requests: 3, share: 1 }],
    });
    expect(byName.auto.cost_usd).toBeCloseTo(
      sum(auto, (r) => r.cost_usd),
      12,
    );
    // auto sent everything to weak, the cheap one: it saved what strong would have cost.
    expect(byName.auto.savings_usd).toBeCloseTo(
      sum(auto, (r) => r.counterfactual_cost_usd - r.cost_usd),
      12,
    );
    expect(byName.auto.savings_usd).toBeGreaterThan(0);
    expect(byName.cheap).toMatchObject({ requests: 1, routes: [{ backend: 'strong', requests: 1, share: 1 }], savings_usd: 0 });
    expect(byName['(none)']).toMatchObject({ configured: false, requests: 1, routes: [{ backend: 'strong', requests: 1, share: 1 }] });
  });

  it('lists recent decisions newest first, with candidates and outcome, without key ids, prompts only where recorded', async () => {
    const { json } = await get(stack, '/ui/api/decisions');
    const d = json();
    expect(d).toMatchObject({ object: 'signalman.console.decisions', source: 'memory', note: null, limit: 50 });
    expect(d.data.map((r: any) => r.id)).toEqual([...ids].reverse());
    const byId = Object.fromEntries((d.data as any[]).map((r) => [r.id, r]));
    expect(byId[ids[0]!]).toMatchObject({ policy: 'auto', chosen: 'weak', backend: 'weak', reason: 'fixed', outcome: 'ok', prompt: null });
    expect(byId[ids[0]!].candidates.map((c: any) => c.backend).sort()).toEqual(['strong', 'weak']);
    expect(byId[ids[3]!]).toMatchObject({ policy: 'cheap', backend: 'strong', prompt: 'write a haik' });
    for (const r of d.data) expect(r).not.toHaveProperty('key_id');

    const two = (await get(stack, '/ui/api/decisions?limit=2')).json();
    expect(two.limit).toBe(2);
    expect(two.data.map((r: any) => r.id)).toEqual([ids[4], ids[3]]);
  });

  it('bounds the limit: above the maximum is served as the maximum, nonsense is a 400', async () => {
    expect((await get(stack, '/ui/api/decisions?limit=100000')).json().limit).toBe(200);
    for (const bad of ['0', '-1', 'abc', '1.5', '10&limit=20']) {
      const { res, json } = await get(stack, `/ui/api/decisions?limit=${bad}`);
      expect(res.status, bad).toBe(400);
      expect(json().error).toMatchObject({ code: 'invalid_request', param: 'limit' });
    }
  });
});

describe('console behind the admin key', () => {
  let stack: Stack;

  beforeAll(async () => {
    process.env[ADMIN_ENV] = ADMIN;
    stack = await startStack({ config: config(ADMIN_ENV) });
    await chat(stack, 'auto', 'hello');
  });
  afterAll(async () => {
    await stack.close();
    delete process.env[ADMIN_ENV];
  });

  it('still serves the page and its assets (they hold no data), and says a key is needed', async () => {
    for (const path of ['/ui', '/ui/console.js', '/ui/console.css']) {
      const { res, text } = await get(stack, path);
      expect(res.status, path).toBe(200);
      expect(text).not.toContain(ADMIN);
    }
    const session = await get(stack, '/ui/api/session');
    expect(session.json()).toEqual({ auth_required: true, admin_key_env: ADMIN_ENV });
    expect(session.text).not.toContain(ADMIN);
  });

  it('answers the data endpoints 401 without the key or with a wrong one, 200 with it', async () => {
    for (const path of ['/ui/api/summary', '/ui/api/decisions']) {
      for (const key of [undefined, 'wrong', `${ADMIN}x`, '']) {
        const { res, json } = await get(stack, path, key);
        expect(res.status, `${path} with ${key}`).toBe(401);
        expect(json().error).toMatchObject({ code: 'unauthorized', type: 'authentication_error' });
        expect(json().error.message).toContain('Authorization: Bearer');
      }
      const ok = await get(stack, path, ADMIN);
      expect(ok.res.status, path).toBe(200);
      expect(ok.text).not.toContain(ADMIN);
    }
    const d = (await get(stack, '/ui/api/decisions', ADMIN)).json();
    expect(d.data).toHaveLength(1);
  });
});

describe('console with Redis: every replica’s records', () => {
  const prefix = uniquePrefix();
  let a: Stack;
  let b: Stack;
  let redis: Redis;
  const idsA: string[] = [];
  const idsB: string[] = [];
  const redisBlock = `telemetry:\n  redis: { url: ${REDIS_URL}, key_prefix: '${prefix}', flush_interval_ms: 20 }\n`;

  beforeAll(async () => {
    delete process.env[OPEN_ENV];
    redis = new Redis(REDIS_URL);
    a = await startStack({ config: config(OPEN_ENV, redisBlock) });
    b = await startStack({ config: config(OPEN_ENV, redisBlock) });
    for (let i = 0; i < 2; i++) idsA.push(await chat(a, 'auto', `replica a ${i}`));
    // A's records reach the stream before B's requests: the stream's order is then known.
    await waitFor(async () => (await redis.xlen(`${prefix}records`)) === 2, 5_000, 'replica a in the stream');
    for (let i = 0; i < 3; i++) idsB.push(await chat(b, 'cheap', `replica b ${i}`));
    await waitFor(async () => (await redis.xlen(`${prefix}records`)) === 5, 5_000, 'five records in the stream');
  });
  afterAll(async () => {
    await a.close();
    await b.close();
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  it('summarises both replicas from the Redis minute totals', async () => {
    const s = (await get(a, '/ui/api/summary')).json();
    expect(s).toMatchObject({ source: 'redis', scope: 'all_replicas', note: null });
    expect(s.window.seconds).toBeGreaterThan(14 * 60);
    expect(s.window.seconds).toBeLessThanOrEqual(15 * 60);
    expect(s.total.requests).toBe(5);
    expect(s.rate.requests).toBe(5);
    const byName = Object.fromEntries((s.policies as any[]).map((p) => [p.policy, p]));
    expect(byName.auto).toMatchObject({ requests: 2, routes: [{ backend: 'weak', requests: 2, share: 1 }] });
    expect(byName.cheap).toMatchObject({ requests: 3, routes: [{ backend: 'strong', requests: 3, share: 1 }] });
    const records = [...a.gw.telemetry.memory.records, ...b.gw.telemetry.memory.records];
    expect(s.total.cost_usd).toBeCloseTo(
      sum(records, (r) => r.cost_usd),
      12,
    );
    expect(s.total.counterfactual_cost_usd).toBeCloseTo(
      sum(records, (r) => r.counterfactual_cost_usd),
      12,
    );
  });

  it('lists the other replica’s decisions too, newest first, from the records stream', async () => {
    const d = (await get(a, '/ui/api/decisions?limit=4')).json();
    expect(d).toMatchObject({ source: 'redis', limit: 4 });
    expect(d.data.map((r: any) => r.id)).toEqual([...idsB].reverse().concat(idsA.slice(-1)));
    expect(d.data[0]).toMatchObject({ policy: 'cheap', backend: 'strong', prompt: 'replica b 2' });
    for (const r of d.data) expect(r).not.toHaveProperty('key_id');
  });

  it('falls back to this replica’s memory, and says why, when Redis cannot be read', async () => {
    const port = await freePort(); // nothing listens there
    const down = await startStack({
      config: config(
        OPEN_ENV,
        `telemetry:\n  redis: { url: 'redis://127.0.0.1:${port}', key_prefix: '${prefix}down:', command_timeout_ms: 200 }\n`,
      ),
    });
    try {
      const id = await chat(down, 'auto', 'redis is down');
      const s = (await get(down, '/ui/api/summary')).json();
      expect(s).toMatchObject({ source: 'memory', scope: 'this_replica', total: { requests: 1 } });
      expect(s.note).toMatch(/^Redis unavailable/);
      const d = (await get(down, '/ui/api/decisions')).json();
      expect(d.source).toBe('memory');
      expect(d.data.map((r: any) => r.id)).toEqual([id]);
    } finally {
      await down.close();
    }
  });
});
