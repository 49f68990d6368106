import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { evalCommand } from '../../src/cli/eval.js';
import { quiet, writeFixture } from './fixture.js';
import { readDataset } from '../../src/training/dataset.js';
import { EmbedderPool } from '../../src/training/fit.js';
import { p1TrainRows, trainP1 } from '../../src/training/protocols/p1.js';
import { trainP2 } from '../../src/training/protocols/p2.js';
import { runP3 } from '../../src/training/protocols/p3.js';
import { findRecipe } from '../../src/training/recipes.js';

// `signalman eval` scores shaped copies of the test rows beside the originals, on the made-up fixture.

let data = '';
let out = '';
interface Shaped {
  shape: string;
  n: number;
  agreement: { n: number; rate: number; se: number };
}

beforeAll(() => {
  data = writeFixture();
  out = mkdtempSync(join(tmpdir(), 'sm-robust-'));
});

describe('signalman eval: robustness to prompt shape', () => {
  it('prints and records agreement and the metrics on shaped test rows for P1, P2 and P3', async () => {
    const stdout = quiet();
    const results = join(out, 'results.json');
    const args = ['--router', 'p1-lexical-lr', '--router', 'p2-lexical-lr', '--router', 'p3-lexical-lr', '--data', data, '--no-cache'];
    const code = await evalCommand([...args, '--bootstrap', '10', '--results', results]);
    vi.restoreAllMocks();
    expect(code).toBe(0);
    const text = stdout.join('');
    for (const head of ['P1 robustness to prompt shape', 'P2 robustness to prompt shape', 'P3 robustness to prompt shape'])
      expect(text).toContain(head);
    const runs = (JSON.parse(readFileSync(results, 'utf8')) as { runs: Array<Record<string, any>> }).runs;
    const p1 = runs.find((r) => r.protocol === 'p1')!;
    // Old fields stay as they were; robustness is a new one.
    expect(p1.benchmarks.map((b: { benchmark: string }) => b.benchmark)).toEqual(['mmlu', 'gsm8k', 'mt-bench']);
    const mmlu = p1.robustness.find((b: { benchmark: string }) => b.benchmark === 'mmlu');
    const plainMmlu = p1.benchmarks[0].router;
    expect(mmlu.rows).toBe(plainMmlu.n);
    const shapes = mmlu.shapes as Array<Shaped & { plain: { apgr: number }; shaped: { apgr: number } }>;
    expect(shapes.map((s) => s.shape)).toEqual(['stem', 'chat', 'system', 'multi-turn', 'all']);
    // Every fixture row has options, so each shape copies every test row; 'all' pools them.
    for (const s of shapes.slice(0, 4)) {
      expect(s.n).toBe(plainMmlu.n);
      expect(s.plain.apgr).toBeCloseTo(plainMmlu.apgr, 12); // same rows, same scores
      expect(s.agreement.rate).toBeGreaterThan(0.5);
      expect(s.agreement.rate).toBeLessThanOrEqual(1);
    }
    expect(shapes[4]!.n).toBe(4 * plainMmlu.n);
    const p2 = runs.find((r) => r.protocol === 'p2')!;
    expect((p2.robustness.shapes as Shaped[]).map((s) => s.shape)).toContain('all');
    expect(p2.robustness.shapes[0].plain.aiq).toBeCloseTo(p2.router.aiq, 12);
    const p3 = runs.find((r) => r.protocol === 'p3')!;
    expect(p3.robustness.shapes[0].plain.score).toBeCloseTo(p3.result.score, 12);
  });

  it('--no-robustness leaves it out; --robustness-sample N reshapes N rows per test set', async () => {
    const base = ['--protocol', 'p1', '--router', 'p1-lexical-lr', '--data', data, '--no-cache', '--bootstrap', '0'];
    quiet();
    expect(await evalCommand([...base, '--no-robustness', '--results', join(out, 'off.json')])).toBe(0);
    expect(await evalCommand([...base, '--robustness-sample', '7', '--results', join(out, 'sample.json')])).toBe(0);
    const stdout = quiet();
    expect(await evalCommand([...base, '--robustness-sample', '0'])).toBe(2);
    vi.restoreAllMocks();
    expect(stdout.join('')).toBe('');
    const off = JSON.parse(readFileSync(join(out, 'off.json'), 'utf8')) as { runs: Array<Record<string, unknown>> };
    expect(off.runs[0]!.robustness).toBeUndefined();
    const sample = JSON.parse(readFileSync(join(out, 'sample.json'), 'utf8')) as {
      runs: Array<{ robustness: Array<{ rows: number; shapes: Shaped[] }> }>;
    };
    for (const b of sample.runs[0]!.robustness) {
      expect(b.rows).toBe(7);
      expect(b.shapes[0]!.n).toBe(7);
    }
  });

  it('--cv 2 reports APGR and agreement on shaped validation rows', async () => {
    const results = join(out, 'cv.json');
    quiet();
    const code = await evalCommand([
      '--cv',
      '2',
      '--protocol',
      'p1',
      '--router',
      'p1-lexical-lr',
      '--data',
      data,
      '--no-cache',
      '--results',
      results,
    ]);
    vi.restoreAllMocks();
    expect(code).toBe(0);
    const cv = JSON.parse(readFileSync(results, 'utf8')) as { cv: Array<{ mean: Record<string, number> }> };
    expect(cv.cv[0]!.mean.agreeShapes).toBeGreaterThan(0.5);
    expect(cv.cv[0]!.mean.apgrShapes).toBeGreaterThan(0.5);
  });
});

describe("augment: 'shapes'", () => {
  it('trains on the train rows plus four shaped copies of each (all fixture rows have options)', async () => {
    const mmlu = await readDataset(join(data, 'routellm', 'mmlu.jsonl'));
    const pool = new EmbedderPool();
    try {
      const ctx = { dataDir: data, cacheDir: null, progress: false };
      const train = p1TrainRows(mmlu);
      const half = train.slice(0, 50);
      const r = await trainP1(mmlu, { recipe: findRecipe('p1-lexical-lr-shapes'), pool }, ctx, half);
      expect(r.rows).toBe(half.length * 5);
      const plain = await trainP1(mmlu, { recipe: findRecipe('p1-lexical-lr'), pool }, ctx, half);
      expect(plain.rows).toBe(half.length);
    } finally {
      await pool.close();
    }
  });
});

describe("augment: 'shapes' in P2 and P3", () => {
  it('adds the copies of the train rows to P2 and P3 training too', async () => {
    const llm = await readDataset(join(data, 'llmrouter', 'train.jsonl'));
    const ood = [await readDataset(join(data, 'routellm', 'gsm8k.jsonl')), await readDataset(join(data, 'routellm', 'mt-bench.jsonl'))];
    const pool = new EmbedderPool();
    try {
      const ctx = { dataDir: data, cacheDir: null, progress: false };
      const shaped = (name: string) => ({ ...findRecipe(name), augment: 'shapes' as const });
      const plain2 = await trainP2(llm, ood, { recipe: findRecipe('p2-lexical-lr'), pool }, ctx);
      // Fixture prompts all have options: four copies of each train row.
      expect((await trainP2(llm, ood, { recipe: shaped('p2-lexical-lr'), pool }, ctx)).rows).toBe(5 * plain2.rows);
      const plain3 = await runP3({ recipe: findRecipe('p3-lexical-lr'), pool }, ctx);
      const aug3 = await runP3({ recipe: shaped('p3-lexical-lr'), pool }, ctx);
      expect(aug3.train.rows).toBe(5 * plain3.train.rows);
      expect(aug3.result.idN).toBe(plain3.result.idN); // the test rows are not augmented
    } finally {
      await pool.close();
    }
  });
});
