// One suite, every registered router: exactly one score per candidate in policy order, quality in
// 0..1, deterministic, 2 and 9 candidates alike, and a clear error on a corrupt artifact.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { routerPlugins } from '../../src/routers/registry.js';
import type { Router, RouterPlugin } from '../../src/routers/types.js';
import {
  candidatesFor,
  ctxFor,
  embedder,
  makeClassifierArtifact,
  makeKnnArtifact,
  makeMlpArtifact,
  prompt,
  TOPICS,
} from '../routers/helpers.js';

interface Case {
  /** Options for a policy with `models` candidates; may build an artifact. */
  options(models: number): Promise<Record<string, unknown>>;
  /** Breaks the artifact the options point at; null for routers without one. */
  corrupt: ((opts: Record<string, unknown>) => Promise<RegExp>) | null;
}

const artifactDir = (o: Record<string, unknown>) => String(o['artifact'] ?? (o['classifier'] as { artifact: string }).artifact);

const garbleManifest = async (o: Record<string, unknown>) => {
  await writeFile(join(artifactDir(o), 'manifest.json'), '{"format": "knn", "version": 1, "embedder": {"id": 3}');
  return /manifest\.json.*not valid JSON/;
};

const cases: Record<string, Case> = {
  fixed: { options: async (n) => ({ type: 'fixed', backend: candidatesFor(n)[n - 1]!.backend }), corrupt: null },
  knn: {
    options: async (n) => ({ type: 'knn', artifact: (await makeKnnArtifact(n, 4)).dir, k: 3 }),
    corrupt: async (o) => {
      await writeFile(join(artifactDir(o), 'vectors.f32'), Buffer.alloc(10));
      return /vectors\.f32.*truncated/;
    },
  },
  mlp: {
    options: async (n) => ({ type: 'mlp', artifact: (await makeMlpArtifact(n)).dir }),
    corrupt: async (o) => {
      await writeFile(join(artifactDir(o), 'model.onnx'), Buffer.from('\x08\x07garbage-not-protobuf'));
      return /model\.onnx.*not a valid ONNX model/;
    },
  },
  rules: {
    options: async (n) => {
      const c = candidatesFor(n).map((x) => x.backend);
      return {
        type: 'rules',
        rules: [{ name: 'math', when: { any_keywords: ['compute'] }, scores: Object.fromEntries(c.map((b, i) => [b, i / (n - 1)])) }],
        classifier: { artifact: (await makeClassifierArtifact()).dir, map: { code: c[1]! } },
        default: { prefer: c[0]! },
      };
    },
    corrupt: garbleManifest,
  },
};

const plugins = routerPlugins as readonly RouterPlugin[];

it('has a conformance case for every registered router', () => {
  expect(Object.keys(cases).sort()).toEqual(plugins.map((p) => p.type).sort());
});

async function create(plugin: RouterPlugin, raw: Record<string, unknown>, n: number): Promise<Router> {
  const router = await plugin.create(plugin.options.parse(raw), ctxFor(candidatesFor(n)));
  onTestFinished(() => router.close?.());
  return router;
}

describe.each(plugins.map((p) => [p.type, p] as const))('router %s', (type, plugin) => {
  const c = cases[type]!;

  it.each([2, 9])('scores each of %i candidates once, in order, within 0..1, deterministically', async (n) => {
    const router = await create(plugin, await c.options(n), n);
    expect(router.type).toBe(type);
    const names = candidatesFor(n).map((x) => x.backend);
    for (const topic of TOPICS) {
      const text = prompt(topic, 4242);
      const q = { text, embedding: router.needsEmbedding ? embedder.embedSync(text) : null, candidates: names, meta: {} };
      const a = await router.score(q);
      expect(a.map((s) => s.backend)).toEqual(names);
      for (const s of a) {
        expect(s.quality).toBeGreaterThanOrEqual(0);
        expect(s.quality).toBeLessThanOrEqual(1);
        expect(Number.isFinite(s.quality)).toBe(true);
      }
      expect(await router.score(q)).toEqual(a);
      // A subset of the candidates (e.g. after the policy drops one) is scored as asked.
      const sub = await router.score({ ...q, candidates: names.slice(1) });
      expect(sub.map((s) => s.backend)).toEqual(names.slice(1));
    }
  });

  it.runIf(c.corrupt !== null)('fails to load a corrupt artifact with an error naming the file', async () => {
    const raw = await c.options(2);
    const pattern = await c.corrupt!(raw);
    await expect(create(plugin, raw, 2)).rejects.toThrow(pattern);
  });

  it('rejects unknown options at config load', () => {
    expect(plugin.options.safeParse({ type, no_such_option: 1 }).success).toBe(false);
  });
});
