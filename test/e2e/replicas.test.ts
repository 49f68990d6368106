// Two gateway replicas on one Redis: feedback posted to replica A becomes a labelled row that changes a
// later decision on replica B (online learning, no restart, kept across B's reload), and both record
// their shadow policy's agreement with the live decision.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeKnnArtifact } from '../../src/training/knn-build.js';
import { deletePrefix, REDIS_URL, uniquePrefix, waitFor } from '../helpers/redis.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { makeRows, manifestFor, prompt } from '../routers/helpers.js';

const prefix = uniquePrefix();
let artifact: string;
let a: Stack;
let b: Stack;
let redis: Redis;

// strong is dear and weak cheap: with equal predicted quality the utility objective takes weak.
const config = (mockUrl: string) => `
version: 1
server: { watch: false, access_log: false }
backends:
  - { name: strong, base_url: "${mockUrl}/strong/v1", model: gpt-4-1106-preview, price: { input_per_mtok: 10, output_per_mtok: 30 } }
  - { name: weak, base_url: "${mockUrl}/weak/v1", model: mixtral-8x7b-instruct-v0.1, price: { input_per_mtok: 0.24, output_per_mtok: 0.24 } }
policies:
  - name: auto
    candidates: [strong, weak]
    embedder: { type: lexical, dim: 64 }
    router: { type: knn, artifact: ${artifact}, k: 3, learn: { online: true, max_rows: 1000 } }
    objective: { kind: utility, lambda: 1 }
    shadow: premium
  - name: premium
    candidates: [strong, weak]
    router: { type: fixed, backend: strong }
telemetry:
  redis: { url: ${REDIS_URL}, key_prefix: '${prefix}', flush_interval_ms: 20 }
`;

beforeAll(async () => {
  artifact = await mkdtemp(join(tmpdir(), 'signalman-replicas-'));
  // Every model solves geography in the artifact: geography goes to the cheap one.
  const rows = makeRows(10, 2);
  await writeKnnArtifact(artifact, rows.vectors, rows.scores, manifestFor(['strong', 'weak'], rows.vectors.length));
  redis = new Redis(REDIS_URL);
  a = await startStack({ config });
  b = await startStack({ config });
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  await deletePrefix(redis, prefix);
  redis.disconnect();
  await rm(artifact, { recursive: true, force: true });
});

const question = prompt('geo', 3);
const body = JSON.stringify({ model: 'auto', messages: [{ role: 'user', content: question }] });
const explain = async (s: Stack) =>
  (await (await fetch(`${s.gw.url}/v1/route`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })).json()) as {
    chosen: string;
    candidates: Array<{ backend: string; quality: number; evidence: { live?: number } }>;
  };

describe('two replicas sharing one Redis', () => {
  it("feedback on A changes B's decision, and B keeps it across a reload", async () => {
    expect((await explain(b)).chosen).toBe('weak');
    // A user on A says the cheap model's answer to this question was wrong.
    const first = await a
      .client()
      .chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: question }] })
      .withResponse();
    expect(first.response.headers.get('x-signalman-model')).toBe('weak');
    const id = first.response.headers.get('x-signalman-request-id')!;
    await waitFor(() => a.sink.records.some((r) => r.id === id));
    const fb = await fetch(`${a.gw.url}/v1/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ request_id: id, score: 0 }),
    });
    expect(await fb.json()).toMatchObject({ status: 'created', learned: 'learned' });
    await waitFor(async () => (await explain(b)).chosen === 'strong', 5_000, "B's decision to change");
    const decision = await explain(b);
    const weak = decision.candidates.find((c) => c.backend === 'weak')!;
    expect(weak.evidence.live).toBe(1);
    expect(weak.quality).toBeLessThan(0.8); // the learned row (0) outweighs its two artifact neighbours (1)
    const { response } = await b
      .client()
      .chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: question }] })
      .withResponse();
    expect(response.headers.get('x-signalman-model')).toBe('strong');

    // A reload builds new routers: the learned rows are replayed into them, not lost.
    expect((await b.gw.ref.reload('test')).ok).toBe(true);
    expect((await explain(b)).chosen).toBe('strong');
    // Other questions still go where the artifact says.
    const other = JSON.stringify({ model: 'auto', messages: [{ role: 'user', content: prompt('code', 2) }] });
    const r = await fetch(`${b.gw.url}/v1/route`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: other });
    expect(((await r.json()) as { chosen: string }).chosen).toBe('weak');
  });

  it("records the shadow policy's decision and agreement on each replica", async () => {
    const onA = a.sink.records.filter((r) => r.policy === 'auto');
    await waitFor(() => onA.every((r) => r.shadow !== null));
    expect(onA).toHaveLength(1);
    expect(onA[0]!.shadow).toMatchObject({ policy: 'premium', chosen: 'strong', agree: false, error: null });
    expect(onA[0]!.shadow!.cost_usd).toBeGreaterThan(onA[0]!.cost_usd);
    const onB = b.sink.records.filter((r) => r.policy === 'auto');
    await waitFor(() => onB.at(-1)?.shadow != null);
    expect(onB.at(-1)!.shadow).toMatchObject({ chosen: 'strong', agree: true });
    const text = await (await fetch(`${a.gw.url}/metrics`)).text();
    expect(text).toContain('signalman_shadow_decisions_total{policy="auto",shadow="premium",agree="false"} 1');
    const textB = await (await fetch(`${b.gw.url}/metrics`)).text();
    expect(textB).toContain('signalman_shadow_decisions_total{policy="auto",shadow="premium",agree="true"} 1');
  });
});
