// The routing engine inside a real gateway: a kNN router over a tiny artifact the test builds (the
// helpers' templated prompts: 'strong' solves everything, 'weak' fails math), explained by /v1/route,
// guarded, sticky across turns, and steerable per request.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeRows, manifestFor, OUT_OF_DOMAIN, prompt } from '../routers/helpers.js';
import { writeKnnArtifact } from '../../src/training/knn-build.js';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startStack, type Stack } from '../helpers/stack.js';

// Every case runs twice: scored on the event loop, and on a scoring thread (server.routing_threads), which
// must not change a decision, an error or a header.
describe.each([0, 1])('routing_threads: %i', (threads) => {
  let stack: Stack;
  let client: OpenAI;
  let artifact: string;

  const policyYaml = (name: string, extra: string) => `
  - name: ${name}
    candidates: [{ backend: weak, as: weak }, { backend: strong, as: strong }]
    embedder: { type: lexical, dim: 64 }
    router: { type: knn, artifact: ${artifact}, k: 5 }
    objective: { kind: utility, lambda: 1 }
    fallbacks: [strong]
${extra}`;

  beforeAll(async () => {
    artifact = await mkdtemp(join(tmpdir(), 'signalman-knn-'));
    const rows = makeRows(12, 2);
    await writeKnnArtifact(artifact, rows.vectors, rows.scores, manifestFor(['strong', 'weak'], rows.vectors.length));
    stack = await startStack({
      config: (url) => `
version: 1
server: { watch: false, access_log: false, routing_threads: ${threads}, routing_threads_min_utilization: 0 }
backends:
  - { name: strong, base_url: "${url}/strong/v1", model: gpt-4-1106-preview, price: { input_per_mtok: 10, output_per_mtok: 30 } }
  - { name: weak, base_url: "${url}/weak/v1", model: mixtral-8x7b-instruct-v0.1, price: { input_per_mtok: 0.24, output_per_mtok: 0.24 } }
policies:
${policyYaml('smart', '    guard: { threshold: 0.5, on_out_of_domain: fallback, fallback: strong }')}
${policyYaml('strict', '    guard: { threshold: 0.5, on_out_of_domain: reject }')}
${policyYaml('forgetful', '    sticky: { enabled: false }\n    prompt: { context_turns: 0 }')}
`,
    });
    client = stack.client();
  });
  afterAll(() => stack.close());

  const route = async (body: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${stack.gw.url}/v1/route`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };
  const user = (content: string) => [{ role: 'user' as const, content }];

  describe('routing by prompt content', () => {
    it('explains a decision without calling upstream: every candidate, the guard, the timings', async () => {
      stack.mock.reset();
      const { status, body } = await route({ model: 'smart', messages: user(prompt('math', 500)) });
      expect(status).toBe(200);
      expect(body).toMatchObject({
        object: 'signalman.route',
        policy: 'smart',
        chosen: 'strong',
        reason: 'objective',
        router: 'knn',
        order: ['strong'],
      });
      expect(body.embedder).toMatch(/^lexical\/v1\/d64/);
      expect(body.guard).toMatchObject({ inDomain: true, threshold: 0.5 });
      const byName = Object.fromEntries((body.candidates as any[]).map((c) => [c.backend, c]));
      expect(byName.strong.quality).toBeGreaterThan(0.9);
      expect(byName.weak.quality).toBeLessThan(0.1);
      expect(byName.strong.expectedCostUsd).toBeGreaterThan(byName.weak.expectedCostUsd);
      expect(byName.strong.utility).toBeCloseTo(byName.strong.quality - 1 * byName.strong.expectedCostUsd, 9);
      expect(byName.strong.evidence).toMatchObject({ model: 'strong', neighbours: 5 });
      expect(body.scoredOn).toBe(threads > 0 ? 'worker' : undefined);
      for (const k of ['extract', 'embed', 'guard', 'score', 'decide']) expect(body.timingsMs[k]).toBeGreaterThanOrEqual(0);
      expect(stack.mock.requests()).toHaveLength(0);

      const geo = await route({ model: 'smart', messages: user(prompt('geo', 501)) });
      expect(geo.body.chosen).toBe('weak'); // equal predicted quality: the cheaper one
    });

    it('forwards to the backend the decision chose, and records the decision', async () => {
      const { response } = await client.chat.completions.create({ model: 'smart', messages: user(prompt('math', 502)) }).withResponse();
      expect(response.headers.get('x-signalman-model')).toBe('strong');
      const { response: r2 } = await client.chat.completions.create({ model: 'smart', messages: user(prompt('code', 503)) }).withResponse();
      expect(r2.headers.get('x-signalman-model')).toBe('weak');
      const rec = stack.sink.records.at(-1);
      expect(rec).toMatchObject({ policy: 'smart', chosen: 'weak', backend: 'weak', reason: 'objective', router: 'knn', outcome: 'ok' });
      expect(rec?.candidates).toHaveLength(2);
    });

    it('serves a repeated prompt from the score cache with the same decision', async () => {
      const body = { model: 'smart', messages: user(prompt('math', 510)) };
      const first = (await route(body)).body;
      const again = (await route(body)).body;
      expect(first.scoreCacheHit).toBe(false);
      expect(again.scoreCacheHit).toBe(true);
      expect(again.candidates).toEqual(first.candidates);
      expect(again.guard).toEqual(first.guard);
      expect(again.timingsMs.embed).toBe(0);
      expect(again.scoredOn).toBeUndefined(); // nothing was scored, anywhere
      const ood = { model: 'smart', messages: user(OUT_OF_DOMAIN[2] as string) };
      await route(ood);
      expect((await route(ood)).body).toMatchObject({ reason: 'guard_fallback', scoreCacheHit: true });
    });

    it('lets a request bias toward quality or cost (x-signalman-quality-bias)', async () => {
      const math = { model: 'smart', messages: user(prompt('math', 504)) };
      expect((await route(math, { 'x-signalman-quality-bias': '0' })).body.chosen).toBe('weak');
      expect((await route(math, { 'x-signalman-quality-bias': '1' })).body.chosen).toBe('strong');
      const bad = await route(math, { 'x-signalman-quality-bias': 'lots' });
      expect(bad.status).toBe(400);
      expect(bad.body.error.param).toBe('x-signalman-quality-bias');
    });
  });

  describe('out-of-domain guard', () => {
    it('sends a prompt unlike anything the router knows to the fallback backend', async () => {
      const { body } = await route({ model: 'smart', messages: user(OUT_OF_DOMAIN[3] as string) });
      expect(body).toMatchObject({ chosen: 'strong', reason: 'guard_fallback' });
      expect(body.guard.inDomain).toBe(false);
      expect(body.guard.score).toBeLessThan(0.5);
      const { response } = await client.chat.completions
        .create({ model: 'smart', messages: user(OUT_OF_DOMAIN[3] as string) })
        .withResponse();
      expect(response.headers.get('x-signalman-model')).toBe('strong');
    });

    it('or rejects it with a clear 400 when the policy says so', async () => {
      const err = await client.chat.completions
        .create({ model: 'strict', messages: user(OUT_OF_DOMAIN[3] as string) })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
      expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('out_of_domain');
      expect((err as Error).message).toMatch(/guard threshold 0\.500/);
      // In-domain prompts still pass.
      expect((await client.chat.completions.create({ model: 'strict', messages: user(prompt('geo', 505)) })).choices).toHaveLength(1);
    });
  });

  describe('multi-turn conversations', () => {
    const turn2 = (first: string) => [
      { role: 'system' as const, content: 'You are terse.' },
      { role: 'user' as const, content: first },
      { role: 'assistant' as const, content: 'Lima.' },
      { role: 'user' as const, content: prompt('math', 600) },
    ];

    it('stay on the model chosen for their first turn', async () => {
      const first = prompt('geo', 601);
      const { response } = await client.chat.completions
        .create({ model: 'smart', messages: [{ role: 'system', content: 'You are terse.' }, ...user(first)] })
        .withResponse();
      expect(response.headers.get('x-signalman-model')).toBe('weak');
      // The follow-up is a math question, which alone would go to strong.
      const { response: r2 } = await client.chat.completions.create({ model: 'smart', messages: turn2(first) }).withResponse();
      expect(r2.headers.get('x-signalman-model')).toBe('weak');
      expect(stack.sink.records.at(-1)?.reason).toBe('sticky');
    });

    it('unless the policy turns stickiness off', async () => {
      const first = prompt('geo', 602);
      await client.chat.completions.create({
        model: 'forgetful',
        messages: [{ role: 'system', content: 'You are terse.' }, ...user(first)],
      });
      const { response } = await client.chat.completions.create({ model: 'forgetful', messages: turn2(first) }).withResponse();
      expect(response.headers.get('x-signalman-model')).toBe('strong');
    });

    it('also follows a conversation id header', async () => {
      const h = { headers: { 'x-signalman-conversation-id': 'conv-42' } };
      const { response } = await client.chat.completions.create({ model: 'smart', messages: user(prompt('math', 603)) }, h).withResponse();
      expect(response.headers.get('x-signalman-model')).toBe('strong');
      const { response: r2 } = await client.chat.completions
        .create({ model: 'smart', messages: user(prompt('geo', 604)) }, h)
        .withResponse();
      expect(r2.headers.get('x-signalman-model')).toBe('strong');
    });
  });

  describe('awkward prompts', () => {
    it('routes an image-only message explicitly (no_text), never a guess', async () => {
      const { body } = await route({
        model: 'smart',
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:,' } }] }],
      });
      expect(body).toMatchObject({ reason: 'no_text', chosen: 'strong' });
    });

    it('routes a huge prompt (truncated safely) and an empty one without crashing', async () => {
      const huge = `${prompt('math', 700)} ${'🙂'.repeat(300_000)}`;
      const { response } = await client.chat.completions.create({ model: 'smart', messages: user(huge) }).withResponse();
      expect(response.status).toBe(200);
      const empty = await route({ model: 'smart', messages: user('') });
      expect(empty.status).toBe(200);
      expect(empty.body.reason).toBe('no_text');
    });

    it('answers /v1/route for a backend name or an unknown model with 404', async () => {
      expect((await route({ model: 'weak', messages: user('hi') })).status).toBe(404);
      expect((await route({ model: 'nope', messages: user('hi') })).body.error.code).toBe('model_not_found');
    });
  });
});
