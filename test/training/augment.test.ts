import { describe, expect, it } from 'vitest';
import { questionStem, stemDataset } from '../../src/training/augment.js';
import type { Dataset } from '../../src/training/dataset.js';

describe('format augmentation: option-less copies of multiple-choice prompts', () => {
  it('cuts the lettered options and the answer cue, keeping the whole question', () => {
    const q = 'A train leaves at 3 p.m.\nIt travels 60 miles an hour. How far has it gone by 5 p.m.?';
    expect(questionStem(`${q}\nA. 60 miles\nB. 120 miles\nC. 180 miles\nD. 240 miles\nAnswer:`)).toBe(q);
    // Options may span lines; only an A line that a B line follows starts the block.
    expect(questionStem('Pick one.\nA. first\nline two of A\nB. second\nAnswer:')).toBe('Pick one.');
  });

  it('leaves prompts without an option block alone (null), and refuses an empty stem', () => {
    expect(questionStem('Write a haiku about autumn.')).toBeNull();
    expect(questionStem('Grade A. Then grade B.')).toBeNull();
    expect(questionStem('\nA. yes\nB. no\nAnswer:')).toBeNull();
  });

  it('makes a dataset of its own: new ids and hash, each copy pointing at its source row', () => {
    const row = (id: string, prompt: string) => ({
      id,
      benchmark: 'mmlu',
      category: 'x',
      prompt,
      scores: { s: 1, w: 0 },
      contaminated: false,
    });
    const ds: Dataset = {
      file: 'mmlu.jsonl',
      sha256: 'abc',
      contaminated: 0,
      rows: [row('a', 'Q1?\nA. x\nB. y\nAnswer:'), row('b', 'free text'), row('c', 'Q3?\nA. x\nB. y\nAnswer:')],
    };
    const s = stemDataset(ds, [0, 1, 2]);
    expect(s.source).toEqual([0, 2]);
    expect(s.ds.rows.map((r) => [r.id, r.prompt, r.scores])).toEqual([
      ['a#stem', 'Q1?', { s: 1, w: 0 }],
      ['c#stem', 'Q3?', { s: 1, w: 0 }],
    ]);
    expect(s.ds.sha256).not.toBe(ds.sha256);
    // Another choice of rows is another dataset (its embeddings are cached apart).
    expect(stemDataset(ds, [0]).ds.sha256).not.toBe(s.ds.sha256);
  });
});

describe('recipes', () => {
  it('cut options (stems) only for P1 recipes: only MMLU has multiple-choice options; prompt shapes for any protocol', async () => {
    const { RECIPES } = await import('../../src/training/recipes.js');
    const stems = RECIPES.filter((r) => r.augment === 'stems');
    expect(stems.map((r) => r.name)).toContain('p1-ensemble');
    expect(stems.every((r) => r.protocol === 'p1')).toBe(true);
    expect(RECIPES.find((r) => r.name === 'p2-ensemble-static')?.augment).toBe('shapes');
  });
});
