// `signalman export-feedback` end to end: records and feedback in a real Redis → routing-outcome JSONL →
// `signalman train --input --kind knn` on those partial rows → an artifact the knn router loads and uses.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { exportFeedbackCommand } from '../../src/cli/export-feedback.js';
import { trainCommand } from '../../src/cli/train.js';
import knn, { KnnRouterOptions } from '../../src/routers/knn.js';
import type { RequestRecord } from '../../src/telemetry/record.js';
import { RedisSink } from '../../src/telemetry/redis-sink.js';
import { putFeedback } from '../../src/telemetry/redis-store.js';
import { deletePrefix, REDIS_URL, uniquePrefix } from '../helpers/redis.js';
import { ctxFor, embedder, prompt, tempDir, type Topic } from '../routers/helpers.js';
import { makeRecord } from '../telemetry/records.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Runs a command with stderr captured. */
async function run(fn: () => Promise<number>): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  const code = await fn();
  vi.restoreAllMocks();
  return { code, stderr };
}

describe('signalman export-feedback', () => {
  it('writes labelled requests as JSONL that train --input --kind knn turns into a working router', async () => {
    const prefix = uniquePrefix();
    const client = new Redis(REDIS_URL);
    cleanups.push(async () => {
      await deletePrefix(client, prefix);
      await client.quit();
    });
    // Production as it might look: strong gets math right, weak gets math wrong and geography right.
    const records: RequestRecord[] = [];
    const answered = (topic: Topic, i: number, backend: string) => {
      const r = makeRecord({ id: `${topic}-${backend}-${i}`, backend, prompt: prompt(topic, i), policy: 'auto' });
      records.push(r);
      return r;
    };
    const feedback: Array<[string, string, { score?: number; label?: string }]> = [];
    for (let i = 0; i < 6; i++) {
      feedback.push([answered('math', i, 'strong').id, 'app', { label: 'good' }]);
      feedback.push([answered('math', i + 10, 'weak').id, 'app', { label: 'bad' }]);
      feedback.push([answered('geo', i, 'weak').id, 'app', { score: 1 }]);
    }
    const twoSources = answered('code', 1, 'weak');
    feedback.push([twoSources.id, 'app', { score: 1 }], [twoSources.id, 'judge', { score: 0.5 }]);
    const noPrompt = makeRecord({ id: 'no-prompt', prompt: null });
    const failed = makeRecord({ id: 'failed', prompt: 'x', outcome: 'upstream_error', status: 502 });
    records.push(noPrompt, failed);
    feedback.push(['no-prompt', 'app', { score: 1 }], ['failed', 'app', { score: 0 }], ['never-recorded', 'app', { score: 1 }]);

    const sink = new RedisSink({ url: REDIS_URL, key_prefix: prefix });
    for (const r of records) sink.push(r);
    await sink.flush(5_000);
    await sink.close();
    for (const [id, source, fb] of feedback) await putFeedback(client, prefix, id, source, fb);

    const dir = await tempDir();
    const file = join(dir, 'feedback.jsonl');
    const exported = await run(() => exportFeedbackCommand(['--redis', REDIS_URL, '--prefix', prefix, '--hours', '1', '--out', file]));
    expect(exported.code).toBe(0);
    expect(exported.stderr).toMatch(/wrote 19 rows/);
    expect(exported.stderr).toMatch(/skipped 3 \(.*1 record expired or unknown.*\)/);
    expect(exported.stderr).toMatch(/1 no prompt text/);
    expect(exported.stderr).toMatch(/1 request not answered/);
    const rows = (await readFile(file, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toHaveLength(19);
    expect(rows.find((r) => r.id === `signalman/${twoSources.id}`)).toEqual({
      id: `signalman/${twoSources.id}`,
      benchmark: 'signalman',
      category: 'auto',
      prompt: prompt('code', 1),
      scores: { weak: 0.75 },
      contaminated: false,
    });
    expect(rows.find((r) => r.id === 'signalman/math-weak-10')?.scores).toEqual({ weak: 0 });

    // --model-names: backends named by their upstream model.
    const cfg = join(dir, 'gw.yaml');
    await writeFile(
      cfg,
      'version: 1\nbackends:\n  - { name: strong, base_url: "http://127.0.0.1:1/v1", model: big-model }\n  - { name: weak, base_url: "http://127.0.0.1:1/v1", model: small-model }\n',
    );
    const named = join(dir, 'named.jsonl');
    expect(
      (await run(() => exportFeedbackCommand(['--redis', REDIS_URL, '--prefix', prefix, '--model-names', cfg, '--out', named]))).code,
    ).toBe(0);
    expect((await readFile(named, 'utf8')).includes('"scores":{"small-model":0}')).toBe(true);

    // An MLP cannot learn from rows that score one model each; kNN can.
    const mlp = await run(() =>
      trainCommand(['--input', file, '--kind', 'mlp', '--split', 'all', '--no-cache', '--out', join(dir, 'mlp')]),
    );
    expect(mlp.code).toBe(1);
    expect(mlp.stderr).toMatch(/--kind mlp needs every row to score every model: use --kind knn/);
    const out = join(dir, 'knn');
    const trained = await run(() =>
      trainCommand([
        '--input',
        file,
        '--kind',
        'knn',
        '--split',
        'all',
        '--embedder',
        'lexical',
        '--dim',
        '64',
        '--no-cache',
        '--out',
        out,
      ]),
    );
    expect(trained).toMatchObject({ code: 0 });

    const router = await knn.create(
      KnnRouterOptions.parse({ type: 'knn', artifact: out, k: 3 }),
      ctxFor([
        { backend: 'strong', as: 'strong' },
        { backend: 'weak', as: 'weak' },
      ]),
    );
    const score = async (text: string) =>
      new Map(
        (await router.score({ text, embedding: embedder.embedSync(text), candidates: ['strong', 'weak'], meta: {} })).map((s) => [
          s.backend,
          s.quality,
        ]),
      );
    const math = await score(prompt('math', 3));
    expect(math.get('strong')).toBeGreaterThan(0.9);
    expect(math.get('weak')).toBeLessThan(0.1);
    const geo = await score(prompt('geo', 3));
    expect(geo.get('weak')).toBeGreaterThan(0.9);
  });
});
