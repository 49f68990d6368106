// Online learning across replicas: two OnlineLearning instances (two "replicas", each with its own runtime
// compiled from the same YAML) share one real Redis under a per-test key prefix.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import type { CandidateScore } from '../../src/routers/types.js';
import { compileRuntime, createSharedPools, type Runtime } from '../../src/runtime/compile.js';
import { OnlineLearning } from '../../src/runtime/online-learning.js';
import { writeKnnArtifact } from '../../src/training/knn-build.js';
import { embedder, makeRows, manifestFor, prompt } from '../routers/helpers.js';
import { deletePrefix, REDIS_URL, uniquePrefix, waitFor } from '../helpers/redis.js';

const quiet = { info() {}, warn() {}, error() {} };
let artifact: string;

const yaml = (maxPending = 1000) => `version: 1
backends:
  - { name: strong, base_url: "http://127.0.0.1:1/v1", model: s }
  - { name: weak, base_url: "http://127.0.0.1:1/v1", model: w }
policies:
  - name: auto
    candidates: [strong, weak]
    embedder: { type: lexical, dim: 64 }
    router:
      type: knn
      artifact: ${artifact}
      k: 5
      learn: { online: true, max_rows: 100, embedding_ttl_s: 600, max_pending: ${maxPending} }
  - name: plain
    candidates: [strong, weak]
    embedder: { type: lexical, dim: 64 }
    router: { type: knn, artifact: ${artifact}, k: 5 }
`;

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A runtime of its own (its own shared pools), disposed after the test. */
async function runtime(text: string): Promise<Runtime> {
  const shared = createSharedPools();
  const rt = await compileRuntime(parseConfigText(text, '/cfg/signalman.yaml', {}), shared, 1);
  cleanups.push(async () => {
    await rt.dispose();
    await shared.pools.closeAll();
    await shared.embedders.closeAll();
  });
  return rt;
}

async function redisPair(): Promise<{ a: Redis; b: Redis; prefix: string }> {
  const prefix = uniquePrefix();
  const a = new Redis(REDIS_URL);
  const b = new Redis(REDIS_URL);
  cleanups.push(async () => {
    await deletePrefix(a, prefix);
    await a.quit();
    await b.quit();
  });
  await Promise.all([a.ping(), b.ping()]);
  return { a, b, prefix };
}

function learning(redis: Redis | null, prefix: string): OnlineLearning {
  const l = new OnlineLearning({ redis, prefix, logger: quiet, blockMs: 200 });
  cleanups.push(() => l.close());
  return l;
}

const TEXT = prompt('math', 50); // near the artifact's math rows, where weak scores 0
const EMB = embedder.embedSync(TEXT);

async function weak(rt: Runtime): Promise<CandidateScore> {
  const scores = await rt.policies.get('auto')!.router.score({ text: TEXT, embedding: EMB, candidates: ['strong', 'weak'], meta: {} });
  return scores.find((s) => s.backend === 'weak')!;
}

beforeAll(async () => {
  artifact = await mkdtemp(join(tmpdir(), 'signalman-ol-'));
  const rows = makeRows(4, 2);
  await writeKnnArtifact(artifact, rows.vectors, rows.scores, manifestFor(['strong', 'weak'], rows.vectors.length));
});
afterAll(() => rm(artifact, { recursive: true, force: true }));

describe('OnlineLearning with Redis (two replicas)', () => {
  it('a row learned on A reaches B, changes its scores, and survives a reload of B', async () => {
    const { a, b, prefix } = await redisPair();
    const [rtA, rtB] = [await runtime(yaml()), await runtime(yaml())];
    const [A, B] = [learning(a, prefix), learning(b, prefix)];
    await A.attach(rtA);
    await B.attach(rtB);
    expect(A.isLearning('auto')).toBe(true);
    expect(A.isLearning('plain')).toBe(false);
    const before = await weak(rtB);
    expect(before.evidence.live).toBe(0);

    A.remember('auto', 'req-1', EMB);
    A.remember('auto', 'req-2', EMB);
    await waitFor(async () => (await a.exists(`${prefix}emb:req-2`)) === 1, 2_000, 'embeddings in Redis');
    const ttl = await a.ttl(`${prefix}emb:req-1`);
    expect(ttl).toBeGreaterThan(590);
    expect(ttl).toBeLessThanOrEqual(600);

    expect(await A.learn('auto', 'req-1', 'weak', 1)).toBe('learned');
    expect(await B.learn('auto', 'req-2', 'weak', 1)).toBe('learned'); // remembered by A, learned on B
    expect(await B.learn('auto', 'req-unknown', 'weak', 1)).toBe('no_embedding');
    expect(await B.learn('plain', 'req-1', 'weak', 1)).toBe('not_learning');
    expect(await a.xlen(`${prefix}learn:auto`)).toBe(2);

    await waitFor(async () => (await weak(rtB)).evidence.live === 2, 3_000, 'rows on B');
    await waitFor(async () => (await weak(rtA)).evidence.live === 2, 3_000, 'rows on A');
    const after = await weak(rtB);
    expect(after.quality).toBeGreaterThan(before.quality + 0.3);

    // Reload B: the fresh router gets the stored rows replayed, once, and keeps being fed.
    const rtB2 = await runtime(yaml());
    await B.attach(rtB2);
    expect((await weak(rtB2)).evidence.live).toBe(2);
    expect((await weak(rtB2)).quality).toBeCloseTo(after.quality, 6);
    A.remember('auto', 'req-3', EMB);
    await waitFor(async () => (await a.exists(`${prefix}emb:req-3`)) === 1, 2_000, 'req-3 in Redis');
    expect(await A.learn('auto', 'req-3', 'weak', 1)).toBe('learned');
    await waitFor(async () => (await weak(rtB2)).evidence.live === 3, 3_000, 'the new row on reloaded B');
    await new Promise((r) => setTimeout(r, 500)); // a few more tail rounds: nothing is added twice
    expect((await weak(rtB2)).evidence.live).toBe(3);
    expect(B.stats()).toMatchObject({ rows_added: 5, rows_refused: 0 }); // 2 on rtB, 3 on rtB2
  });

  it('keeps at most max_pending embeddings per policy, evicting the oldest', async () => {
    const { a, prefix } = await redisPair();
    const A = learning(a, prefix);
    await A.attach(await runtime(yaml(3)));
    for (let i = 0; i < 6; i++) A.remember('auto', `r${i}`, EMB);
    await waitFor(async () => (await a.exists(`${prefix}emb:r5`)) === 1, 2_000, 'embeddings in Redis');
    await waitFor(async () => (await a.zcard(`${prefix}emb-pending:auto`)) === 3, 2_000, 'the index trimmed');
    expect(await a.zrange(`${prefix}emb-pending:auto`, 0, -1)).toEqual(['r3', 'r4', 'r5']);
    expect(await a.exists(`${prefix}emb:r0`, `${prefix}emb:r1`, `${prefix}emb:r2`)).toBe(0);
    expect(await a.ttl(`${prefix}emb-pending:auto`)).toBeGreaterThan(0);
    A.remember('plain', 'r9', EMB); // not a learning policy: not kept
    expect(A.stats()).toMatchObject({ remembered: 6, dropped: 0 });
  });

  it('drops embeddings, without throwing, while Redis is unreachable', async () => {
    const down = new Redis('redis://127.0.0.1:1', { lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null });
    down.on('error', () => {});
    cleanups.push(async () => down.disconnect());
    const L = learning(down, uniquePrefix());
    await L.attach(await runtime(yaml()));
    L.remember('auto', 'x', EMB);
    expect(L.stats().dropped).toBe(1);
  });
});

describe('OnlineLearning without Redis', () => {
  it('learns locally at once and replays on reload', async () => {
    const L = learning(null, 'signalman:');
    const rt = await runtime(yaml());
    await L.attach(rt);
    const before = await weak(rt);
    L.remember('auto', 'req-1', EMB);
    expect(await L.learn('auto', 'req-1', 'weak', 1)).toBe('learned');
    expect(await L.learn('auto', 'nope', 'weak', 1)).toBe('no_embedding');
    expect(await L.learn('plain', 'req-1', 'weak', 1)).toBe('not_learning');
    const after = await weak(rt);
    expect(after.evidence.live).toBe(1);
    expect(after.quality).toBeGreaterThan(before.quality + 0.1);

    const rt2 = await runtime(yaml());
    await L.attach(rt2);
    expect((await weak(rt2)).evidence.live).toBe(1);
    await L.attach(rt2); // attaching the same runtime again adds nothing
    expect((await weak(rt2)).evidence.live).toBe(1);
    await expect(L.learn('auto', 'req-1', 'weak', 1.5)).rejects.toThrow(/0\.\.1/);
  });
});
