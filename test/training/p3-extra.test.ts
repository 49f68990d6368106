import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type CvRun, type P3FoldTrace, crossValidate } from '../../src/training/cv.js';
import { type P3Label, P3_LABELS, readDataset } from '../../src/training/dataset.js';
import { EmbedderPool } from '../../src/training/fit.js';
import { runP3 } from '../../src/training/protocols/p3.js';
import { type Recipe, findRecipe } from '../../src/training/recipes.js';
import { writeFixture } from './fixture.js';

// A P3 recipe's `extra` file: the project's own labelled chat prompts (benchmark 'chat', category = label)
// join the training rows of runP3 and of every CV fold, and are never scored or used for the threshold.
// The fixture's MMLU rows never use the chat prompts' words, so only the extra rows can teach them.

const WORDS: Record<P3Label, string[]> = {
  law: ['landlord', 'lease', 'eviction', 'tenant', 'notice'],
  finance: ['mortgage', 'refinance', 'paycheck', 'budget', 'savings'],
  health: ['headache', 'ibuprofen', 'nausea', 'rash', 'dizzy'],
  ood: ['pasta', 'garlic', 'oven', 'guitar', 'hiking'],
};

function chatFile(dir: string, name: string, perLabel: number, salt: number): string {
  const lines = P3_LABELS.flatMap((label) =>
    Array.from({ length: perLabel }, (_, i) => {
      const w = WORDS[label];
      const prompt = `hey, quick question about my ${w[(i + salt) % 5]} and the ${w[(i * 2 + 1 + salt) % 5]}, what should I do?`;
      const scores = Object.fromEntries(P3_LABELS.map((l) => [l, l === label ? 1 : 0]));
      return JSON.stringify({ id: `${name}/${label}/${i}`, benchmark: 'chat', category: label, prompt, scores });
    }),
  );
  const file = join(dir, `${name}.jsonl`);
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

let data = '';
let trainFile = '';
let testFile = '';
beforeAll(() => {
  data = writeFixture();
  const dir = mkdtempSync(join(tmpdir(), 'sm-chat-'));
  trainFile = chatFile(dir, 'chat-train', 12, 0);
  testFile = chatFile(dir, 'chat-test', 6, 3);
});

const ctx = () => ({ dataDir: data, cacheDir: null, progress: false });
const lexical = (extra?: Recipe['extra']): Recipe => ({ ...findRecipe('p3-lexical-lr'), ...(extra === undefined ? {} : { extra }) });

describe("a P3 recipe's extra prompts", () => {
  it('teach the guard words the protocol rows never use, and count in its provenance', async () => {
    const pool = new EmbedderPool();
    try {
      const without = await runP3({ recipe: lexical(), pool, testFile }, ctx());
      const withExtra = await runP3({ recipe: lexical({ file: trainFile, weight: 1 }), pool, testFile }, ctx());
      // The test file's rows are labelled by their category (p3DomainOf reads chat rows so).
      expect(withExtra.result.idAccuracy).toBeGreaterThanOrEqual(0.9);
      expect(withExtra.result.oodAccuracy).toBeGreaterThanOrEqual(0.9);
      expect(withExtra.result.score).toBeGreaterThan(without.result.score + 0.2);
      expect(withExtra.train.rows).toBe(without.train.rows + 48);
      expect(withExtra.train.sha256).not.toBe(without.train.sha256);
      expect(withExtra.train.split).toContain('48 project-written prompts');
      // The dump labels every test row, chat ids included.
      expect(withExtra.dump.map((d) => d.id)).toEqual((await readDataset(testFile)).rows.map((r) => r.id));
    } finally {
      await pool.close();
    }
  }, 60_000);

  it('train every CV fold, whole, and are never validated or used for the threshold', async () => {
    const pool = new EmbedderPool();
    const traces: P3FoldTrace[] = [];
    try {
      await crossValidate(
        'p3',
        { recipe: lexical({ file: trainFile, weight: 2 }), pool, folds: 2, robustness: false, onP3Fold: (t) => traces.push(t) },
        ctx(),
      );
    } finally {
      await pool.close();
    }
    const extraIds = (await readDataset(trainFile)).rows.map((r) => r.id).sort();
    expect(traces).toHaveLength(2);
    for (const t of traces) {
      expect(
        t.copies
          .filter((c) => c.row.benchmark === 'chat')
          .map((c) => c.row.id)
          .sort(),
      ).toEqual(extraIds);
      for (const it of [...t.train, ...t.thresholdRows, ...t.validation]) expect(it.row.benchmark).not.toBe('chat');
    }
  }, 60_000);

  it("are cut into the CV folds with extraFolds: each fold trains on the others' part and is scored on its own", async () => {
    const pool = new EmbedderPool();
    const traces: P3FoldTrace[] = [];
    let withExtra: CvRun;
    let without: CvRun;
    try {
      const cv = (recipe: Recipe, onP3Fold?: (t: P3FoldTrace) => void) =>
        crossValidate('p3', { recipe, pool, folds: 2, robustness: false, extraFolds: trainFile, ...(onP3Fold ? { onP3Fold } : {}) }, ctx());
      withExtra = await cv(lexical({ file: trainFile, weight: 1 }), (t) => traces.push(t));
      without = await cv(lexical());
    } finally {
      await pool.close();
    }
    const rows = (await readDataset(trainFile)).rows;
    for (const t of traces) {
      const trainedOn = new Set(t.copies.filter((c) => c.row.benchmark === 'chat').map((c) => c.row.id));
      // Both folds hold some chat rows; a fold never trains on one it is scored on.
      expect(trainedOn.size).toBeGreaterThan(0);
      expect(trainedOn.size).toBeLessThan(rows.length);
      const other = traces.find((u) => u.fold !== t.fold)!;
      const otherTrained = new Set(other.copies.filter((c) => c.row.benchmark === 'chat').map((c) => c.row.id));
      for (const r of rows) expect(trainedOn.has(r.id)).not.toBe(otherTrained.has(r.id));
    }
    // The other folds' chat rows teach this fold's words, which the recipe that never saw the file does not
    // know; both are scored on the same rows. (The fixture's fold 0 picks threshold 0: nothing is OOD there.)
    withExtra.perFold.forEach((f, k) =>
      expect(f.metrics.extraIdAccuracy!).toBeGreaterThan(without.perFold[k]!.metrics.extraIdAccuracy! + 0.2),
    );
    expect(withExtra.mean.extraScore!).toBeGreaterThan(without.mean.extraScore! + 0.2);
  }, 60_000);
});
