// Scoring threads (server.routing_threads) with the shipped demo policies and their real artifacts: the
// same decisions as on the event loop, a lost worker costs no request, a reload brings new workers and
// retires the old ones, and a bad setting is a config error with its line.
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { startMockUpstream, type MockUpstream } from '../../src/mock/server.js';
import { startGateway, type Gateway } from '../../src/server/listen.js';
import type { ScoringThreadPool } from '../../src/routers/scoring-threads.js';
import type { ScoreReply } from '../../src/routers/scoring-wire.js';

const ROOT = join(import.meta.dirname, '../..');
const SHIPPED = readFileSync(join(ROOT, 'configs/default.yaml'), 'utf8');

/**
 * The demo config at `threads`, in a folder laid out like the repository (its relative paths resolve).
 * `minUtilization` 0 hands every routed request to a thread, however idle the event loop.
 */
function shippedConfig(mockUrl: string, threads: number, minUtilization?: number): string {
  const root = mkdtempSync(join(tmpdir(), 'signalman-threads-'));
  mkdirSync(join(root, 'configs'));
  for (const d of ['routers', 'embedders']) symlinkSync(join(ROOT, d), join(root, d), 'dir');
  const file = join(root, 'configs', 'signalman.yaml');
  const text = SHIPPED.replace(/\$\{SIGNALMAN_MOCK_URL:-[^}]*\}/g, mockUrl).replace(
    /routing_threads: \d+/,
    `routing_threads: ${threads}\n  access_log: false${minUtilization === undefined ? '' : `\n  routing_threads_min_utilization: ${minUtilization}`}`,
  );
  if (!text.includes(`routing_threads: ${threads}`)) throw new Error('configs/default.yaml no longer sets server.routing_threads');
  writeFileSync(file, text);
  return file;
}

const PROMPTS = [
  'Hi there! How are you today?',
  'Prove that the square root of 2 is irrational.',
  'Which of the following best describes the role of the Federal Reserve in setting interest rates?\nA. It sets the prime rate\nB. It sets the federal funds target\nC. It prints money\nD. None',
  'My landlord kept my deposit without listing any damage. Can I sue in small claims court?',
  'Write a Python function that merges two sorted lists.',
  'What are the common side effects of metformin and when should I see a doctor?',
  'Solve for x: 3x + 7 = 22.',
  'Tell me a joke about penguins.',
  'A company reports revenue of $2M and COGS of $1.2M. What is its gross margin?',
  'Under the doctrine of adverse possession, what must a claimant show?',
];
const POLICIES = ['auto', 'auto-open', 'expert'];

let mock: MockUpstream;
const gateways: Gateway[] = [];

async function gateway(threads: number, minUtilization?: number): Promise<Gateway> {
  const gw = await startGateway({
    configFile: shippedConfig(mock.url, threads, minUtilization),
    logger: pino({ level: 'silent' }),
    host: '127.0.0.1',
    port: 0,
    sinks: [],
    watch: false,
    env: {},
  });
  gateways.push(gw);
  return gw;
}

const route = async (gw: Gateway, model: string, content: string) => {
  const res = await fetch(`${gw.url}/v1/route`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content }] }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, any>;
};

const pool = (gw: Gateway): ScoringThreadPool => {
  const p = gw.ref.current?.scoring;
  if (!p) throw new Error('no scoring threads');
  return p;
};

let onLoop: Gateway;
let onThread: Gateway;

beforeAll(async () => {
  mock = await startMockUpstream({ port: 0 });
  [onLoop, onThread] = await Promise.all([gateway(0), gateway(1, 0)]);
}, 60_000);

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.close(1000, 0)));
  await mock.close();
});

describe('scoring threads', () => {
  it('decide exactly as the event loop does, for every shipped policy', async () => {
    expect(onLoop.ref.current?.scoring).toBeNull();
    expect(pool(onThread).stats()).toMatchObject({ threads: 1, alive: 1 });
    for (const model of POLICIES) expect(pool(onThread).serves(model)).toBe(true);
    for (const model of POLICIES) {
      for (const content of PROMPTS) {
        const [a, b] = await Promise.all([route(onLoop, model, content), route(onThread, model, content)]);
        expect(a.scoredOn).toBeUndefined();
        expect(b.scoredOn).toBe('worker');
        // The same choice for the same reasons, to the last bit of every score.
        for (const k of ['chosen', 'order', 'reason', 'guard', 'candidates', 'embedder', 'router', 'lambda']) expect(b[k]).toEqual(a[k]);
      }
    }
    // Both ends of the guard were seen (a greeting falls back, an MMLU-style question is scored).
    const reasons = new Set(await Promise.all(PROMPTS.map(async (p) => (await route(onThread, 'auto', `${p} `)).reason)));
    expect(reasons).toEqual(new Set(['guard_fallback', 'objective']));
    expect(pool(onThread).stats().scored).toBeGreaterThanOrEqual(POLICIES.length * PROMPTS.length);
  });

  it('serve chat completions, streamed or not, through the openai client', async () => {
    const client = new OpenAI({ baseURL: `${onThread.url}/v1`, apiKey: 'unused' });
    const before = pool(onThread).stats().scored;
    const { data, response } = await client.chat.completions
      .create({ model: 'expert', messages: [{ role: 'user', content: `${PROMPTS[3]} (asked again)` }] }) // not seen yet: no score-cache hit
      .withResponse();
    expect(data.choices[0]?.message.content).toBeTruthy();
    expect(response.headers.get('x-signalman-policy')).toBe('expert');
    const stream = await client.chat.completions.create({
      model: 'auto',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'Prove that there are infinitely many primes.' }], // not seen yet: no score-cache hit
    });
    let text = '';
    let usage = false;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      usage ||= chunk.usage != null;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(usage).toBe(true);
    expect(pool(onThread).stats().scored).toBe(before + 2);
  });

  it('answer each text as soon as it is scored, not once its whole batch is', async () => {
    const p = pool(onThread);
    const [w] = p.workers();
    let replies = 0;
    const count = (m: ScoreReply) => {
      if (Array.isArray(m)) replies++; // a scored text (scoring-wire.ts); control messages are objects
    };
    w!.on('message', count);
    try {
      // Asked in one turn of the event loop: the worker gets them together, and answers one by one.
      const asked = PROMPTS.map((c) => p.score('auto-open', `${c} (one by one)`, {}));
      const scored = await Promise.all(asked);
      expect(scored.every((s) => s !== null && (s.guard?.inDomain === false || s.scores.length === 9))).toBe(true);
      expect(replies).toBe(PROMPTS.length);
    } finally {
      w!.off('message', count);
    }
  });

  it('lose no request when a worker dies: the event loop scores until the worker is back', async () => {
    const p = pool(onThread);
    const [w] = p.workers();
    // Requests in flight while it goes, and right after: every one answered, with the loop's decision.
    const inFlight = PROMPTS.map((c) => route(onThread, 'auto-open', `${c} (again)`));
    await w!.terminate();
    const during = await Promise.all([...inFlight, route(onThread, 'auto-open', 'What is 12 squared?')]);
    expect(during.at(-1)?.scoredOn).toBeUndefined();
    const expected = await route(onLoop, 'auto-open', 'What is 12 squared?');
    expect(during.at(-1)?.candidates).toEqual(expected.candidates);
    expect(p.stats()).toMatchObject({ lost: 1, alive: 0 });
    // Restarted (after half a second), it takes the work again.
    const until = Date.now() + 20_000;
    while (p.stats().alive === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(p.stats().alive).toBe(1);
    expect((await route(onThread, 'auto-open', 'What is 13 squared?')).scoredOn).toBe('worker');

    // What an operator sees.
    const text = await (await fetch(`${onThread.url}/metrics`)).text();
    const value = (series: string) => Number(text.match(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm'))?.[1]);
    expect(value('signalman_scoring_threads{state="configured"}')).toBe(1);
    expect(value('signalman_scoring_threads{state="alive"}')).toBe(1);
    expect(value('signalman_scoring_threads_lost_total')).toBe(1);
    expect(value('signalman_scoring_thread_texts_total{where="worker"}')).toBe(p.stats().scored);
    expect(value('signalman_scoring_thread_texts_total{where="worker"}')).toBeGreaterThan(30);
  });

  it('replace a thread whose reply cannot be read, and answer its texts on the event loop', async () => {
    const p = pool(onThread);
    const [w] = p.workers();
    const lost = p.stats().lost;
    // Scores for a policy whose shape (names, evidence) this side never received: out of step.
    w!.emit('message', [1e9, 99, [0, 0, 0, 0, 0, 0, 0.5], null] satisfies ScoreReply);
    const until = Date.now() + 20_000;
    while (p.stats().lost === lost && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(p.stats().lost).toBe(lost + 1);
    expect(p.workers()).not.toContain(w);
    expect((await route(onThread, 'auto', 'What is 14 squared?')).reason).toBeDefined(); // answered meanwhile
    while (p.stats().alive === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect((await route(onThread, 'auto-open', 'What is 15 squared?')).scoredOn).toBe('worker');
  });

  it('come with each config: a reload starts new ones and retires the old', async () => {
    const old = pool(onThread);
    const status = await onThread.ref.reload('test');
    expect(status.ok).toBe(true);
    const fresh = pool(onThread);
    expect(fresh).not.toBe(old);
    expect((await route(onThread, 'auto', PROMPTS[2] as string)).scoredOn).toBe('worker');
    // Nothing pins the old config any more: it was disposed and its workers stopped.
    const until = Date.now() + 10_000;
    while (old.stats().alive > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(old.stats().alive).toBe(0);
    expect(old.score('auto', 'hello', {})).toBeUndefined();
  });

  it('take the work only while the event loop is busy, as the demo config ships', async () => {
    const gw = await gateway(1); // routing_threads_min_utilization at its default, 0.5
    const p = pool(gw);
    // One request at a time: the event loop is mostly idle, so it scores each itself, with no hand-off.
    // Each request waits out two 100 ms utilization windows first: back to back, the test's own client and
    // the gateway share this event loop, and on a loaded machine a run of them spans a busy window.
    for (const content of PROMPTS) {
      await new Promise((r) => setTimeout(r, 250));
      expect((await route(gw, 'auto-open', `${content} (alone)`)).scoredOn).toBeUndefined();
    }
    expect(p.stats()).toMatchObject({ scored: 0, declined: 0 });
    expect(p.stats().idle).toBeGreaterThanOrEqual(PROMPTS.length);
    // Many at once keep the event loop busy: within a few windows the thread takes them, same decisions.
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused' });
    let n = 0;
    const until = Date.now() + 15_000;
    while (p.stats().scored === 0 && Date.now() < until) {
      await Promise.all(
        Array.from({ length: 32 }, () =>
          client.chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: `Question ${n++}: what is ${n} + ${n}?` }] }),
        ),
      );
    }
    expect(p.stats().scored).toBeGreaterThan(0);
  });

  it('are a validated setting', () => {
    const base = SHIPPED.replace(/\$\{SIGNALMAN_MOCK_URL:-[^}]*\}/g, 'http://127.0.0.1:9');
    const bad = base.replace(/routing_threads: \d+/, 'routing_threads: -1');
    expect(() => parseConfigText(bad, '/cfg/signalman.yaml', {})).toThrow(/signalman\.yaml:\d+:\d+.*routing_threads/s);
    const many = base.replace(/routing_threads: \d+/, 'routing_threads: 65');
    expect(() => parseConfigText(many, '/cfg/signalman.yaml', {})).toThrow(/routing_threads/);
    const share = base.replace(/routing_threads: \d+/, 'routing_threads: 1\n  routing_threads_min_utilization: 1.5');
    expect(() => parseConfigText(share, '/cfg/signalman.yaml', {})).toThrow(/routing_threads_min_utilization/);
  });
});
