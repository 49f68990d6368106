import {
  type Dataset,
  type LabeledRow,
  type OutcomeRow,
  P3_LABELS,
  type P3Label,
  bucket,
  dataPath,
  overlapChecker,
  p3DomainOf,
  type P3Split,
  p3Split,
  readDataset,
  rowText,
  sha256Hex,
} from '../dataset.js';
import { type P3Result, p3Evaluate } from '../metrics.js';
import { type EmbedderPool, type RunContext, embedAll, fitRecipe, range } from '../fit.js';
import { rowOf } from '../embed-cache.js';
import type { TrainedMlp } from '../mlp-train.js';
import type { Recipe } from '../recipes.js';
import { type HarmonicThreshold, bestHarmonicThreshold } from '../calibrate-router.js';
import { maxProbScore } from '../../routers/guard.js';
import { MlpPlan, readExportedGraph } from '../../routers/mlp-plan.js';
import { mlpToOnnx } from '../onnx-export.js';
import type { Embedder } from '../../embedders/types.js';
import {
  type Agreement,
  type RobustnessOptions,
  type ShapedTest,
  agreement,
  eachShapedTest,
  sampleRows,
  shapedTests,
} from '../robustness.js';
import type { Shape } from '../shapes.js';
import { copySets } from '../augment-copies.js';

// P3 (PROTOCOLS.md): guarded routing. A softmax over law / finance / health / ood, read by the same
// rule as the gateway's max_prob guard (see p3Decide). The threshold is
// chosen on a validation part of the TRAIN split whose negative MMLU subjects are held out whole,
// because the test's negatives are unseen subjects too.

/** One shape's (or 'all' pooled) comparison of shaped copies of test rows with their originals. */
export interface P3ShapeResult {
  shape: Shape | 'all';
  n: number;
  /** Same predicted label (law / finance / health / ood) for the copy and its original. */
  agreement: Agreement;
  plain: P3Result;
  shaped: P3Result;
}

export interface P3Robustness {
  rows: number;
  shapes: P3ShapeResult[];
}

export interface P3Run {
  protocol: 'p3';
  recipe: string;
  embedder: string;
  labels: readonly P3Label[];
  threshold: number;
  calibration: string;
  /** sha256 = sha256(mmlu file hash + llmrouter file hash + the extra file's hash, if any): the files the guard learnt from. */
  train: { rows: number; droppedOverlap: number; split: string; sha256: string };
  result: P3Result;
  /** OOD accuracy per out-of-domain source. */
  oodBySource: Record<string, { n: number; accuracy: number }>;
  /** Median time of one whole guard decision (embed + the network as the gateway runs it) over test prompts, warm, in µs. */
  decisionMicros: number;
  dump: Array<{ id: string; label: P3Label }>;
  model: TrainedMlp;
  robustness?: P3Robustness;
}

export interface P3Options {
  recipe: Recipe;
  pool: EmbedderPool;
  /** Score this file's rows (labelled by p3DomainOf: MMLU subjects of the three domains, else ood). */
  testFile?: string;
  /** Also score shaped copies of the test rows (src/training/shapes.ts). */
  robustness?: RobustnessOptions;
}

export interface Item extends LabeledRow {
  x: Float32Array;
  /** An augmentation copy of `row` (augmentItems), weighted by the recipe's copyWeight. */
  copy?: true;
  /** One of the recipe's own extra prompts (extraItems), weighted by its extra.weight. */
  extra?: true;
}

/**
 * The shipped guard's own rule (routers/guard.ts, max_prob): in domain when 'ood' is not the most
 * probable label and the best domain's probability is at least the threshold. `inScore` is -Infinity
 * when 'ood' wins outright, so no threshold lets such a prompt in.
 */
export function p3Decide(p: Float32Array, threshold: number): { label: P3Label; inScore: number } {
  const r = maxProbScore(p, P3_LABELS);
  const inScore = r.oodWins ? -Infinity : r.score;
  return { label: inScore >= threshold ? (r.label as P3Label) : 'ood', inScore };
}

const oneHot = (l: P3Label): Float32Array => Float32Array.from(P3_LABELS, (x) => (x === l ? 1 : 0));

/**
 * What P3's held-out parts (and its cross-validation folds, cv.ts) are cut by: MMLU negatives by
 * subject, so that held-out negatives are unseen subjects as the test's are; every other row by id.
 */
export const p3GroupKey = (it: LabeledRow): string => (it.label === 'ood' && it.row.benchmark === 'mmlu' ? it.row.category : it.row.id);

/** The held-out part of a set of P3 train rows: bucket(salt + group key) == 1. */
export const p3HeldOut =
  (salt: string) =>
  (it: LabeledRow): boolean =>
    bucket(salt + p3GroupKey(it)) === 1;

/** Validation part of the train split: held-out ids, and held-out whole subjects for MMLU negatives. */
const isValidation = p3HeldOut('p3-val/');

/** `embedder` made the items' vectors: an ensemble member's `input: N` reads its Nth concat member's part. */
async function fit(recipe: Recipe, items: readonly Item[], embedder: Embedder, ctx: RunContext): Promise<TrainedMlp> {
  // Balanced classes: negatives outnumber each domain several times, and an unweighted softmax would
  // let 'ood' win on in-domain prompts the guard should pass.
  // A copy counts copyWeight times an original row, in its class's total too.
  const own = (it: Item): number => (it.copy === true ? (recipe.copyWeight ?? 1) : it.extra === true ? (recipe.extra?.weight ?? 1) : 1);
  const count = new Map<P3Label, number>();
  let total = 0;
  for (const it of items) {
    count.set(it.label, (count.get(it.label) ?? 0) + own(it));
    total += own(it);
  }
  const weights = Float32Array.from(items, (it) => (own(it) * total) / (count.size * count.get(it.label)!));
  return fitRecipe(
    recipe,
    items.map((it) => it.x),
    items.map((_, i) => i),
    items.map((it) => oneHot(it.label)),
    'softmax',
    ctx,
    weights,
    { embedder, categories: items.map(p3FineClass) },
  );
}

/**
 * A finer class than the label, for recipes with a category-prior member: the row's source and its
 * category (an MMLU subject, a llmrouter cluster, a chat prompt's label). Each belongs to one label, so a
 * softmax over them, summed per label, is a guard's softmax; a linear model gets one direction per
 * subject instead of one for all of 'ood'.
 */
export const p3FineClass = (it: LabeledRow): string => `${it.row.benchmark}/${it.row.category}`;

/**
 * The recipe's augmentation copies of the train items (same label; `row` stays the original, so the
 * validation split and the quote filter treat a copy like its source). Made per source file.
 */
export async function augmentItems(
  recipe: Recipe,
  items: readonly Item[],
  sources: readonly Dataset[],
  embedder: Embedder,
  ctx: RunContext,
) {
  if (recipe.augment === undefined) return [];
  const byRow = new Map(items.map((it) => [it.row, it]));
  const out: Item[] = [];
  for (const ds of sources) {
    const rows = ds.rows.flatMap((r, i) => (byRow.has(r) ? [i] : []));
    for (const set of copySets(ds, rows, recipe.augment)) {
      const X = await embedAll(embedder, set.ds, ctx);
      set.source.forEach((i, k) => out.push({ ...byRow.get(ds.rows[i]!)!, x: rowOf(X, k), copy: true }));
    }
  }
  return out;
}

/** The recipe's extra prompts (Recipe.extra), labelled by p3DomainOf, embedded; [] when it has none. */
export async function extraItems(recipe: Recipe, embedder: Embedder, ctx: RunContext): Promise<{ items: Item[]; sha256: string }> {
  if (recipe.extra === undefined) return { items: [], sha256: '' };
  return fileItems(recipe.extra.file, embedder, ctx);
}

/** Every row of a file in the dataset schema, labelled by p3DomainOf, embedded, marked as extra prompts. */
export async function fileItems(file: string, embedder: Embedder, ctx: RunContext): Promise<{ items: Item[]; sha256: string }> {
  const ds = await readDataset(file);
  const X = await embedAll(embedder, ds, ctx);
  return { items: ds.rows.map((row, i) => ({ row, label: p3DomainOf(row) ?? 'ood', x: rowOf(X, i), extra: true })), sha256: ds.sha256 };
}

/** The items as one dataset keyed by `key` (their files' hash): what the shaped copies are made from. */
function itemsDataset(items: readonly LabeledRow[], key: string, file: string): Dataset {
  return { file, sha256: sha256Hex(key), contaminated: 0, rows: items.map((it) => it.row) };
}

/**
 * The 'eval'-pool shaped copies of `items` (src/training/shapes.ts), embedded; `source` indexes
 * `items`. The items come from several files: they are made into one dataset whose cache key is
 * sha256(`key`), so `key` must identify the files and the items taken from them.
 */
export async function shapedItems(
  items: readonly LabeledRow[],
  embedder: Embedder,
  key: string,
  ctx: RunContext,
  file = 'p3-test',
): Promise<ShapedTest[]> {
  return shapedTests(embedder, itemsDataset(items, key, file), range(items.length), ctx);
}

/** Labels and P3 score of the test items against the same on their shaped copies. */
async function p3Robustness(
  test: readonly Item[],
  predicted: readonly P3Label[],
  decide: (x: Float32Array) => P3Label,
  embedder: Embedder,
  sha256: string,
  opts: RobustnessOptions,
  ctx: RunContext,
): Promise<P3Robustness> {
  const picked = sampleRows(
    { rows: test.map((it) => it.row) },
    test.map((_, i) => i),
    opts.sample,
  );
  const compare = (shape: Shape | 'all', source: readonly number[], labels: readonly P3Label[]): P3ShapeResult => {
    const truth = source.map((k) => test[picked[k]!]!.label);
    const orig = source.map((k) => predicted[picked[k]!]!);
    return {
      shape,
      n: source.length,
      agreement: agreement(orig, labels, source),
      plain: p3Evaluate(truth, orig),
      shaped: p3Evaluate(truth, labels),
    };
  };
  // The test items come from several files: one dataset of the sampled ones, keyed by those files' hash.
  // One shape's vectors at a time: only the decisions are kept.
  const scored: Array<{ t: Pick<ShapedTest, 'shape' | 'source'>; labels: P3Label[] }> = [];
  const ds = itemsDataset(
    picked.map((i) => test[i]!),
    `${sha256}\0${picked.join(',')}`,
    'p3-test',
  );
  for await (const t of eachShapedTest(embedder, ds, range(picked.length), ctx))
    scored.push({ t: { shape: t.shape, source: t.source }, labels: range(t.source.length).map((k) => decide(rowOf(t.X, k))) });
  const shapes = scored.map(({ t, labels }) => compare(t.shape, t.source, labels));
  if (scored.length > 1)
    shapes.push(
      compare(
        'all',
        scored.flatMap(({ t }) => t.source),
        scored.flatMap(({ labels }) => labels),
      ),
    );
  return { rows: picked.length, shapes };
}

export interface P3Data {
  mmlu: Dataset;
  llm: Dataset;
  /** Out-of-domain test sets: read for the quote filter (and runP3's test), never trained on. */
  gsm: Dataset;
  mtb: Dataset;
  embedder: Embedder;
  split: P3Split;
  /** The train split minus rows quoting GSM8K/MT-Bench, with their vectors. */
  train: Item[];
  /** How many train rows the quote filter dropped. */
  dropped: number;
  /** Vector of every embedded row (MMLU and llmrouter; GSM8K and MT-Bench when asked). */
  vec: Map<OutcomeRow, Float32Array>;
}

/**
 * Reads the four files, splits them (PROTOCOLS.md P3) and embeds them with the recipe's embedder.
 * `embedOod` false (cross-validation): GSM8K and MT-Bench are read for the quote filter only.
 */
export async function loadP3(recipe: Recipe, pool: EmbedderPool, ctx: RunContext, embedOod = true): Promise<P3Data> {
  const mmlu = await readDataset(dataPath(ctx.dataDir, 'mmlu'));
  const llm = await readDataset(dataPath(ctx.dataDir, 'llmrouter'));
  const gsm = await readDataset(dataPath(ctx.dataDir, 'gsm8k'));
  const mtb = await readDataset(dataPath(ctx.dataDir, 'mtBench'));
  const embedder = await pool.get(recipe.embedder);
  const vec = new Map<OutcomeRow, Float32Array>();
  for (const ds of embedOod ? [mmlu, llm, gsm, mtb] : [mmlu, llm]) {
    const X = await embedAll(embedder, ds, ctx);
    ds.rows.forEach((r, i) => vec.set(r, rowOf(X, i)));
  }
  const split = p3Split(mmlu.rows, llm.rows, [...gsm.rows, ...mtb.rows]);
  const quotes = overlapChecker([...gsm.rows, ...mtb.rows]);
  const train: Item[] = split.train.filter((it) => !quotes(it.row)).map((it) => ({ ...it, x: vec.get(it.row)! }));
  return { mmlu, llm, gsm, mtb, embedder, split, train, dropped: split.train.length - train.length, vec };
}

export interface P3Guard {
  model: TrainedMlp;
  threshold: HarmonicThreshold;
}

/** The max_prob threshold that maximises the ID/OOD harmonic mean of `model` on `items` (and that mean). */
/** The threshold best for `items` as `model` scores them (and `also.items` as `also.model` scores those). */
export function harmonicThreshold(
  model: TrainedMlp,
  items: readonly Item[],
  also?: { model: TrainedMlp; items: readonly Item[] },
): HarmonicThreshold {
  const idVal: Array<{ score: number; correct: boolean }> = [];
  const oodVal: number[] = [];
  const add = (m: TrainedMlp, it: Item): void => {
    const r = maxProbScore(m.predict(it.x), P3_LABELS);
    // 'ood' winning outright rejects at any threshold: -1 sits below every candidate (>= 0).
    const score = r.oodWins ? -1 : r.score;
    if (it.label === 'ood') oodVal.push(score);
    else idVal.push({ score, correct: !r.oodWins && r.label === it.label });
  };
  for (const it of items) add(model, it);
  if (also !== undefined) for (const it of also.items) add(also.model, it);
  return bestHarmonicThreshold(idVal, oodVal, 0);
}

/**
 * P3's training procedure on a set of train rows and their copies: 1) fit on the part outside
 * `heldOut`, pick the threshold on the held-out original rows (copies train with their source's part
 * and are never used to pick it); 2) refit on all rows and copies.
 */
export async function fitGuard(
  recipe: Recipe,
  train: readonly Item[],
  copies: readonly Item[],
  embedder: Embedder,
  ctx: RunContext,
  heldOut: (it: LabeledRow) => boolean = isValidation,
): Promise<P3Guard> {
  const inner = await fit(
    recipe,
    [...train, ...copies].filter((it) => !heldOut(it)),
    embedder,
    ctx,
  );
  let threshold: HarmonicThreshold;
  if (recipe.thresholdPick === 'both') {
    // The other way round too: fitted on the held-out part, scoring the rest; one pick over both.
    const other = await fit(
      recipe,
      [...train, ...copies].filter((it) => heldOut(it)),
      embedder,
      ctx,
    );
    threshold = harmonicThreshold(inner, train.filter(heldOut), { model: other, items: train.filter((it) => !heldOut(it)) });
  } else threshold = harmonicThreshold(inner, train.filter(heldOut));
  const model = await fit(recipe, [...train, ...copies], embedder, ctx);
  return { model, threshold };
}

export async function runP3(opts: P3Options, ctx: RunContext): Promise<P3Run> {
  const { mmlu, llm, gsm, mtb, embedder, split, train, dropped, vec } = await loadP3(opts.recipe, opts.pool, ctx);
  const extra = await extraItems(opts.recipe, embedder, ctx);
  // The extra prompts train like copies: in both halves' fits by their ids, never picking the threshold.
  // The copies' vectors are dropped once the guard is fitted (held in this closure only): they are the
  // largest part of a wide embedder's memory.
  const { model, threshold, copyCount } = await (async () => {
    const copies = [...(await augmentItems(opts.recipe, train, [mmlu, llm], embedder, ctx)), ...extra.items];
    return { ...(await fitGuard(opts.recipe, train, copies, embedder, ctx)), copyCount: copies.length };
  })();

  let test: Item[];
  if (opts.testFile !== undefined) {
    const ds = await readDataset(opts.testFile);
    const X = await embedAll(embedder, ds, ctx);
    test = ds.rows.map((row, i) => ({ row, label: p3DomainOf(row) ?? 'ood', x: rowOf(X, i) }));
  } else {
    test = split.test.map((it) => ({ ...it, x: vec.get(it.row)! }));
  }
  const predicted = test.map((it) => p3Decide(model.predict(it.x), threshold.threshold).label);
  const result = p3Evaluate(
    test.map((it) => it.label),
    predicted,
  );
  const robustness =
    opts.robustness === undefined
      ? undefined
      : await p3Robustness(
          test,
          predicted,
          (x) => p3Decide(model.predict(x), threshold.threshold).label,
          embedder,
          sha256Hex(mmlu.sha256 + llm.sha256 + gsm.sha256 + mtb.sha256 + (opts.testFile ?? '')),
          opts.robustness,
          ctx,
        );
  const oodBySource: P3Run['oodBySource'] = {};
  test.forEach((it, i) => {
    if (it.label !== 'ood') return;
    const src = it.row.benchmark;
    const s = (oodBySource[src] ??= { n: 0, accuracy: 0 });
    s.n++;
    if (predicted[i] === 'ood') s.accuracy++;
  });
  for (const s of Object.values(oodBySource)) s.accuracy /= s.n;

  // Whole decision time: embed the text and run the network, one prompt at a time, as the gateway does:
  // the exported graph through the gateway's plan (routers/mlp-plan.ts), not the trainer's own forward
  // pass (which took 2-3x as long); the trainer's only where the gateway would use onnxruntime too.
  const sample = test.filter((_, i) => i % Math.max(1, Math.floor(test.length / 300)) === 0).slice(0, 300);
  const graph = readExportedGraph(mlpToOnnx(model));
  const plan = typeof graph === 'string' ? null : MlpPlan.create(graph);
  const forward = plan === null ? (x: Float32Array) => model.predict(x) : (x: Float32Array) => plan.run(x);
  // A warm pass first (JIT, the plan's kernel tier-up), then the median of the second, as /v1/route's p50.
  const micros = new Float64Array(sample.length);
  for (let pass = 0; pass < 2; pass++) {
    for (const [i, it] of sample.entries()) {
      const t0 = process.hrtime.bigint();
      p3Decide(forward(await embedder.embed(rowText(it.row))), threshold.threshold);
      micros[i] = Number(process.hrtime.bigint() - t0) / 1000;
    }
  }
  const decisionMicros = sample.length === 0 ? 0 : micros.sort()[Math.floor(sample.length / 2)]!;

  return {
    protocol: 'p3',
    recipe: opts.recipe.name,
    embedder: embedder.id,
    labels: P3_LABELS,
    threshold: threshold.threshold,
    calibration: `in domain when 'ood' is not the argmax and the best domain probability >= t; t maximises the ID/OOD harmonic mean (${threshold.score.toFixed(3)}) on a validation part of the train split (held-out ids; held-out whole MMLU subjects for negatives)`,
    train: {
      rows: train.length + copyCount,
      droppedOverlap: dropped,
      sha256: sha256Hex(mmlu.sha256 + llm.sha256 + extra.sha256),
      split: `in-domain MMLU bucket(id) == 0; negatives MMLU bucket(category) == 0 and llmrouter bucket(id) == 0, minus rows quoting GSM8K/MT-Bench${
        opts.recipe.extra === undefined
          ? ''
          : `; plus the ${extra.items.length} project-written prompts of ${opts.recipe.extra.file} (weight ${opts.recipe.extra.weight})`
      }`,
    },
    result,
    oodBySource,
    decisionMicros,
    dump: test.map((it, i) => ({ id: it.row.id, label: predicted[i]! })),
    model,
    ...(robustness === undefined ? {} : { robustness }),
  };
}
