import {
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
import { type EmbedderPool, type RunContext, embedAll, fitRecipe } from '../fit.js';
import { rowOf, type Matrix } from '../embed-cache.js';
import type { TrainedMlp } from '../mlp-train.js';
import type { Recipe } from '../recipes.js';
import { bestHarmonicThreshold } from '../calibrate-router.js';
import { maxProbScore } from '../../routers/guard.js';

// P3 (PROTOCOLS.md): guarded routing. A softmax over law / finance / health / ood, read by the same
// rule as the gateway's max_prob guard (see p3Decide). The threshold is
// chosen on a validation part of the TRAIN split whose negative MMLU subjects are held out whole,
// because the test's negatives are unseen subjects too.

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
}

export interface P3Options {
  recipe: Recipe;
  pool: EmbedderPool;
  /** Score this file's rows (labelled by p3DomainOf: MMLU subjects of the three domains, else ood). */
  testFile?: string;
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

  // 1) fit on the inner part, pick the threshold on validation; 2) refit on all train rows.
  const inner = await fit(
    opts.recipe,
    train.filter((it) => !isValidation(it)),
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
  const model = await fit(opts.recipe, train, ctx);

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
      rows: train.length,
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
  };
}
