import { gunzipSync } from 'node:zlib';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { evalCommand } from '../../src/cli/eval.js';
import { trainCommand } from '../../src/cli/train.js';
import { calibrateRouterCommand } from '../../src/cli/calibrate-router.js';
import { readManifest } from '../../src/routers/artifacts.js';
import { quiet, writeFixture } from './fixture.js';
import { type CvRun, foldOf } from '../../src/training/cv.js';
import { bucket, readDataset } from '../../src/training/dataset.js';
import { EmbedderPool } from '../../src/training/fit.js';
import { p1TrainRows, trainP1 } from '../../src/training/protocols/p1.js';
import { findRecipe } from '../../src/training/recipes.js';

// End to end on a small made-up datasets folder: train -> eval -> dumps -> calibrate.

// The lexical recipes: USE-lite would make this test slow (it runs a neural encoder per prompt).
const LEX = ['--router', 'p1-lexical-lr', '--router', 'p2-lexical-lr', '--router', 'p3-lexical-lr'];
let data = '';
let out = '';
const read = (f: string) => (f.endsWith('.gz') ? gunzipSync(readFileSync(f)).toString('utf8') : readFileSync(f, 'utf8'));
const lines = (f: string) =>
  read(f)
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

beforeAll(() => {
  data = writeFixture();
  out = mkdtempSync(join(tmpdir(), 'sm-out-'));
});

describe('signalman eval on a small datasets folder', () => {
  it('runs P1, P2 and P3, writes dumps, results and a PNG, and beats random on learnable data', async () => {
    const stdout = quiet();
    const code = await evalCommand([
      ...LEX,
      '--data',
      data,
      '--no-cache',
      '--dump-dir',
      join(out, 'dumps'),
      '--results',
      join(out, 'results.json'),
      '--plot',
      join(out, 'curves.png'),
      '--bootstrap',
      '20',
    ]);
    vi.restoreAllMocks();
    expect(code).toBe(0);
    const text = stdout.join('');
    expect(text).toContain('P1 strong');
    expect(text).toContain('oracle');
    const p1 = lines(join(out, 'dumps', 'p1.jsonl.gz'));
    // Every clean test row once: MMLU bucket 1 plus all of GSM8K (30) and MT-Bench (12).
    expect(p1.filter((r) => String(r.id).startsWith('gsm8k/'))).toHaveLength(30);
    expect(p1.some((r) => r.id === 'mmlu/astronomy/39')).toBe(false); // contaminated
    expect(p1.every((r) => typeof r.score === 'number')).toBe(true);
    const p2 = lines(join(out, 'dumps', 'p2.jsonl.gz'));
    expect(p2.length % 129).toBe(0); // knob settings x the 129 rows with bucket(id) == 1
    expect(p2.every((r) => ['cheap', 'mid', 'dear'].includes(String(r.model)))).toBe(true);
    const p3 = lines(join(out, 'dumps', 'p3.jsonl.gz'));
    expect(p3.every((r) => ['law', 'finance', 'health', 'ood'].includes(String(r.label)))).toBe(true);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { runs: Array<Record<string, any>> };
    const r1 = results.runs.find((r) => r.protocol === 'p1')!;
    const mmlu = r1.benchmarks.find((b: { benchmark: string }) => b.benchmark === 'mmlu');
    expect(mmlu.router.apgr).toBeGreaterThan(0.6); // "hard" prompts are marked in the text
    expect(mmlu.random.apgr).toBeCloseTo(0.5, 12);
    const r2 = results.runs.find((r) => r.protocol === 'p2')!;
    expect(r2.router.aiq).toBeGreaterThan(r2.zeroRouter.aiq);
    expect(readFileSync(join(out, 'curves.png')).subarray(1, 4).toString()).toBe('PNG');
  }, 60_000);

  it('prints and writes the same bytes with the protocols side by side (threads) as one after another (--serial)', async () => {
    const run = async (dir: string, extra: string[]) => {
      const stdout = quiet();
      const args = [
        ...LEX,
        '--data',
        data,
        '--no-cache',
        '--bootstrap',
        '20',
        '--dump-dir',
        join(dir, 'd'),
        '--results',
        join(dir, 'r.json'),
      ];
      const code = await evalCommand([...args, ...extra]);
      vi.restoreAllMocks();
      expect(code).toBe(0);
      return stdout.join('').replace(/\d+ µs/, 'timed'); // P3's decision time, a measurement
    };
    const threads = await run(join(out, 'threads'), []);
    const serial = await run(join(out, 'serial'), ['--serial']);
    expect(threads).toBe(serial);
    expect(threads.indexOf('P1 strong')).toBeLessThan(threads.indexOf('P2 on'));
    expect(threads.indexOf('P2 on')).toBeLessThan(threads.indexOf('P3 guarded'));
    const results = (dir: string) =>
      readFileSync(join(dir, 'r.json'), 'utf8').replace(/"decisionMicros": [\d.e+-]+/, '"decisionMicros": 0');
    expect(results(join(out, 'threads'))).toBe(results(join(out, 'serial')));
    for (const p of ['p1', 'p2', 'p3'])
      expect(readFileSync(join(out, 'threads', 'd', `${p}.jsonl.gz`))).toEqual(readFileSync(join(out, 'serial', 'd', `${p}.jsonl.gz`)));
  }, 120_000);

  it('fails with the message of the protocol that failed in its thread', async () => {
    const broken = mkdtempSync(join(tmpdir(), 'sm-broken-'));
    cpSync(data, broken, { recursive: true });
    rmSync(join(broken, 'llmrouter', 'models.json')); // P2's prices; P1 and P3 never read it
    const stderr: string[] = [];
    quiet();
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => (stderr.push(String(s)), true));
    const code = await evalCommand([...LEX, '--data', broken, '--no-cache', '--bootstrap', '0']);
    vi.restoreAllMocks();
    expect(code).toBe(1);
    expect(stderr.join('')).toMatch(/signalman eval: .*llmrouter[/\\]models\.json/);
  }, 60_000);

  it('refuses bad flags with a usage message and exit code 2', async () => {
    quiet();
    expect(await evalCommand(['--protocol', 'p9'])).toBe(2);
    expect(await evalCommand(['--dump', 'x.jsonl'])).toBe(2);
    vi.restoreAllMocks();
  });

  it('gives the same P1 numbers twice (seeded training)', async () => {
    quiet();
    const a = join(out, 'a.jsonl');
    const b = join(out, 'b.jsonl');
    // The default P1 router reads USE-lite too: a cache folder of the test's own lets the second run
    // (and calibrate below) skip the encoder; what is compared is the seeded training.
    expect(
      await evalCommand(['--data', data, '--cache-dir', join(out, 'cache'), '--protocol', 'p1', '--bootstrap', '0', '--dump', a]),
    ).toBe(0);
    expect(
      await evalCommand(['--data', data, '--cache-dir', join(out, 'cache'), '--protocol', 'p1', '--bootstrap', '0', '--dump', b]),
    ).toBe(0);
    vi.restoreAllMocks();
    expect(readFileSync(a, 'utf8')).toBe(readFileSync(b, 'utf8'));
  }, 120_000);

  it('scores a router trained by the protocol on another file given with --test', async () => {
    quiet();
    const dump = join(out, 'p2-test.jsonl');
    const code = await evalCommand([
      ...LEX,
      '--data',
      data,
      '--no-cache',
      '--protocol',
      'p2',
      '--test',
      join(data, 'llmrouter', 'train.jsonl'),
      '--dump',
      dump,
    ]);
    vi.restoreAllMocks();
    expect(code).toBe(0);
    const ids = new Set(lines(dump).map((r) => r.id));
    expect(ids.size).toBe(240); // every row of the --test file
  }, 60_000);
});

describe('signalman eval --cv', () => {
  it('cross-validates P1, P2 and P3 inside the train rows only, on folds that split them evenly by hash', async () => {
    const stdout = quiet();
    const res = join(out, 'cv.json');
    const code = await evalCommand([...LEX, '--data', data, '--no-cache', '--cv', '3', '--results', res]);
    vi.restoreAllMocks();
    expect(code).toBe(0);
    expect(stdout.join('')).toContain('3-fold cross-validation');
    const { cv } = JSON.parse(readFileSync(res, 'utf8')) as { cv: CvRun[] };
    expect(cv.map((r) => r.protocol)).toEqual(['p1', 'p2', 'p3']);
    const [p1, p2, p3] = cv as [CvRun, CvRun, CvRun];
    // The fixture's MMLU has 10 subjects x 40 rows, one contaminated each: 390 clean rows, about half train.
    const trainRows = p1.perFold.reduce((s, f) => s + f.testRows, 0);
    const all = lines(join(data, 'routellm', 'mmlu.jsonl')).filter((r) => r.contaminated !== true);
    expect(trainRows).toBe(all.filter((r) => bucket(String(r.id)) === 0).length);
    for (const f of p1.perFold) expect(f.trainRows + f.testRows).toBe(trainRows);
    expect(p1.mean.apgr).toBeGreaterThan(0.6); // hard prompts are marked in the text
    // The same validation rows without their options: the fixture's marker sits in the question.
    expect(p1.mean.apgrStems).toBeGreaterThan(0.6);
    expect(p1.mean.apgr).toBeCloseTo(p1.perFold.reduce((s, f) => s + f.metrics.apgr!, 0) / 3, 12);
    expect(p2.mean.aiq).toBeGreaterThan(p2.mean.zeroRouterAiq!);
    // P3 (test/training/cv-p3.test.ts checks its folds): the guard's harmonic mean per fold.
    expect(p3.perFold).toHaveLength(3);
    expect(p3.mean.score).toBeGreaterThan(0.8);
  }, 60_000);

  it('gives the same folds and tables with recipes in threads as one after another (--serial)', async () => {
    const run = async (res: string, extra: string[]) => {
      const stdout = quiet();
      const code = await evalCommand([
        ...LEX,
        '--router',
        'p1-ensemble-static',
        '--data',
        data,
        '--no-cache',
        '--cv',
        '2',
        '--results',
        res,
        ...extra,
      ]);
      vi.restoreAllMocks();
      expect(code).toBe(0);
      return stdout.join('');
    };
    const threads = await run(join(out, 'cv-threads.json'), []);
    const serial = await run(join(out, 'cv-serial.json'), ['--serial']);
    const oneAtATime = await run(join(out, 'cv-jobs1.json'), ['--jobs', '1']);
    expect(threads).toBe(serial);
    expect(oneAtATime).toBe(serial);
    expect(threads.indexOf('P1 2-fold')).toBeLessThan(threads.indexOf('P2 2-fold'));
    expect(readFileSync(join(out, 'cv-threads.json'), 'utf8')).toBe(readFileSync(join(out, 'cv-serial.json'), 'utf8'));
    const { cv } = JSON.parse(readFileSync(join(out, 'cv-threads.json'), 'utf8')) as { cv: CvRun[] };
    expect(cv.map((r) => r.recipe)).toEqual(['p1-lexical-lr', 'p1-ensemble-static', 'p2-lexical-lr', 'p3-lexical-lr']);
  }, 120_000);

  it('trains an augmented recipe on its train rows plus their option-less copies, and on nothing else', async () => {
    const mmlu = await readDataset(join(data, 'routellm', 'mmlu.jsonl'));
    const pool = new EmbedderPool();
    const ctx = { dataDir: data, cacheDir: null, progress: false };
    const lr = findRecipe('p1-lexical-lr');
    const augmented = { ...lr, augment: 'stems' as const };
    try {
      const plain = await trainP1(mmlu, { recipe: lr, pool }, ctx);
      expect(plain.rows).toBe(p1TrainRows(mmlu).length);
      expect((await trainP1(mmlu, { recipe: augmented, pool }, ctx)).rows).toBe(2 * plain.rows); // every fixture prompt has options
      // A CV fold: copies of its own rows only, never of the rows it is scored on.
      expect((await trainP1(mmlu, { recipe: augmented, pool }, ctx, p1TrainRows(mmlu).slice(0, 10))).rows).toBe(20);
    } finally {
      await pool.close();
    }
  });

  it('uses the 2-fold split the README names: bucket(protocol-val/ + id)', () => {
    for (let i = 0; i < 200; i++) expect(foldOf(`mmlu/x/${i}`, 'p1-val/', 2)).toBe(bucket(`p1-val/mmlu/x/${i}`));
  });

  it('refuses test files and a single fold', async () => {
    quiet();
    expect(await evalCommand(['--cv', '2', '--protocol', 'p1', '--test', 'x.jsonl'])).toBe(2);
    expect(await evalCommand(['--cv', '1'])).toBe(2);
    expect(await evalCommand(['--cv', '2', '--jobs', '0'])).toBe(2);
    expect(await evalCommand(['--cv', '2', '--jobs', '2', '--serial'])).toBe(2);
    vi.restoreAllMocks();
  });
});

describe('signalman train and calibrate', () => {
  it('writes MLP (ONNX) and kNN artifacts from any routing-outcome file', async () => {
    quiet();
    const file = join(data, 'llmrouter', 'train.jsonl');
    expect(await trainCommand(['--input', file, '--kind', 'mlp', '--no-cache', '--out', join(out, 'mlp')])).toBe(0);
    expect(await trainCommand(['--input', file, '--kind', 'knn', '--dim', '256', '--no-cache', '--out', join(out, 'knn')])).toBe(0);
    vi.restoreAllMocks();
    const m = await readManifest(join(out, 'mlp'));
    expect(m.format).toBe('mlp');
    expect(m.models).toEqual(['cheap', 'dear', 'mid']);
    expect(existsSync(join(out, 'mlp', 'model.onnx'))).toBe(true);
    const k = await readManifest(join(out, 'knn'));
    expect(k.format).toBe('knn');
    expect(k.embedder.dim).toBe(256);
  }, 60_000);

  it('trains the P3 guard with a calibrated max_prob threshold', async () => {
    quiet();
    expect(
      await trainCommand(['--protocol', 'p3', '--router', 'p3-lexical-lr', '--data', data, '--no-cache', '--out', join(out, 'guard')]),
    ).toBe(0);
    vi.restoreAllMocks();
    const m = await readManifest(join(out, 'guard'));
    expect(m.labels).toEqual(['law', 'finance', 'health', 'ood']);
    expect(m.guard?.kind).toBe('max_prob');
    expect(m.guard?.threshold).toBeGreaterThanOrEqual(0);
  }, 60_000);

  it('finds the P1 threshold for a share of strong calls and the P2 knob for a cost', async () => {
    const stdout = quiet();
    expect(
      await calibrateRouterCommand(['--protocol', 'p1', '--cache-dir', join(out, 'cache'), '--data', data, '--target-share', '0.4']),
    ).toBe(0);
    expect(
      await calibrateRouterCommand(['--protocol', 'p2', '--no-cache', '--router', 'p2-lexical-lr', '--data', data, '--target-cost', '0.3']),
    ).toBe(0);
    expect(
      await calibrateRouterCommand([
        '--protocol',
        'p2',
        '--no-cache',
        '--router',
        'p2-lexical-lr',
        '--data',
        data,
        '--target-cost',
        '0.01',
      ]),
    ).toBe(1);
    vi.restoreAllMocks();
    const [p1, p2] = stdout.filter((s) => s.startsWith('{')).map((s) => JSON.parse(s.split('\n')[0]!) as Record<string, number>);
    expect(Math.abs(p1!.share! - 0.4)).toBeLessThan(0.1);
    expect(p2!.meanCost).toBeLessThanOrEqual(0.3 + 1e-9);
  }, 120_000);
});
