import { type Dataset, bucket, dataPath, readDataset, requireModels, unitScore } from '../dataset.js';
import { type P1Result, mean, p1Evaluate, p1OracleScores, p1RandomCurve, apgr, cpt } from '../metrics.js';
import { type EmbedderPool, type RunContext, embedAll, fitRecipe, predictRows, range } from '../fit.js';
import type { TrainedMlp } from '../mlp-train.js';
import type { Recipe } from '../recipes.js';
import { stemDataset } from '../augment.js';
import { joinRows } from '../embed-cache.js';

// P1 (PROTOCOLS.md): strong vs weak. Train on MMLU bucket(id) == 0; score the MMLU test half and
// all of GSM8K and MT-Bench (never trained or tuned on). Score = P(strong right) - P(weak right).

export const P1_STRONG = 'gpt-4-1106-preview';
export const P1_WEAK = 'mixtral-8x7b-instruct-v0.1';

export interface P1Benchmark {
  benchmark: string;
  file: string;
  router: P1Result;
  oracle: P1Result;
  random: { apgr: number; cpt50: number | null; cpt80: number | null };
}

export interface P1Run {
  protocol: 'p1';
  recipe: string;
  embedder: string;
  strong: string;
  weak: string;
  train: { file: string; sha256: string; rows: number; split: string };
  benchmarks: P1Benchmark[];
  dump: Array<{ id: string; score: number }>;
  model: TrainedMlp;
}

export interface P1Options {
  recipe: Recipe;
  pool: EmbedderPool;
  /** Score these files instead of the protocol's test sets. */
  testFiles?: string[];
  bootstrap?: number;
}

export function scoreOf(pred: Float32Array, i: number): number {
  // Columns follow [strong, weak]: the router's need for the strong model.
  return pred[i * 2]! - pred[i * 2 + 1]!;
}

/** MMLU rows P1 trains on: bucket(id) == 0. */
export const p1TrainRows = (mmlu: Dataset): number[] => range(mmlu.rows.length).filter((i) => bucket(mmlu.rows[i]!.id) === 0);

/** Trains on `train` (default: the protocol's train half); cross-validation passes a part of it. */
export async function trainP1(
  mmlu: Dataset,
  opts: P1Options,
  ctx: RunContext,
  train = p1TrainRows(mmlu),
): Promise<{ model: TrainedMlp; rows: number }> {
  requireModels(mmlu, [P1_STRONG, P1_WEAK]);
  const embedder = await opts.pool.get(opts.recipe.embedder);
  const X = await embedAll(embedder, mmlu, ctx);
  const Y = train.map((i) => Float32Array.of(unitScore(mmlu.rows[i]!, P1_STRONG), unitScore(mmlu.rows[i]!, P1_WEAK)));
  // Subjects (the MMLU category) of the train rows feed category-prior ensemble members.
  const categories = mmlu.rows.map((r) => r.category);
  if (opts.recipe.augment !== 'stems') {
    return { model: await fitRecipe(opts.recipe, X, train, Y, 'sigmoid', ctx, undefined, { embedder, categories }), rows: train.length };
  }
  // Stems are made for the whole train half (one cached embedding file), then the copies of `train`
  // are appended: a CV fold never sees a copy of a row it is scored on.
  const stems = stemDataset(mmlu, p1TrainRows(mmlu));
  const XS = await embedAll(embedder, stems.ds, ctx);
  const inTrain = new Set(train);
  const copies = range(stems.source.length).filter((k) => inTrain.has(stems.source[k]!));
  const all = joinRows([X, train], [XS, copies]);
  const at = new Map(train.map((i, k) => [i, k]));
  const Ys = copies.map((k) => Y[at.get(stems.source[k]!)!]!);
  const cats = [...train, ...copies.map((k) => stems.source[k]!)].map((i) => categories[i]!);
  const model = await fitRecipe(opts.recipe, all, range(all.rows), [...Y, ...Ys], 'sigmoid', ctx, undefined, {
    embedder,
    categories: cats,
  });
  return { model, rows: all.rows };
}

export async function runP1(opts: P1Options, ctx: RunContext): Promise<P1Run> {
  const mmlu = await readDataset(dataPath(ctx.dataDir, 'mmlu'));
  const embedder = await opts.pool.get(opts.recipe.embedder);
  const { model, rows } = await trainP1(mmlu, opts, ctx);
  const tests: Array<{ benchmark: string; ds: Dataset; idx: number[] }> = [];
  if (opts.testFiles !== undefined && opts.testFiles.length > 0) {
    for (const f of opts.testFiles) {
      const ds = await readDataset(f);
      requireModels(ds, [P1_STRONG, P1_WEAK]);
      tests.push({ benchmark: f.split('/').pop() ?? f, ds, idx: range(ds.rows.length) });
    }
  } else {
    tests.push({ benchmark: 'mmlu', ds: mmlu, idx: range(mmlu.rows.length).filter((i) => bucket(mmlu.rows[i]!.id) === 1) });
    for (const k of ['gsm8k', 'mtBench'] as const) {
      const ds = await readDataset(dataPath(ctx.dataDir, k));
      tests.push({ benchmark: k === 'mtBench' ? 'mt-bench' : k, ds, idx: range(ds.rows.length) });
    }
  }
  const benchmarks: P1Benchmark[] = [];
  const dump: P1Run['dump'] = [];
  for (const t of tests) {
    const X = await embedAll(embedder, t.ds, ctx);
    const pred = predictRows(model, X, t.idx);
    const scores = Float64Array.from(t.idx, (_, k) => scoreOf(pred, k));
    const strong = Float64Array.from(t.idx, (i) => t.ds.rows[i]!.scores[P1_STRONG]!);
    const weak = Float64Array.from(t.idx, (i) => t.ds.rows[i]!.scores[P1_WEAK]!);
    t.idx.forEach((i, k) => dump.push({ id: t.ds.rows[i]!.id, score: Number(scores[k]!.toFixed(6)) }));
    const sQ = mean(strong);
    const wQ = mean(weak);
    const rand = p1RandomCurve(sQ, wQ);
    benchmarks.push({
      benchmark: t.benchmark,
      file: t.ds.file,
      // The dump rounds scores to 6 decimals; evaluate those same numbers so the dump reproduces the table.
      router: p1Evaluate(
        Float64Array.from(scores, (s) => Number(s.toFixed(6))),
        strong,
        weak,
        opts.bootstrap ?? 200,
      ),
      oracle: p1Evaluate(p1OracleScores(strong, weak), strong, weak, 0),
      random: { apgr: apgr(rand, sQ, wQ), cpt50: cpt(rand, 0.5, sQ, wQ), cpt80: cpt(rand, 0.8, sQ, wQ) },
    });
  }
  return {
    protocol: 'p1',
    recipe: opts.recipe.name,
    embedder: embedder.id,
    strong: P1_STRONG,
    weak: P1_WEAK,
    train: {
      file: mmlu.file,
      sha256: mmlu.sha256,
      rows,
      split: `mmlu bucket(id) == 0, contaminated rows dropped${opts.recipe.augment === 'stems' ? ', plus a copy of each without its lettered options (src/training/augment.ts)' : ''}`,
    },
    benchmarks,
    dump,
    model,
  };
}
