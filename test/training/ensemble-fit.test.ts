import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { OnnxMlp } from '../../src/routers/mlp.js';
import { fitRecipe, slicesOf } from '../../src/training/fit.js';
import { isEnsemble } from '../../src/training/ensemble.js';
import { writeMlpArtifact } from '../../src/training/onnx-export.js';
import { RECIPES, shippedRecipe } from '../../src/training/recipes.js';
import type { Matrix } from '../../src/training/embed-cache.js';
import type { TrainedMlp } from '../../src/training/mlp-train.js';
import type { Embedder } from '../../src/embedders/types.js';
import { ensembleRecipe, smallConcat } from './fixture.js';

// fitRecipe with an ensemble recipe on a real concat embedder (two lexical members, so it is fast):
// members read their own parts of the joined vector, and the artifact runs in onnxruntime.

const TOPICS = {
  algebra: ['solve', 'equation', 'root', 'polynomial', 'integral'],
  law: ['court', 'statute', 'plaintiff', 'tort', 'contract'],
  biology: ['cell', 'gene', 'protein', 'enzyme', 'membrane'],
};

/** Twelve short prompts per topic, in TOPICS order, with their topic. */
function topicRows(): { texts: string[]; categories: string[] } {
  const texts: string[] = [];
  const categories: string[] = [];
  for (const [cat, words] of Object.entries(TOPICS)) {
    for (let i = 0; i < 12; i++) {
      texts.push(`${words[i % 5]} ${words[(i * 3 + 1) % 5]} ${words[(i * 7 + 2) % 5]} question ${i}`);
      categories.push(cat);
    }
  }
  return { texts, categories };
}

/** Writes `m` as an artifact and checks that the gateway's loader computes what the trainer's predict() does. */
async function expectArtifactComputes(
  m: TrainedMlp,
  embedder: Embedder,
  vecs: readonly Float32Array[],
  columns: { models: string[]; labels?: string[] },
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sm-ens-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  await writeMlpArtifact(dir, m, {
    embedder: { id: embedder.id, dim: embedder.dim },
    ...columns,
    trained_on: { file: 'synthetic', sha256: '0'.repeat(64), split: 'all', seed: 1, rows: vecs.length },
    metrics: {},
    command: 'test',
    created_at: '2025-01-01T00:00:00.000Z',
  });
  const ort = await OnnxMlp.load(dir);
  onTestFinished(() => ort.close());
  for (const v of vecs) {
    const js = m.predict(v);
    const rt = await ort.run(v);
    for (let i = 0; i < js.length; i++) expect(rt[i]).toBeCloseTo(js[i]!, 5);
  }
}

describe('fitRecipe with an ensemble recipe', () => {
  it('trains each member on its slice of a concat vector and exports one graph', async () => {
    const embedder = await smallConcat();
    onTestFinished(() => embedder.close());
    expect(slicesOf(embedder)).toEqual([
      [0, 64],
      [64, 96],
    ]);
    const { texts, categories } = topicRows();
    const Y = categories.map((cat) => Float32Array.of(1, cat === 'algebra' ? 0 : 1)); // the weak model fails algebra
    const vecs = await embedder.embedMany(texts);
    const X: Matrix = { rows: vecs.length, dim: embedder.dim, data: new Float32Array(vecs.length * embedder.dim) };
    vecs.forEach((v, i) => X.data.set(v, i * embedder.dim));
    const recipe = ensembleRecipe('test-ensemble', 'p1', [
      { input: 0, kind: 'joint', mlp: { hidden: [], epochs: 15, lr: 0.02, batchSize: 8 }, seed: 1, weight: 0.5 },
      { input: 1, kind: 'quality', mlp: { hidden: [8], epochs: 15, lr: 0.01, batchSize: 8 }, seed: 1, weight: 0.2 },
      { input: 'all', kind: 'category-prior', mlp: { hidden: [], epochs: 20, lr: 0.02, batchSize: 8 }, seed: 1, weight: 0.3 },
    ]);
    const rows = texts.map((_, i) => i);
    const m = await fitRecipe(recipe, X, rows, Y, 'sigmoid', { dataDir: '', cacheDir: null, progress: false }, undefined, {
      embedder,
      categories,
    });
    expect(isEnsemble(m)).toBe(true);
    if (!isEnsemble(m)) return;
    expect(m.ensemble.parts.map((p) => [p.start, p.end])).toEqual([
      [0, 64],
      [64, 96],
      [0, 96],
    ]);
    const algebra = m.predict(vecs[0]!);
    const law = m.predict(vecs[12]!);
    expect(algebra[0]! - algebra[1]!).toBeGreaterThan(law[0]! - law[1]!);
    await expectArtifactComputes(m, embedder, vecs, { models: ['strong', 'weak'] });
    // A classifier (softmax) ensemble takes no joint-outcome tables (their rows are not distributions).
    await expect(fitRecipe(recipe, X, rows, Y, 'softmax', { dataDir: '', cacheDir: null, progress: false })).rejects.toThrow(
      /'quality' and 'category-prior' members only/,
    );
  });

  it('a classifier over fine classes sums them into its labels, and a joint prior learns outcomes within a category', async () => {
    const embedder = await smallConcat();
    onTestFinished(() => embedder.close());
    // Two labels; 'other' is two unlike topics, so no single direction separates it from 'law'.
    const { texts, categories: fine } = topicRows();
    const labels = fine.map((cat) => Float32Array.of(cat === 'law' ? 1 : 0, cat === 'law' ? 0 : 1));
    const vecs = await embedder.embedMany(texts);
    const rows = texts.map((_, i) => i);
    const ctx = { dataDir: '', cacheDir: null, progress: false };
    const lr = { hidden: [], epochs: 20, lr: 0.02, batchSize: 8 };
    const classifier = ensembleRecipe('test-fine', 'p3', [
      { input: 'all', kind: 'quality', mlp: lr, seed: 1, weight: 0.5 },
      { input: 'all', kind: 'category-prior', mlp: lr, seed: 1, weight: 0.5 },
    ]);
    const weights = new Float32Array(rows.length).fill(1);
    const m = await fitRecipe(classifier, vecs, rows, labels, 'softmax', ctx, weights, { embedder, categories: fine });
    if (!isEnsemble(m)) throw new Error('not an ensemble');
    // The prior's table sends each fine class to its label: algebra and biology to 'other'.
    expect(Array.from(m.ensemble.parts[1]!.table!)).toEqual([0, 1, 0, 1, 1, 0]);
    for (const [i, v] of vecs.entries()) {
      const p = m.predict(v);
      expect(p[0]! + p[1]!).toBeCloseTo(1, 6);
      expect(p[0]! > 0.5).toBe(fine[i] === 'law');
    }
    await expectArtifactComputes(m, embedder, vecs, { models: ['law', 'ood'], labels: ['law', 'ood'] });

    // A joint prior: within 'law' the weak model fails the 'court' questions only, which a subject prior
    // (one mean per subject) cannot tell apart and a (subject, outcome) classifier can.
    const Y = texts.map((t, i) => Float32Array.of(1, fine[i] === 'law' && t.includes('court') ? 0 : 1));
    const prior = (joint: boolean) =>
      ensembleRecipe('test-joint-prior', 'p1', [
        { input: 'all', kind: 'category-prior', mlp: lr, seed: 1, weight: 1, ...(joint ? { joint } : {}) },
      ]);
    const gap = async (joint: boolean): Promise<number> => {
      const model = await fitRecipe(prior(joint), vecs, rows, Y, 'sigmoid', ctx, undefined, { embedder, categories: fine });
      const court = rows.filter((i) => fine[i] === 'law' && texts[i]!.includes('court'));
      const rest = rows.filter((i) => fine[i] === 'law' && !texts[i]!.includes('court'));
      const weak = (is: number[]) => is.reduce((s, i) => s + model.predict(vecs[i]!)[1]!, 0) / is.length;
      return weak(rest) - weak(court);
    };
    expect(Math.abs(await gap(false))).toBeLessThan(0.1);
    expect(await gap(true)).toBeGreaterThan(0.3);
  });

  it('every recipe has either mlp settings or an ensemble, and each protocol one best', () => {
    for (const r of RECIPES) expect((r.mlp === undefined) !== (r.ensemble === undefined)).toBe(true);
    for (const r of RECIPES.filter((x) => x.ensemble)) expect(r.ensemble!.reduce((s, m) => s + m.weight, 0)).toBeCloseTo(1, 9);
    expect(shippedRecipe('p1').name).toBe('p1-ensemble-static');
    expect(shippedRecipe('p2').name).toBe('p2-ensemble-static-h256');
    expect(shippedRecipe('p3').name).toBe('p3-lex16k-static-fine-chat2');
    // Issue #15: what eval scores by default and the demo ships decides in under a millisecond, so no USE-lite.
    for (const p of ['p1', 'p2', 'p3'] as const) expect(JSON.stringify(shippedRecipe(p).embedder)).not.toContain('"type":"use-lite"');
  });
});
