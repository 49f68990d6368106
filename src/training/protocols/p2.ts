import {
  type Dataset,
  type ModelPrices,
  DatasetError,
  bucket,
  dataPath,
  modelsOf,
  overlapChecker,
  readDataset,
  readPrices,
  requireModels,
  unitScore,
} from '../dataset.js';
import {
  type CostPoint,
  DEFAULT_KNOBS,
  accuracyAtCost,
  aiq,
  chooseByUtility,
  costToReach,
  pointOf,
  singleModelPoints,
  upperHull,
} from '../metrics.js';
import { type EmbedderPool, type RunContext, embedAll, fitRecipe, predictRows, range } from '../fit.js';
import type { TrainedMlp } from '../mlp-train.js';
import type { Recipe } from '../recipes.js';
import { type Agreement, type RobustnessOptions, agreement, meanAgreement, sampleRows, shapedTests } from '../robustness.js';
import type { Shape } from '../shapes.js';
import { withCopies } from '../augment-copies.js';
import type { Embedder } from '../../embedders/types.js';
import type { Matrix } from '../embed-cache.js';

// P2 (PROTOCOLS.md): nine models with prices. Train on llmrouter bucket(id) == 0 (minus rows that quote
// a GSM8K or MT-Bench question), test on bucket(id) == 1 or on any file of the same schema. The
// router predicts P(correct) per model; knob k picks argmax P - k x input price.

export interface P2Summary {
  name: string;
  points: CostPoint[];
  aiq: number;
  /** Cheapest cost on the hull reaching the best single model's accuracy (null: never). */
  costToMatch: number | null;
  /** Hull accuracy at the best single model's cost. */
  accuracyAtBestCost: number;
}

/** One shape's (or 'all' pooled) comparison of shaped copies of test rows with their originals. */
export interface P2ShapeResult {
  shape: Shape | 'all';
  n: number;
  /** Same chosen model, averaged over the knob sweep (SE over rows). */
  agreement: Agreement;
  /** Same chosen model at knob 0 (the most accurate model by the router's estimate). */
  agreementKnob0: Agreement;
  plain: { aiq: number; costToMatch: number | null };
  shaped: { aiq: number; costToMatch: number | null };
}

export interface P2Robustness {
  rows: number;
  shapes: P2ShapeResult[];
}

export interface P2Run {
  protocol: 'p2';
  recipe: string;
  embedder: string;
  models: string[];
  costs: number[];
  test: { file: string; rows: number };
  train: { file: string; sha256: string; rows: number; split: string; droppedOverlap: number };
  bestSingle: { model: string; cost: number; accuracy: number };
  knobs: number[];
  router: P2Summary;
  zeroRouter: P2Summary;
  oracle: P2Summary;
  dump: Array<{ knob: number; id: string; model: string }>;
  model: TrainedMlp;
  robustness?: P2Robustness;
}

export interface P2Options {
  recipe: Recipe;
  pool: EmbedderPool;
  testFile?: string;
  knobs?: readonly number[];
  /** Also score shaped copies of the test rows (src/training/shapes.ts). */
  robustness?: RobustnessOptions;
}

export function costsFor(models: readonly string[], prices: ModelPrices, file: string): number[] {
  return models.map((m) => {
    const p = prices[m];
    if (p === undefined)
      throw new DatasetError(file, null, `no price for model '${m}'; models.json lists ${Object.keys(prices).join(', ')}`);
    return p.input_per_mtok;
  });
}

/** llmrouter rows P2 trains on: bucket(id) == 0, minus rows quoting an out-of-domain test question. */
export function p2TrainRows(ds: Dataset, ooTest: readonly Dataset[]): { train: number[]; dropped: number } {
  const quotes = overlapChecker(ooTest.flatMap((d) => d.rows));
  const half = range(ds.rows.length).filter((i) => bucket(ds.rows[i]!.id) === 0);
  const train = half.filter((i) => !quotes(ds.rows[i]!));
  return { train, dropped: half.length - train.length };
}

/** Trains on `rows` (default: the protocol's train rows); cross-validation passes a part of them. */
export async function trainP2(ds: Dataset, ooTest: readonly Dataset[], opts: P2Options, ctx: RunContext, rows?: readonly number[]) {
  const models = modelsOf(ds.rows);
  const embedder = await opts.pool.get(opts.recipe.embedder);
  const X = await embedAll(embedder, ds, ctx);
  const all = p2TrainRows(ds, ooTest);
  const train = rows ?? all.train;
  const categories = ds.rows.map((r) => r.category);
  const target = (i: number) => Float32Array.from(models, (m) => unitScore(ds.rows[i]!, m));
  // Augmented copies (same outcomes) are made for all train rows, then cut to `train` (see withCopies).
  const aug = opts.recipe.augment === undefined ? null : await withCopies(embedder, ds, X, train, opts.recipe.augment, ctx, all.train);
  const model =
    aug === null
      ? await fitRecipe(opts.recipe, X, train, train.map(target), 'sigmoid', ctx, undefined, { embedder, categories })
      : await fitRecipe(opts.recipe, aug.X, range(aug.X.rows), aug.source.map(target), 'sigmoid', ctx, undefined, {
          embedder,
          categories: aug.source.map((i) => categories[i]!),
        });
  return { model, models, rows: aug?.X.rows ?? train.length, dropped: all.dropped, embedder, X };
}

function summarize(name: string, points: CostPoint[], best: CostPoint, lo: number, hi: number): P2Summary {
  return {
    name,
    points,
    aiq: aiq(points, lo, hi),
    costToMatch: costToReach(points, best.accuracy - 1e-12),
    accuracyAtBestCost: accuracyAtCost(points, best.cost),
  };
}

/** The router's, the single models' and the oracle's (cost, accuracy) points on `idx` of `ds`, and their summaries. */
export function scoreP2(
  pred: Float32Array,
  ds: Dataset,
  idx: readonly number[],
  models: readonly string[],
  costs: readonly number[],
  knobs: readonly number[],
) {
  const m = models.length;
  const truth = Float64Array.from({ length: idx.length * m }, (_, k) => ds.rows[idx[Math.floor(k / m)]!]!.scores[models[k % m]!]!);
  const choices = knobs.map((knob) => chooseByUtility(pred, m, costs, knob));
  const points = choices.map((choice) => pointOf(choice, truth, m, costs));
  const single = singleModelPoints(truth, m, costs);
  let b = 0;
  single.forEach((p, j) => {
    const q = single[b]!;
    if (p.accuracy > q.accuracy || (p.accuracy === q.accuracy && p.cost < q.cost)) b = j;
  });
  const best = single[b]!;
  const lo = Math.min(...costs);
  const hi = Math.max(...costs);
  const oraclePts = knobs.map((knob) => pointOf(chooseByUtility(truth, m, costs, knob), truth, m, costs));
  return {
    choices,
    bestSingle: { model: models[b]!, cost: best.cost, accuracy: best.accuracy },
    router: summarize('router', points, best, lo, hi),
    zeroRouter: summarize('zero router', single, best, lo, hi),
    oracle: summarize('oracle', upperHull(oraclePts), best, lo, hi),
  };
}

/** Chosen models and AIQ of the test rows `idx` of `ds` against the same on their shaped copies. */
async function p2Robustness(
  model: TrainedMlp,
  embedder: Embedder,
  ds: Dataset,
  X: Matrix,
  idx: readonly number[],
  p: { models: readonly string[]; costs: readonly number[]; knobs: readonly number[] },
  opts: RobustnessOptions,
  ctx: RunContext,
): Promise<P2Robustness> {
  const rows = sampleRows(ds, idx, opts.sample);
  const m = p.models.length;
  const plainPred = predictRows(model, X, rows);
  const at = new Map(rows.map((i, k) => [i, k]));
  const k0 = Math.max(0, p.knobs.indexOf(0));
  const compare = (shape: Shape | 'all', shapedDs: Dataset, source: readonly number[], pred: Float32Array): P2ShapeResult => {
    const orig = new Float32Array(source.length * m);
    source.forEach((i, r) => orig.set(plainPred.subarray(at.get(i)! * m, (at.get(i)! + 1) * m), r * m));
    const a = scoreP2(orig, ds, source, p.models, p.costs, p.knobs);
    const b = scoreP2(pred, shapedDs, range(source.length), p.models, p.costs, p.knobs);
    const perRow = Float64Array.from(source, (_, r) => a.choices.filter((c, k) => c[r] === b.choices[k]![r]).length / p.knobs.length);
    return {
      shape,
      n: source.length,
      agreement: meanAgreement(perRow, source),
      agreementKnob0: agreement(a.choices[k0]!, b.choices[k0]!, source),
      plain: { aiq: a.router.aiq, costToMatch: a.router.costToMatch },
      shaped: { aiq: b.router.aiq, costToMatch: b.router.costToMatch },
    };
  };
  const sets = await shapedTests(embedder, ds, rows, ctx);
  const scored = sets.map((t) => ({ t, pred: predictRows(model, t.X, range(t.source.length)) }));
  const shapes = scored.map(({ t, pred }) => compare(t.shape, t.ds, t.source, pred));
  if (scored.length > 1) {
    // Pooled: one dataset of every shaped row (scores copied from their originals), predictions joined.
    const source = scored.flatMap(({ t }) => t.source);
    const joined: Dataset = { file: `${ds.file}#shapes`, sha256: '', contaminated: 0, rows: scored.flatMap(({ t }) => t.ds.rows) };
    const pred = new Float32Array(source.length * m);
    let off = 0;
    for (const s of scored) {
      pred.set(s.pred, off);
      off += s.pred.length;
    }
    shapes.push(compare('all', joined, source, pred));
  }
  return { rows: rows.length, shapes };
}

export async function runP2(opts: P2Options, ctx: RunContext): Promise<P2Run> {
  const ds = await readDataset(dataPath(ctx.dataDir, 'llmrouter'));
  const prices = await readPrices(dataPath(ctx.dataDir, 'prices'));
  const ood = await Promise.all([readDataset(dataPath(ctx.dataDir, 'gsm8k')), readDataset(dataPath(ctx.dataDir, 'mtBench'))]);
  const { model, models, rows, dropped, embedder } = await trainP2(ds, ood, opts, ctx);
  const costs = costsFor(models, prices, dataPath(ctx.dataDir, 'prices'));
  const testDs = opts.testFile === undefined ? ds : await readDataset(opts.testFile);
  if (opts.testFile !== undefined) requireModels(testDs, models);
  const idx = opts.testFile === undefined ? range(ds.rows.length).filter((i) => bucket(ds.rows[i]!.id) === 1) : range(testDs.rows.length);
  const X = await embedAll(embedder, testDs, ctx);
  const knobs = [...(opts.knobs ?? DEFAULT_KNOBS)];
  const s = scoreP2(predictRows(model, X, idx), testDs, idx, models, costs, knobs);
  const robustness =
    opts.robustness === undefined
      ? undefined
      : await p2Robustness(model, embedder, testDs, X, idx, { models, costs, knobs }, opts.robustness, ctx);
  const dump: P2Run['dump'] = [];
  s.choices.forEach((choice, k) =>
    choice.forEach((j, r) => dump.push({ knob: knobs[k]!, id: testDs.rows[idx[r]!]!.id, model: models[j]! })),
  );
  return {
    protocol: 'p2',
    recipe: opts.recipe.name,
    embedder: embedder.id,
    models,
    costs,
    test: { file: testDs.file, rows: idx.length },
    train: {
      file: ds.file,
      sha256: ds.sha256,
      rows,
      split: 'llmrouter bucket(id) == 0, minus rows quoting GSM8K/MT-Bench',
      droppedOverlap: dropped,
    },
    bestSingle: s.bestSingle,
    knobs,
    router: s.router,
    zeroRouter: s.zeroRouter,
    oracle: s.oracle,
    dump,
    model,
    ...(robustness === undefined ? {} : { robustness }),
  };
}
