import { createHash } from 'node:crypto';
import { type Dataset, dataPath, readDataset, readPrices } from './dataset.js';
import { DEFAULT_KNOBS, mean, p1Evaluate, quantiles } from './metrics.js';
import { type ShapedTest, agreement, shapedTests } from './robustness.js';
import { type EmbedderPool, type RunContext, embedAll, predictRows } from './fit.js';
import { P1_STRONG, P1_WEAK, p1TrainRows, scoreOf, trainP1 } from './protocols/p1.js';
import { costsFor, p2TrainRows, scoreP2, trainP2 } from './protocols/p2.js';
import type { Protocol, Recipe } from './recipes.js';
import { stemDataset } from './augment.js';
import type { Matrix } from './embed-cache.js';
import type { TrainedMlp } from './mlp-train.js';

// K-fold cross-validation inside a protocol's TRAIN rows, so recipes can be compared and tuned without
// ever scoring the test half (or the out-of-domain sets): each fold is trained on the other folds and
// scored by the protocol's own metrics. Folds are by hash like the protocols' splits, salted per
// protocol so they cut across the train/test split rather than along it; with 2 folds, fold(id) =
// bucket('<protocol>-val/' + id).

export const CV_PROTOCOLS = ['p1', 'p2'] as const;
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
  /** P1: also score the validation rows' shaped copies (apgrShapes, agreeShapes); default true. */
  robustness?: boolean;
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

export function crossValidate(protocol: CvProtocol, opts: CvOptions, ctx: RunContext): Promise<CvRun> {
  if (!Number.isInteger(opts.folds) || opts.folds < 2) throw new Error(`cross-validation needs at least 2 folds, got ${opts.folds}`);
  return protocol === 'p1' ? cvP1(opts, ctx) : cvP2(opts, ctx);
}
