import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { type Dataset, type LabeledRow, type P3Label, dataPath, readDataset, readPrices, sha256Hex } from './dataset.js';
import { DEFAULT_KNOBS, mean, p1Evaluate, p3Evaluate, quantiles } from './metrics.js';
import { type ShapedTest, agreement, shapedTests } from './robustness.js';
import { type EmbedderPool, type RunContext, embedAll, predictRows } from './fit.js';
import { P1_STRONG, P1_WEAK, p1TrainRows, scoreOf, trainP1 } from './protocols/p1.js';
import { costsFor, p2TrainRows, scoreP2, trainP2 } from './protocols/p2.js';
import {
  type Item,
  augmentItems,
  fitGuard,
  harmonicThreshold,
  extraItems,
  fileItems,
  loadP3,
  p3Decide,
  p3GroupKey,
  p3HeldOut,
  shapedItems,
} from './protocols/p3.js';
import type { Protocol, Recipe } from './recipes.js';
import type { Embedder } from '../embedders/types.js';
import { stemDataset } from './augment.js';
import { type Matrix, rowOf } from './embed-cache.js';
import type { TrainedMlp } from './mlp-train.js';

// K-fold cross-validation inside a protocol's TRAIN rows, so recipes can be compared and tuned without
// ever scoring the test half (or the out-of-domain sets): each fold is trained on the other folds and
// scored by the protocol's own metrics. Folds are by hash like the protocols' splits, salted per
// protocol so they cut across the train/test split rather than along it; with 2 folds, fold(id) =
// bucket('<protocol>-val/' + id). P3 folds MMLU negatives by subject instead (p3GroupKey), as its own
// held-out part does: a fold's negatives are then subjects its model never saw, like the test's.

export const CV_PROTOCOLS = ['p1', 'p2', 'p3'] as const;
export type CvProtocol = (typeof CV_PROTOCOLS)[number];
export const isCvProtocol = (p: Protocol): p is CvProtocol => (CV_PROTOCOLS as readonly string[]).includes(p);

export function foldOf(id: string, salt: string, folds: number): number {
  return (
    createHash('sha256')
      .update(salt + id, 'utf8')
      .digest()
      .readUInt32BE(0) % folds
  );
}

export interface CvFold {
  fold: number;
  trainRows: number;
  testRows: number;
  metrics: Record<string, number | null>;
}

export interface CvRun {
  protocol: CvProtocol;
  recipe: string;
  embedder: string;
  folds: number;
  split: string;
  perFold: CvFold[];
  /** Mean of each metric over the folds (null when a fold has none, e.g. a cost never reached). */
  mean: Record<string, number | null>;
}

export interface CvOptions {
  recipe: Recipe;
  pool: EmbedderPool;
  folds: number;
  /** P1, P3: also score the validation rows' shaped copies (apgrShapes / scoreShapes, agreeShapes); default true. */
  robustness?: boolean;
  /**
   * P3: also fold this file's rows (dataset schema, labelled like a recipe's extra prompts) by id into the
   * same K folds: each fold's guard is scored on its part (extraScore, extraIdAccuracy, extraOodAccuracy),
   * and a recipe whose extra file it is trains on the other folds' part only, never on the rows it is scored on.
   */
  extraFolds?: string;
  /** P3: called with what each fold trained on and how it labelled its validation rows (tests, diagnostics). */
  onP3Fold?: (fold: P3FoldTrace) => void;
}

/** One P3 fold: its training part (rows, then copies), the part that picked its threshold, and its validation rows. */
export interface P3FoldTrace {
  fold: number;
  train: readonly LabeledRow[];
  copies: readonly LabeledRow[];
  thresholdRows: readonly LabeledRow[];
  threshold: number;
  validation: readonly LabeledRow[];
  predicted: readonly P3Label[];
}

function meanMetrics(perFold: readonly CvFold[]): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const k of Object.keys(perFold[0]?.metrics ?? {})) {
    const xs = perFold.map((f) => f.metrics[k]);
    out[k] = xs.some((x) => x === null || x === undefined) ? null : mean(xs as number[]);
  }
  return out;
}

function partition(ids: readonly string[], rows: readonly number[], salt: string, folds: number): number[][] {
  const parts: number[][] = Array.from({ length: folds }, () => []);
  for (const i of rows) parts[foldOf(ids[i]!, salt, folds)]!.push(i);
  const empty = parts.findIndex((p) => p.length === 0);
  if (empty >= 0) throw new Error(`cross-validation: fold ${empty} of ${folds} is empty (${rows.length} train rows); use fewer folds`);
  return parts;
}

const others = (parts: readonly number[][], f: number): number[] => parts.flatMap((p, k) => (k === f ? [] : p));

/**
 * Pooled over every shape: APGR of the validation rows' shaped copies, and the share of copies whose
 * strong/weak decision matches their original's at the fold's median score (50% strong calls).
 */
function shapeMetrics(model: TrainedMlp, X: Matrix, test: readonly number[], shaped: readonly ShapedTest[], ds: Dataset) {
  const plain = predictRows(model, X, test);
  const plainOf = new Map(test.map((i, k) => [i, scoreOf(plain, k)]));
  const threshold = quantiles(Array.from(plainOf.values()), [0.5])[0]!;
  const source: number[] = [];
  const scores: number[] = [];
  for (const t of shaped) {
    const keep = t.source.flatMap((i, k) => (plainOf.has(i) ? [k] : []));
    const pred = predictRows(model, t.X, keep);
    keep.forEach((k, r) => {
      source.push(t.source[k]!);
      scores.push(scoreOf(pred, r));
    });
  }
  const r = p1Evaluate(
    scores,
    source.map((i) => ds.rows[i]!.scores[P1_STRONG]!),
    source.map((i) => ds.rows[i]!.scores[P1_WEAK]!),
    0,
  );
  const a = agreement(
    source.map((i) => Number(plainOf.get(i)! >= threshold)),
    scores.map((x) => Number(x >= threshold)),
  );
  return { apgrShapes: r.apgr, agreeShapes: a.rate };
}

async function cvP1(opts: CvOptions, ctx: RunContext): Promise<CvRun> {
  const mmlu = await readDataset(dataPath(ctx.dataDir, 'mmlu'));
  const embedder = await opts.pool.get(opts.recipe.embedder);
  const X = await embedAll(embedder, mmlu, ctx);
  const salt = 'p1-val/';
  const trainHalf = p1TrainRows(mmlu);
  const parts = partition(
    mmlu.rows.map((r) => r.id),
    trainHalf,
    salt,
    opts.folds,
  );
  // The same validation rows without their lettered options: a stand-in, made from train rows only,
  // for the free-form prompts of the out-of-domain sets (which are never looked at).
  const stems = stemDataset(mmlu, trainHalf);
  const XS = await embedAll(embedder, stems.ds, ctx);
  const stemOf = new Map(stems.source.map((i, k) => [i, k]));
  const evaluate = (M: Matrix, rows: readonly number[], source: readonly number[], model: TrainedMlp) => {
    const pred = predictRows(model, M, rows);
    return p1Evaluate(
      Float64Array.from(rows, (_, k) => scoreOf(pred, k)),
      Float64Array.from(source, (i) => mmlu.rows[i]!.scores[P1_STRONG]!),
      Float64Array.from(source, (i) => mmlu.rows[i]!.scores[P1_WEAK]!),
      0,
    );
  };
  // Shaped copies of the validation rows, from the 'eval' templates that training copies never use.
  const shaped = opts.robustness === false ? [] : await shapedTests(embedder, mmlu, trainHalf, ctx);
  const perFold: CvFold[] = [];
  for (let f = 0; f < opts.folds; f++) {
    const train = others(parts, f);
    const test = parts[f]!;
    const { model } = await trainP1(mmlu, { recipe: opts.recipe, pool: opts.pool }, ctx, train);
    const robust = shaped.length === 0 ? {} : shapeMetrics(model, X, test, shaped, mmlu);
    const r = evaluate(X, test, test, model);
    const withStem = test.filter((i) => stemOf.has(i));
    const s =
      withStem.length > 0
        ? evaluate(
            XS,
            withStem.map((i) => stemOf.get(i)!),
            withStem,
            model,
          )
        : null;
    perFold.push({
      fold: f,
      trainRows: train.length,
      testRows: test.length,
      metrics: { apgr: r.apgr, cpt50: r.cpt50, cpt80: r.cpt80, apgrStems: s?.apgr ?? null, cpt50Stems: s?.cpt50 ?? null, ...robust },
    });
  }
  return {
    protocol: 'p1',
    recipe: opts.recipe.name,
    embedder: embedder.id,
    folds: opts.folds,
    split: `mmlu train half (bucket(id) == 0), fold = uint32(sha256('${salt}' + id)[0:4]) % ${opts.folds}`,
    perFold,
    mean: meanMetrics(perFold),
  };
}

async function cvP2(opts: CvOptions, ctx: RunContext): Promise<CvRun> {
  const ds = await readDataset(dataPath(ctx.dataDir, 'llmrouter'));
  const prices = await readPrices(dataPath(ctx.dataDir, 'prices'));
  const ood = await Promise.all([readDataset(dataPath(ctx.dataDir, 'gsm8k')), readDataset(dataPath(ctx.dataDir, 'mtBench'))]);
  const salt = 'p2-val/';
  const parts = partition(
    ds.rows.map((r) => r.id),
    p2TrainRows(ds, ood).train,
    salt,
    opts.folds,
  );
  const perFold: CvFold[] = [];
  let embedderId = '';
  for (let f = 0; f < opts.folds; f++) {
    const train = others(parts, f);
    const test = parts[f]!;
    const { model, models, embedder, X } = await trainP2(ds, ood, { recipe: opts.recipe, pool: opts.pool }, ctx, train);
    embedderId = embedder.id;
    const costs = costsFor(models, prices, dataPath(ctx.dataDir, 'prices'));
    const s = scoreP2(predictRows(model, X, test), ds, test, models, costs, DEFAULT_KNOBS);
    perFold.push({
      fold: f,
      trainRows: train.length,
      testRows: test.length,
      metrics: {
        aiq: s.router.aiq,
        costToMatch: s.router.costToMatch,
        accuracyAtBestCost: s.router.accuracyAtBestCost,
        zeroRouterAiq: s.zeroRouter.aiq,
      },
    });
  }
  return {
    protocol: 'p2',
    recipe: opts.recipe.name,
    embedder: embedderId,
    folds: opts.folds,
    split: `llmrouter train rows (bucket(id) == 0, minus GSM8K/MT-Bench quotes), fold = uint32(sha256('${salt}' + id)[0:4]) % ${opts.folds}`,
    perFold,
    mean: meanMetrics(perFold),
  };
}

/** P3 fold of a train row (or of a copy: the same as its source's). */
export const p3FoldOf = (it: LabeledRow, folds: number): number => foldOf(p3GroupKey(it), P3_SALT, folds);
const P3_SALT = 'p3-val/';
/** Inside a fold's training part, the part that picks the threshold (runP3 uses 'p3-val/', taken by the folds). */
const P3_INNER_SALT = 'p3-cv-val/';

/** The salt of extraFolds' folds: by row id, apart from the P3 train split's. */
const P3_EXTRA_SALT = 'p3-extra-val/';

interface FoldedExtra {
  items: readonly Item[];
  fold: readonly number[];
  /** The recipe trains on this file (Recipe.extra): each fold on the other folds' rows of it. */
  trainsOn: boolean;
}

async function foldedExtra(
  recipe: Recipe,
  file: string,
  extra: readonly Item[],
  embedder: Embedder,
  folds: number,
  ctx: RunContext,
): Promise<FoldedExtra> {
  const trainsOn = recipe.extra !== undefined && resolve(recipe.extra.file) === resolve(file);
  const items = trainsOn ? extra : (await fileItems(file, embedder, ctx)).items;
  return { items, fold: items.map((it) => foldOf(it.row.id, P3_EXTRA_SALT, folds)), trainsOn };
}

function extraMetrics(x: FoldedExtra, f: number, decide: (v: Float32Array) => P3Label): Record<string, number> {
  const mine = x.items.filter((_, i) => x.fold[i] === f);
  const r = p3Evaluate(
    mine.map((it) => it.label),
    mine.map((it) => decide(it.x)),
  );
  return { extraScore: r.score, extraIdAccuracy: r.idAccuracy, extraOodAccuracy: r.oodAccuracy };
}

/**
 * P3 inside its train split (minus the rows quoting GSM8K/MT-Bench, as runP3 drops them): each fold's
 * model is trained exactly as runP3 trains the guard, on the other folds' rows plus the recipe's
 * copies of those rows only: fitted on an inner part, threshold picked on the rest (held-out ids;
 * held-out whole subjects for MMLU negatives), refitted on the whole training part. The fold's own
 * rows are then labelled by the guard's rule and scored like P3's test: ID accuracy, OOD accuracy and
 * their harmonic mean. With robustness, also pooled over the fold's 'eval'-pool shaped copies.
 */
async function cvP3(opts: CvOptions, ctx: RunContext): Promise<CvRun> {
  const { mmlu, llm, embedder, train } = await loadP3(opts.recipe, opts.pool, ctx, false);
  const fold = train.map((it) => p3FoldOf(it, opts.folds));
  const parts: Item[][] = Array.from({ length: opts.folds }, () => []);
  train.forEach((it, i) => parts[fold[i]!]!.push(it));
  const empty = parts.findIndex((p) => p.length === 0);
  if (empty >= 0)
    throw new Error(`cross-validation: fold ${empty} of ${opts.folds} is empty (${train.length} train rows); use fewer folds`);
  // Copies are made for every train row once (their embeddings are cached per copy set) and then go
  // with their source row's fold: a fold never trains on a copy of a row it is scored on.
  const copies = await augmentItems(opts.recipe, train, [mmlu, llm], embedder, ctx);
  // The recipe's own extra prompts are no validation rows (every fold trains on all of them), unless
  // their file is folded too (extraFolds).
  const { items: extra } = await extraItems(opts.recipe, embedder, ctx);
  const folded = opts.extraFolds === undefined ? null : await foldedExtra(opts.recipe, opts.extraFolds, extra, embedder, opts.folds, ctx);
  const shaped =
    opts.robustness === false
      ? []
      : await shapedItems(
          train,
          embedder,
          `${mmlu.sha256}${llm.sha256}\0${sha256Hex(train.map((it) => it.row.id).join('\n'))}`,
          ctx,
          'p3-train',
        );
  const heldOut = p3HeldOut(P3_INNER_SALT);
  const perFold: CvFold[] = [];
  for (let f = 0; f < opts.folds; f++) {
    const rest = parts.flatMap((p, k) => (k === f ? [] : p));
    const restExtra = folded?.trainsOn === true ? folded.items.filter((_, i) => folded.fold[i] !== f) : extra;
    const restCopies = [...copies.filter((c) => p3FoldOf(c, opts.folds) !== f), ...restExtra];
    const { model, threshold } = await fitGuard(opts.recipe, rest, restCopies, embedder, ctx, heldOut);
    const decide = (x: Float32Array): P3Label => p3Decide(model.predict(x), threshold.threshold).label;
    const test = parts[f]!;
    const predicted = test.map((it) => decide(it.x));
    const r = p3Evaluate(
      test.map((it) => it.label),
      predicted,
    );
    opts.onP3Fold?.({
      fold: f,
      train: rest,
      copies: restCopies,
      thresholdRows: rest.filter(heldOut),
      threshold: threshold.threshold,
      validation: test,
      predicted,
    });
    let robust = {};
    if (shaped.length > 0) {
      // Pooled over every shape: the P3 score of the fold's shaped copies, and how often a copy gets its original's label.
      const labelOf = new Map<number, P3Label>();
      train.forEach((_, i) => {
        if (fold[i] === f) labelOf.set(i, decide(train[i]!.x));
      });
      const source: number[] = [];
      const labels: P3Label[] = [];
      for (const t of shaped)
        t.source.forEach((i, k) => {
          if (!labelOf.has(i)) return;
          source.push(i);
          labels.push(decide(rowOf(t.X, k)));
        });
      robust = {
        scoreShapes: p3Evaluate(
          source.map((i) => train[i]!.label),
          labels,
        ).score,
        agreeShapes: agreement(
          source.map((i) => labelOf.get(i)!),
          labels,
        ).rate,
      };
    }
    perFold.push({
      fold: f,
      trainRows: rest.length,
      testRows: test.length,
      metrics: {
        score: r.score,
        idAccuracy: r.idAccuracy,
        oodAccuracy: r.oodAccuracy,
        threshold: threshold.threshold,
        // Diagnostic, optimistic: the score at the threshold best for this fold's own rows (how much the picked one loses).
        scoreAtBestThreshold: harmonicThreshold(model, test).score,
        ...robust,
        ...(folded === null ? {} : extraMetrics(folded, f, decide)),
      },
    });
  }
  return {
    protocol: 'p3',
    recipe: opts.recipe.name,
    embedder: embedder.id,
    folds: opts.folds,
    split: `p3 train split minus GSM8K/MT-Bench quotes, fold = uint32(sha256('${P3_SALT}' + key)[0:4]) % ${opts.folds}, key = subject for MMLU negatives, else id; threshold picked on bucket('${P3_INNER_SALT}' + key) == 1 of the other folds`,
    perFold,
    mean: meanMetrics(perFold),
  };
}

export function crossValidate(protocol: CvProtocol, opts: CvOptions, ctx: RunContext): Promise<CvRun> {
  if (!Number.isInteger(opts.folds) || opts.folds < 2) throw new Error(`cross-validation needs at least 2 folds, got ${opts.folds}`);
  return protocol === 'p1' ? cvP1(opts, ctx) : protocol === 'p2' ? cvP2(opts, ctx) : cvP3(opts, ctx);
}
