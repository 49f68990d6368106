import { describe, expect, it, onTestFinished } from 'vitest';
import { isEnsemble } from '../../src/training/ensemble.js';
import { fitGuard, p3FineClass, type Item } from '../../src/training/protocols/p3.js';
import type { P3Label } from '../../src/training/dataset.js';
import { ensembleRecipe, smallConcat } from './fixture.js';

// P3's trainer hands an ensemble its embedder's member slices, as P1's and P2's do: `input: 0` is the
// first concat member's part, not the whole vector (until session 14 it silently read the whole vector);
// and a category-prior member its rows' fine classes (session 18's shipped guard).

const WORDS: Record<P3Label, string[]> = {
  law: ['court', 'statute', 'plaintiff', 'tort', 'contract'],
  finance: ['bond', 'equity', 'interest', 'inflation', 'dividend'],
  health: ['fever', 'dose', 'symptom', 'vaccine', 'tumor'],
  ood: ['poem', 'guitar', 'planet', 'recipe', 'chess'],
};

describe('P3 training with an ensemble recipe', () => {
  it('gives each member its own slice of a concat vector', async () => {
    const embedder = await smallConcat();
    onTestFinished(() => embedder.close());
    const items: Item[] = [];
    for (const [label, words] of Object.entries(WORDS) as Array<[P3Label, string[]]>) {
      for (let i = 0; i < 16; i++) {
        const prompt = `${words[i % 5]} ${words[(i * 3 + 1) % 5]} question ${i}`;
        const row = { id: `${label}-${i}`, benchmark: 'mmlu', category: label, prompt, scores: { m: 1 }, contaminated: false };
        items.push({ row, label, x: await embedder.embed(prompt) });
      }
    }
    const lr = { hidden: [], epochs: 5, lr: 0.05, batchSize: 16 };
    const recipe = ensembleRecipe('test-p3-ensemble', 'p3', [
      { input: 'all', kind: 'quality', mlp: lr, seed: 1, weight: 0.5 },
      { input: 0, kind: 'quality', mlp: lr, seed: 1, weight: 0.3 },
      { input: 1, kind: 'quality', mlp: lr, seed: 1, weight: 0.2 },
    ]);
    const { model } = await fitGuard(recipe, items, [], embedder, { dataDir: '', cacheDir: null, progress: false });
    expect(isEnsemble(model)).toBe(true);
    if (!isEnsemble(model)) return;
    expect(model.ensemble.parts.map((p) => [p.start, p.end])).toEqual([
      [0, 96],
      [0, 64],
      [64, 96],
    ]);
  });

  it('gives a category-prior member the fine classes (source and category) and sums them into the labels', async () => {
    const embedder = await smallConcat();
    onTestFinished(() => embedder.close());
    // 'ood' comes from two MMLU subjects and a llmrouter cluster; each domain from one subject.
    const sources: Array<[P3Label, string, string, string[]]> = [
      ['law', 'mmlu', 'jurisprudence', WORDS.law],
      ['finance', 'mmlu', 'econometrics', WORDS.finance],
      ['health', 'mmlu', 'anatomy', WORDS.health],
      ['ood', 'mmlu', 'astronomy', ['planet', 'orbit', 'comet', 'galaxy', 'star']],
      ['ood', 'mmlu', 'music', ['guitar', 'chord', 'tempo', 'melody', 'drum']],
      ['ood', 'llmrouter', 'cluster-0', ['poem', 'recipe', 'chess', 'story', 'joke']],
    ];
    const items: Item[] = [];
    for (const [label, benchmark, category, words] of sources) {
      for (let i = 0; i < 12; i++) {
        const prompt = `${words[i % 5]} ${words[(i * 3 + 1) % 5]} question ${i}`;
        const row = { id: `${category}-${i}`, benchmark, category, prompt, scores: { m: 1 }, contaminated: false };
        items.push({ row, label, x: await embedder.embed(prompt) });
      }
    }
    expect(new Set(items.map(p3FineClass))).toEqual(
      new Set(['mmlu/jurisprudence', 'mmlu/econometrics', 'mmlu/anatomy', 'mmlu/astronomy', 'mmlu/music', 'llmrouter/cluster-0']),
    );
    const recipe = ensembleRecipe('test-p3-fine', 'p3', [
      { input: 'all', kind: 'category-prior', mlp: { hidden: [], epochs: 10, lr: 0.05, batchSize: 16 }, seed: 1, weight: 1 },
    ]);
    const { model } = await fitGuard(recipe, items, [], embedder, { dataDir: '', cacheDir: null, progress: false });
    if (!isEnsemble(model)) throw new Error('not an ensemble');
    const [part] = model.ensemble.parts;
    expect(part!.mlp.spec.outputDim).toBe(6); // one class per source and category, not per label
    // Classes in sorted order; each row of the table is its class's label (law, finance, health, ood).
    expect(Array.from(part!.table!)).toEqual([
      ...[0, 0, 0, 1], // llmrouter/cluster-0
      ...[0, 0, 1, 0], // mmlu/anatomy
      ...[0, 0, 0, 1], // mmlu/astronomy
      ...[0, 1, 0, 0], // mmlu/econometrics
      ...[1, 0, 0, 0], // mmlu/jurisprudence
      ...[0, 0, 0, 1], // mmlu/music
    ]);
    for (const it of items) {
      const p = model.predict(it.x);
      expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
      expect(Array.from(p).indexOf(Math.max(...p))).toBe(['law', 'finance', 'health', 'ood'].indexOf(it.label));
    }
  });
});
