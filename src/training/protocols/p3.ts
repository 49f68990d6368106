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
  p3Split,
  readDataset,
  rowText,
  sha256Hex,
} from '../dataset.js';
import { type P3Result, p3Evaluate } from '../metrics.js';
import { type EmbedderPool, type RunContext, embedAll, fitRecipe, range } from '../fit.js';
import { rowOf, type Matrix } from '../embed-cache.js';
import type { TrainedMlp } from '../mlp-train.js';
import type { Recipe } from '../recipes.js';
import { bestHarmonicThreshold } from '../calibrate-router.js';
import { maxProbScore } from '../../routers/guard.js';
import type { Embedder } from '../../embedders/types.js';
import { type Agreement, type RobustnessOptions, agreement, sampleRows, shapedTests } from '../robustness.js';
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
  /** sha256 = sha256(mmlu file hash + llmrouter file hash): both files the guard learnt from. */
  train: { rows: number; droppedOverlap: number; split: string; sha256: string };
  result: P3Result;
  /** OOD accuracy per out-of-domain source. */
  oodBySource: Record<string, { n: number; accuracy: number }>;
  /** Mean time of one whole guard decision (embed + MLP) over test prompts, in microseconds. */
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

interface Item extends LabeledRow {
  x: Float32Array;
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

/** Validation part of the train split: held-out ids, and held-out whole subjects for MMLU negatives. */
const isValidation = (it: LabeledRow): boolean =>
  it.label === 'ood' && it.row.benchmark === 'mmlu' ? bucket(`p3-val/${it.row.category}`) === 1 : bucket(`p3-val/${it.row.id}`) === 1;

async function fit(recipe: Recipe, items: readonly Item[], ctx: RunContext): Promise<TrainedMlp> {
  const X: Matrix = { rows: items.length, dim: items[0]!.x.length, data: new Float32Array(0) };
  // fitRecipe reads rows through rowOf(X, i): hand it a matrix built from the items' vectors.
  X.data = new Float32Array(items.length * X.dim);
  items.forEach((it, i) => X.data.set(it.x, i * X.dim));
  // Balanced classes: negatives outnumber each domain several times, and an unweighted softmax would
  // let 'ood' win on in-domain prompts the guard should pass.
  const count = new Map<P3Label, number>();
  for (const it of items) count.set(it.label, (count.get(it.label) ?? 0) + 1);
  const weights = Float32Array.from(items, (it) => items.length / (count.size * count.get(it.label)!));
  return fitRecipe(
    recipe,
    X,
    items.map((_, i) => i),
    items.map((it) => oneHot(it.label)),
    'softmax',
    ctx,
    weights,
  );
}

/**
 * The recipe's augmentation copies of the train items (same label; `row` stays the original, so the
 * validation split and the quote filter treat a copy like its source). Made per source file.
 */
async function augmentItems(recipe: Recipe, items: readonly Item[], sources: readonly Dataset[], embedder: Embedder, ctx: RunContext) {
  if (recipe.augment === undefined) return [];
  const byRow = new Map(items.map((it) => [it.row, it]));
  const out: Item[] = [];
  for (const ds of sources) {
    const rows = ds.rows.flatMap((r, i) => (byRow.has(r) ? [i] : []));
    for (const set of copySets(ds, rows, recipe.augment)) {
      const X = await embedAll(embedder, set.ds, ctx);
      set.source.forEach((i, k) => out.push({ ...byRow.get(ds.rows[i]!)!, x: rowOf(X, k) }));
    }
  }
  return out;
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
  // The test items come from several files: one dataset of the sampled ones, keyed by those files' hash.
  const picked = sampleRows(
    { rows: test.map((it) => it.row) },
    test.map((_, i) => i),
    opts.sample,
  );
  const ds: Dataset = {
    file: 'p3-test',
    sha256: sha256Hex(`${sha256}\0${picked.join(',')}`),
    contaminated: 0,
    rows: picked.map((i) => test[i]!.row),
  };
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
  const sets = await shapedTests(embedder, ds, range(picked.length), ctx);
  const scored = sets.map((t) => ({ t, labels: range(t.source.length).map((k) => decide(rowOf(t.X, k))) }));
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

export async function runP3(opts: P3Options, ctx: RunContext): Promise<P3Run> {
  const mmlu = await readDataset(dataPath(ctx.dataDir, 'mmlu'));
  const llm = await readDataset(dataPath(ctx.dataDir, 'llmrouter'));
  const gsm = await readDataset(dataPath(ctx.dataDir, 'gsm8k'));
  const mtb = await readDataset(dataPath(ctx.dataDir, 'mtBench'));
  const embedder = await opts.pool.get(opts.recipe.embedder);
  const vec = new Map<OutcomeRow, Float32Array>();
  for (const ds of [mmlu, llm, gsm, mtb]) {
    const X = await embedAll(embedder, ds, ctx);
    ds.rows.forEach((r, i) => vec.set(r, rowOf(X, i)));
  }
  const split = p3Split(mmlu.rows, llm.rows, [...gsm.rows, ...mtb.rows]);
  const quotes = overlapChecker([...gsm.rows, ...mtb.rows]);
  const train: Item[] = split.train.filter((it) => !quotes(it.row)).map((it) => ({ ...it, x: vec.get(it.row)! }));
  const dropped = split.train.length - train.length;
  const copies = await augmentItems(opts.recipe, train, [mmlu, llm], embedder, ctx);

  // 1) fit on the inner part, pick the threshold on validation; 2) refit on all train rows.
  // Copies train with their source's part; the threshold is chosen on original validation rows only.
  const inner = await fit(
    opts.recipe,
    [...train, ...copies].filter((it) => !isValidation(it)),
    ctx,
  );
  const val = train.filter(isValidation);
  const idVal: Array<{ score: number; correct: boolean }> = [];
  const oodVal: number[] = [];
  for (const it of val) {
    const r = maxProbScore(inner.predict(it.x), P3_LABELS);
    // 'ood' winning outright rejects at any threshold: -1 sits below every candidate (>= 0).
    const score = r.oodWins ? -1 : r.score;
    if (it.label === 'ood') oodVal.push(score);
    else idVal.push({ score, correct: !r.oodWins && r.label === it.label });
  }
  const threshold = bestHarmonicThreshold(idVal, oodVal, 0);
  const model = await fit(opts.recipe, [...train, ...copies], ctx);

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

  // Whole decision time: embed the text and run the MLP, one prompt at a time, as the gateway would.
  const sample = test.filter((_, i) => i % Math.max(1, Math.floor(test.length / 300)) === 0).slice(0, 300);
  const t0 = process.hrtime.bigint();
  for (const it of sample) p3Decide(model.predict(await embedder.embed(rowText(it.row))), threshold.threshold);
  const decisionMicros = Number(process.hrtime.bigint() - t0) / 1000 / Math.max(1, sample.length);

  return {
    protocol: 'p3',
    recipe: opts.recipe.name,
    embedder: embedder.id,
    labels: P3_LABELS,
    threshold: threshold.threshold,
    calibration: `in domain when 'ood' is not the argmax and the best domain probability >= t; t maximises the ID/OOD harmonic mean (${threshold.score.toFixed(3)}) on a validation part of the train split (held-out ids; held-out whole MMLU subjects for negatives)`,
    train: {
      rows: train.length + copies.length,
      droppedOverlap: dropped,
      sha256: sha256Hex(mmlu.sha256 + llm.sha256),
      split:
        'in-domain MMLU bucket(id) == 0; negatives MMLU bucket(category) == 0 and llmrouter bucket(id) == 0, minus rows quoting GSM8K/MT-Bench',
    },
    result,
    oodBySource,
    decisionMicros,
    dump: test.map((it, i) => ({ id: it.row.id, label: predicted[i]! })),
    model,
    ...(robustness === undefined ? {} : { robustness }),
  };
}
