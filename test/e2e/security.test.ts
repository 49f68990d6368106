// What an attacker with network access tries, through real HTTP: no key, wrong key, a key on a model it may
// not use, bodies too big or too deep, header injection, making the gateway call a host that is not in its
// config; then every log line, /metrics and every Redis key and value of the run are searched for secrets.
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../../src/server/listen.js';
import { startMockUpstream, type MockUpstream } from '../../src/mock/server.js';
import { deletePrefix, REDIS_URL, uniquePrefix, waitFor } from '../helpers/redis.js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CLIENT_SECRET = 'sk-client-SECRET-4f1e2d3c';
const OTHER_SECRET = 'sk-other-SECRET-9a8b7c6d';
const BACKEND_SECRET = 'sk-backend-SECRET-0e1f2a3b';
const METRICS_TOKEN = 'metrics-SECRET-5d6e7f80';
const ADMIN_KEY = 'admin-SECRET-13579bdf';
const SECRETS = [CLIENT_SECRET, OTHER_SECRET, BACKEND_SECRET, METRICS_TOKEN, ADMIN_KEY];
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

let mock: MockUpstream;
let gw: Gateway;
let dir: string;
let redis: Redis;
/** A server that must never be called: the address an attacker would like the gateway to reach. */
let forbidden: Server;
let forbiddenUrl: string;
let forbiddenHits = 0;
const logged: string[] = [];
const prefix = uniquePrefix();

beforeAll(async () => {
  Object.assign(process.env, {
    SEC_ADMIN_KEY: ADMIN_KEY,
    SEC_CLIENT_KEY: CLIENT_SECRET,
    SEC_BACKEND_KEY: BACKEND_SECRET,
    SEC_METRICS_TOKEN: METRICS_TOKEN,
  });
  forbidden = createServer((_req, res) => {
    forbiddenHits++;
    res.end('{}');
  });
  await new Promise<void>((r) => forbidden.listen(0, '127.0.0.1', r));
  forbiddenUrl = `http://127.0.0.1:${(forbidden.address() as { port: number }).port}`;
  mock = await startMockUpstream({ port: 0 });
  dir = await mkdtemp(join(tmpdir(), 'signalman-sec-'));
  const file = join(dir, 'c.yaml');
  await writeFile(
    file,
    `
version: 1
server: { watch: false, access_log: true, body_limit_bytes: 65536, admin_key_env: SEC_ADMIN_KEY }
backends:
  - { name: strong, base_url: "${mock.url}/strong/v1", model: m1, api_key_env: SEC_BACKEND_KEY, price: { input_per_mtok: 10, output_per_mtok: 30 } }
  - { name: weak, base_url: "${mock.url}/weak/v1", model: m2, price: { input_per_mtok: 0.2, output_per_mtok: 0.2 } }
policies:
  - { name: auto, candidates: [strong, weak], router: { type: fixed, backend: strong }, record_prompts: true }
  - { name: premium, candidates: [strong], router: { type: fixed, backend: strong } }
keys:
  - { id: app, secret_env: SEC_CLIENT_KEY, policies: [auto], limits: { requests_per_minute: 1000 } }
  - { id: partner, secret_sha256: ${sha(OTHER_SECRET)}, policies: [premium] }
telemetry:
  redis: { url: ${REDIS_URL}, key_prefix: '${prefix}', flush_interval_ms: 20 }
  metrics: { bearer_token_env: SEC_METRICS_TOKEN }
`,
  );
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      logged.push(chunk.toString());
      cb();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  gw = await startGateway({ configFile: file, logger, accessLog: { write: (l: string) => logged.push(l) }, host: '127.0.0.1', port: 0 });
  redis = new Redis(REDIS_URL);
});

afterAll(async () => {
  await gw.close(1000);
  await mock.close();
  await new Promise<void>((r) => forbidden.close(() => r()));
  await deletePrefix(redis, prefix);
  redis.disconnect();
  await rm(dir, { recursive: true, force: true });
});

const chat = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_SECRET}`, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
const hello = [{ role: 'user', content: 'hello' }];
const code = async (r: Response) => [r.status, ((await r.json()) as { error?: { code: string } }).error?.code ?? 'ok'];

describe('keys', () => {
  it('no key, a wrong key, a lower-cased or padded key, a Basic header: 401', async () => {
    for (const auth of [
      '',
      'Bearer ',
      `Bearer ${CLIENT_SECRET.toLowerCase()}`,
      `Bearer ${CLIENT_SECRET}x`,
      `Basic ${btoa(`u:${CLIENT_SECRET}`)}`,
    ]) {
      const r = await chat({ model: 'auto', messages: hello }, { authorization: auth });
      expect(await code(r)).toEqual([401, 'invalid_api_key']);
    }
  });
  it('without a valid key, a broken or hostile body is still only a 401: the caller learns nothing about it', async () => {
    for (const body of ['{not json', `{"x":${'['.repeat(5000)}`, JSON.stringify({ model: 'nope' })]) {
      expect(await code(await chat(body, { authorization: 'Bearer sk-wrong' }))).toEqual([401, 'invalid_api_key']);
    }
  });

  it('a key on a policy or backend it may not use: 403, and nothing reaches upstream', async () => {
    const before = mock.requests().length;
    expect(await code(await chat({ model: 'premium', messages: hello }))).toEqual([403, 'model_not_allowed']);
    expect(await code(await chat({ model: 'strong', messages: hello }))).toEqual([403, 'model_not_allowed']);
    expect(await code(await chat({ model: 'auto', messages: hello }, { authorization: `Bearer ${OTHER_SECRET}` }))).toEqual([
      403,
      'model_not_allowed',
    ]);
    expect(mock.requests().length).toBe(before);
  });
});

describe('bodies', () => {
  it('over the size limit: 413; nested 10,000 deep: 400; neither reaches upstream', async () => {
    const before = mock.requests().length;
    expect(await code(await chat({ model: 'auto', messages: hello, pad: 'x'.repeat(70_000) }))).toEqual([413, 'body_too_large']);
    const deep = `{"model":"auto","messages":[{"role":"user","content":"hi"}],"x":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`;
    expect(await code(await chat(deep))).toEqual([400, 'invalid_json']);
    expect(mock.requests().length).toBe(before);
  });
});

describe('header injection', () => {
  it('CR/LF in a header never splits a request: the parser refuses it, nothing reaches upstream', async () => {
    const before = mock.requests().length;
    const u = new URL(gw.url);
    // Written by hand: node's own client and fetch refuse to send such headers.
    const raw =
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n` +
      `authorization: Bearer ${CLIENT_SECRET}\r\nx-evil: a\rInjected: yes\r\ncontent-length: 2\r\n\r\n{}`;
    const answer = await new Promise<string>((resolve) => {
      const s = connect(Number(u.port), u.hostname, () => s.end(raw));
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString()));
      s.on('close', () => resolve(text));
      s.on('error', () => resolve(text));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(mock.requests().length).toBe(before);
  });

  it('a client cannot set upstream credentials, host or routing headers', async () => {
    const r = await chat(
      { model: 'auto', messages: hello },
      {
        'x-forwarded-host': 'evil.example',
        'x-api-key': 'client-chosen',
        host: 'evil.example',
        cookie: 'a=b',
        'x-signalman-model': 'weak',
      },
    );
    expect(r.status).toBe(200);
    const sent = mock.requests().at(-1);
    expect(sent?.path.startsWith('/strong/')).toBe(true);
    const h = sent?.headers ?? {};
    expect(h.authorization).toBe(`Bearer ${BACKEND_SECRET}`);
    for (const name of ['x-forwarded-host', 'x-api-key', 'cookie', 'x-signalman-model']) expect(h[name]).toBeUndefined();
    expect(h.host).not.toContain('evil');
  });
});

describe('reaching a host not in the config', () => {
  it('through body fields (base_url, api_base, url) and headers: only configured backends are ever called', async () => {
    const before = forbiddenHits;
    const attempts = [
      { model: 'auto', messages: hello, base_url: forbiddenUrl, api_base: forbiddenUrl, url: forbiddenUrl, endpoint: forbiddenUrl },
      { model: forbiddenUrl, messages: hello },
      { model: `${forbiddenUrl}/v1`, messages: hello },
    ];
    for (const body of attempts) {
      const r = await chat(body, { 'x-signalman-backend': forbiddenUrl, 'x-base-url': forbiddenUrl, forwarded: `host=${forbiddenUrl}` });
      expect([200, 404]).toContain(r.status);
    }
    const route = await fetch(`${gw.url}/v1/route`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_SECRET}` },
      body: JSON.stringify({ model: 'auto', messages: hello, base_url: forbiddenUrl }),
    });
    expect(route.status).toBe(200);
    expect(forbiddenHits).toBe(before);
  });
});

describe('admin output', () => {
  it('/admin/reload and /readyz never give back a secret, even one pasted into the config by mistake', async () => {
    const file = join(dir, 'c.yaml');
    const good = await readFile(file, 'utf8');
    // A secret where a backend name belongs: the reference error would quote it.
    await writeFile(file, good.replace('candidates: [strong], router', `candidates: [${BACKEND_SECRET}], router`));
    try {
      const r = await fetch(`${gw.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
      expect(r.status).toBe(422);
      const text = await r.text();
      expect(text).toContain('which is not a declared backend');
      expect(text).toContain('***');
      const ready = await (await fetch(`${gw.url}/readyz`)).text();
      for (const s of SECRETS) {
        expect(text).not.toContain(s);
        expect(ready).not.toContain(s);
      }
    } finally {
      await writeFile(file, good);
    }
  });
});

describe('after the run', () => {
  it('no secret, client key or Authorization value in any log line, in /metrics or anywhere in Redis', async () => {
    // Every request so far has a record in Redis: wait for the last ones to be written.
    await waitFor(async () => (await redis.xlen(`${prefix}records`)) >= 10, 5_000, 'records in Redis');
    const metrics = await (await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
    expect(metrics).toContain('signalman_requests_total');
    const dump: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      for (const k of keys) {
        dump.push(k);
        const type = await redis.type(k);
        if (type === 'string') dump.push((await redis.get(k)) ?? '');
        else if (type === 'hash') dump.push(JSON.stringify(await redis.hgetall(k)));
        else if (type === 'stream') dump.push(JSON.stringify(await redis.xrange(k, '-', '+')));
        else if (type === 'zset') dump.push(JSON.stringify(await redis.zrange(k, 0, -1)));
      }
    } while (cursor !== '0');
    expect(dump.length).toBeGreaterThan(10);
    const logs = logged.join('\n');
    expect(logs.length).toBeGreaterThan(1000);
    for (const [where, text] of [
      ['logs', logs],
      ['/metrics', metrics],
      ['redis', dump.join('\n')],
    ] as const) {
      for (const s of SECRETS) expect(text.includes(s), `${s} found in ${where}`).toBe(false);
      expect(/authorization/i.test(text) && /Bearer sk-/.test(text), `an Authorization value in ${where}`).toBe(false);
    }
  });
});
