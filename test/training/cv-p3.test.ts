import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type P3FoldTrace, crossValidate, p3FoldOf } from '../../src/training/cv.js';
import { type LabeledRow, bucket, overlapChecker, p3Split, readDataset } from '../../src/training/dataset.js';
import { EmbedderPool } from '../../src/training/fit.js';
import { type Recipe, findRecipe } from '../../src/training/recipes.js';
import { writeFixture } from './fixture.js';

// P3 cross-validation (signalman eval --cv K --protocol p3) on the small made-up datasets folder, with
// the lexical recipe plus option-less copies, so that the copies' fold rule is exercised too.

let data = '';
beforeAll(() => {
  data = writeFixture();
});

const key = (it: LabeledRow): string => it.row.id;

async function run(folds: number, extra: Partial<Recipe> = {}) {
  const traces: P3FoldTrace[] = [];
  const pool = new EmbedderPool();
  const recipe = { ...findRecipe('p3-lexical-lr'), augment: 'stems' as const, ...extra };
  try {
    const cv = await crossValidate(
      'p3',
      { recipe, pool, folds, robustness: true, onP3Fold: (t) => traces.push(t) },
      { dataDir: data, cacheDir: null, progress: false },
    );
    return { cv, traces };
  } finally {
    await pool.close();
  }
}

async function split() {
  const [mmlu, llm, gsm, mtb] = await Promise.all(
    [
      ['routellm', 'mmlu.jsonl'],
      ['llmrouter', 'train.jsonl'],
      ['routellm', 'gsm8k.jsonl'],
      ['routellm', 'mt-bench.jsonl'],
    ].map(([d, f]) => readDataset(join(data, d!, f!))),
  );
  const s = p3Split(mmlu!.rows, llm!.rows, [...gsm!.rows, ...mtb!.rows]);
  const quotes = overlapChecker([...gsm!.rows, ...mtb!.rows]);
  return { train: s.train.filter((it) => !quotes(it.row)), test: s.test };
}

describe('P3 cross-validation', () => {
  for (const folds of [2, 3]) {
    it(`cuts the train split into ${folds} folds and trains and scores each inside it only`, async () => {
      const { cv, traces } = await run(folds);
      const { train, test } = await split();
      expect(cv.protocol).toBe('p3');
      expect(traces.map((t) => t.fold)).toEqual([...Array(folds).keys()]);

      // The validation folds partition the train rows (ids are unique in the fixture), and each fold
      // trains on exactly the others.
      const all = new Set(train.map(key));
      const seen = traces.flatMap((t) => t.validation.map(key));
      expect(new Set(seen).size).toBe(seen.length);
      expect([...seen].sort()).toEqual([...all].sort());
      for (const t of traces) {
        expect(t.validation.length).toBeGreaterThan(0);
        const own = new Set(t.validation.map(key));
        expect(t.train.length + t.validation.length).toBe(train.length);
        for (const it of t.train) expect(own.has(key(it))).toBe(false);
        // Copies: only of the fold's training rows, never of a row it is scored on.
        expect(t.copies.length).toBeGreaterThan(0);
        const trainIds = new Set(t.train.map(key));
        for (const c of t.copies) expect(trainIds.has(key(c))).toBe(true);
        // The threshold is picked on a held-out part of the training part (never on the fold).
        expect(t.thresholdRows.length).toBeGreaterThan(0);
        expect(t.thresholdRows.length).toBeLessThan(t.train.length);
        for (const it of t.thresholdRows) expect(trainIds.has(key(it))).toBe(true);
      }

      // MMLU negatives are folded by subject: no subject is validated in two folds (and the fixture's
      // train negatives span more than one fold, so this is a real cut).
      const foldOfSubject = new Map<string, Set<number>>();
      for (const t of traces)
        for (const it of t.validation)
          if (it.label === 'ood' && it.row.benchmark === 'mmlu')
            (foldOfSubject.get(it.row.category) ?? foldOfSubject.set(it.row.category, new Set()).get(it.row.category)!).add(t.fold);
      expect(foldOfSubject.size).toBeGreaterThan(1);
      for (const fs of foldOfSubject.values()) expect(fs.size).toBe(1);
      expect(new Set([...foldOfSubject.values()].map((s) => [...s][0])).size).toBeGreaterThan(1);
      const foldOfId = new Map(traces.flatMap((t) => t.validation.map((it) => [key(it), t.fold] as const)));
      for (const it of train) expect(p3FoldOf(it, folds)).toBe(foldOfId.get(key(it)));

      // No row of the test half (in-domain test ids, test-subject negatives, llmrouter test ids,
      // GSM8K, MT-Bench) is trained on, used for the threshold or scored.
      const testIds = new Set(test.map(key));
      for (const t of traces)
        for (const it of [...t.train, ...t.copies, ...t.thresholdRows, ...t.validation]) {
          expect(testIds.has(key(it))).toBe(false);
          expect(['mmlu', 'llmrouter']).toContain(it.row.benchmark);
          const held = it.row.benchmark === 'mmlu' && it.label === 'ood' ? bucket(it.row.category) : bucket(it.row.id);
          expect(held).toBe(0);
        }

      // Each fold's figures are P3's: ID accuracy (right domain), OOD accuracy (flagged ood) and their
      // harmonic mean, on that fold's own rows; the mean is over the folds.
      for (const t of traces) {
        const m = cv.perFold[t.fold]!.metrics;
        const id = t.validation.flatMap((it, i) => (it.label === 'ood' ? [] : [t.predicted[i] === it.label]));
        const ood = t.validation.flatMap((it, i) => (it.label === 'ood' ? [t.predicted[i] === 'ood'] : []));
        const idAcc = id.filter(Boolean).length / id.length;
        const oodAcc = ood.filter(Boolean).length / ood.length;
        expect(m.idAccuracy).toBeCloseTo(idAcc, 12);
        expect(m.oodAccuracy).toBeCloseTo(oodAcc, 12);
        expect(m.score).toBeCloseTo((2 * idAcc * oodAcc) / (idAcc + oodAcc), 12);
        expect(m.threshold).toBe(t.threshold);
        expect(m.scoreAtBestThreshold).toBeGreaterThanOrEqual(m.score! - 1e-12); // the fold's own best threshold
        expect(cv.perFold[t.fold]!.testRows).toBe(t.validation.length);
        expect(m.scoreShapes).toBeGreaterThanOrEqual(0);
        expect(m.agreeShapes).toBeGreaterThan(0);
      }
      expect(cv.mean.score).toBeCloseTo(cv.perFold.reduce((s, f) => s + f.metrics.score!, 0) / folds, 12);
      expect(cv.mean.score).toBeGreaterThan(0.8); // the fixture's domains have their own words
    }, 60_000);
  }

  it('weighs copies by the recipe copyWeight (1 is the default)', async () => {
    const plain = await run(2);
    expect((await run(2, { copyWeight: 1 })).cv.perFold).toEqual(plain.cv.perFold);
    const light = await run(2, { copyWeight: 0.25 });
    expect(light.traces.map((t) => t.copies.length)).toEqual(plain.traces.map((t) => t.copies.length));
    expect(light.cv.perFold.map((f) => f.metrics.threshold)).not.toEqual(plain.cv.perFold.map((f) => f.metrics.threshold));
  }, 60_000);
});
