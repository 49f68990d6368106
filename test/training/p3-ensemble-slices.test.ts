import { describe, expect, it, onTestFinished } from 'vitest';
import { isEnsemble } from '../../src/training/ensemble.js';
import { fitGuard, type Item } from '../../src/training/protocols/p3.js';
import type { P3Label } from '../../src/training/dataset.js';
import type { Recipe } from '../../src/training/recipes.js';
import { smallConcat } from './fixture.js';

// P3's trainer hands an ensemble its embedder's member slices, as P1's and P2's do: `input: 0` is the
// first concat member's part, not the whole vector (until session 14 it silently read the whole vector).

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
    const recipe: Recipe = {
      name: 'test-p3-ensemble',
      protocol: 'p3',
      embedder: { type: 'concat' },
      ensemble: [
        { input: 'all', kind: 'quality', mlp: lr, seed: 1, weight: 0.5 },
        { input: 0, kind: 'quality', mlp: lr, seed: 1, weight: 0.3 },
        { input: 1, kind: 'quality', mlp: lr, seed: 1, weight: 0.2 },
      ],
      seed: 1,
      shipped: false,
      note: 'test',
    };
    const { model } = await fitGuard(recipe, items, [], embedder, { dataDir: '', cacheDir: null, progress: false });
    expect(isEnsemble(model)).toBe(true);
    if (!isEnsemble(model)) return;
    expect(model.ensemble.parts.map((p) => [p.start, p.end])).toEqual([
      [0, 96],
      [0, 64],
      [64, 96],
    ]);
  });
});
