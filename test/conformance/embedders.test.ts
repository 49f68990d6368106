import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { embedderPlugins } from '../../src/embedders/registry.js';
import type { Embedder, EmbedderContext } from '../../src/embedders/types.js';
import { writeTinyOnnxModel } from '../embedders/tiny-onnx-model.js';
import { startStubEmbeddings, type StubServer } from '../embedders/stub-embeddings-server.js';
import { writeTinyStaticArtifact } from '../embedders/tiny-static-artifact.js';

// One suite, every registered embedder (STYLE.md §8). A new plugin fails here until it has a case.

let dir: string;
let stub: StubServer;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'signalman-conf-'));
  await writeTinyOnnxModel(join(dir, 'tiny'));
  await writeTinyStaticArtifact(join(dir, 'static-tiny'));
  stub = await startStubEmbeddings(48);
}, 30_000);
afterAll(async () => {
  await stub?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Small, offline settings per type. */
const cases: Record<string, () => Record<string, unknown>> = {
  lexical: () => ({ type: 'lexical', dim: 256 }),
  'use-lite': () => ({ type: 'use-lite', batch_window_ms: 1, max_chars: 256 }),
  onnx: () => ({ type: 'onnx', model_dir: 'tiny' }),
  remote: () => ({ type: 'remote', base_url: stub.baseURL, model: 'stub', dim: 48 }),
  concat: () => ({
    type: 'concat',
    members: [
      { type: 'lexical', dim: 64 },
      { type: 'lexical', dim: 32, word_ngram_max: 0 },
    ],
    weights: [2, 1],
  }),
  static: () => ({ type: 'static', artifact: 'static-tiny' }),
  shape: () => ({ type: 'shape' }),
};

const TEXTS = ['What is a tort?', 'Write a Python function that reverses a string.', 'ok', '数学 😀 émigré'];
const norm = (v: Float32Array): number => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const expectSame = (a: Float32Array, b: Float32Array): void => {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  expect(worst).toBeLessThan(1e-5);
};

it('every registered embedder has a conformance case', () => {
  expect(embedderPlugins.map((p) => p.type).sort()).toEqual(Object.keys(cases).sort());
});

describe.each(embedderPlugins.map((p) => [p.type, p] as const))('%s', (type, plugin) => {
  let e: Embedder;
  const ctx: EmbedderContext = { resolvePath: (p) => join(dir, p) };
  beforeAll(async () => {
    e = await plugin.create(plugin.options.parse(cases[type]!()) as never, ctx);
  }, 60_000);
  afterAll(() => e?.close());

  it('has a strict options schema with a `type` literal, defaults and descriptions', () => {
    expect(plugin.options.safeParse({ type }).success).toBe(true);
    expect(plugin.options.safeParse({ type, no_such_option: 1 }).success).toBe(false);
    expect(plugin.options.safeParse({ ...cases[type]!(), type: 'other' }).success).toBe(false);
    const schema = z.toJSONSchema(plugin.options, { io: 'input' }) as { properties: Record<string, { description?: string }> };
    for (const [k, p] of Object.entries(schema.properties)) if (k !== 'type') expect(p.description, `${type}.${k}`).toBeTruthy();
  });

  it('names itself by type and has a positive dimension', () => {
    expect(e.id.startsWith(`${type}/`)).toBe(true);
    expect(Number.isInteger(e.dim) && e.dim > 0).toBe(true);
  });

  it('gives finite unit vectors of its dimension, the same on every call', async () => {
    for (const t of TEXTS) {
      const a = await e.embed(t);
      expect(a).toBeInstanceOf(Float32Array);
      expect(a.length).toBe(e.dim);
      expect(a.every(Number.isFinite)).toBe(true);
      expect(norm(a)).toBeCloseTo(1, 4);
      expectSame(await e.embed(t), a);
    }
  });

  it('tells different texts apart', async () => {
    const [a, b] = await e.embedMany([TEXTS[0]!, TEXTS[1]!]);
    expect(a!.reduce((s, x, i) => s + x * b![i]!, 0)).toBeLessThan(0.999);
  });

  it('gives through embedMany what embed gives, in order, with progress', async () => {
    const seen: number[] = [];
    const many = await e.embedMany(TEXTS, (d) => seen.push(d));
    expect(many).toHaveLength(TEXTS.length);
    expect(seen.at(-1)).toBe(TEXTS.length);
    for (let k = 0; k < TEXTS.length; k++) expectSame(many[k]!, await e.embed(TEXTS[k]!));
    expect(await e.embedMany([])).toEqual([]);
  });

  it('embeds empty and whitespace-only text', async () => {
    for (const t of ['', ' \n ']) {
      const v = await e.embed(t);
      expect(v.length).toBe(e.dim);
      expect(norm(v)).toBeCloseTo(1, 4);
    }
  });

  it('embeds a huge text (1 MB) without error', async () => {
    const v = await e.embed('lorem ipsum dolor sit amet, '.repeat(40_000));
    expect(v.length).toBe(e.dim);
    expect(norm(v)).toBeCloseTo(1, 4);
  });

  it('rejects a call with an aborted signal', async () => {
    await expect(e.embed('x', AbortSignal.abort(new Error('caller gave up')))).rejects.toThrow('caller gave up');
  });

  it('refuses work after close(), and close() may be called again', async () => {
    await e.close();
    await e.close();
    await expect(e.embed('after close')).rejects.toThrow(/closed/);
  });
});
