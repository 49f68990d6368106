import { DATA_OPTIONS, parseCommand } from './args.js';
import { type OutcomeRow, bucket, modelsOf, readDataset, unitScore } from '../training/dataset.js';
import { rowOf } from '../training/embed-cache.js';
import { EmbedderPool, type RunContext, embedAll, fitRecipe, range } from '../training/fit.js';
import { writeKnnArtifact } from '../training/knn-build.js';
import { writeMlpArtifact } from '../training/onnx-export.js';
import { runP1 } from '../training/protocols/p1.js';
import { runP2 } from '../training/protocols/p2.js';
import { runP3 } from '../training/protocols/p3.js';
import { type Recipe, findRecipe, shippedRecipe } from '../training/recipes.js';
import type { ManifestInput } from '../routers/artifacts.js';
import { OnnxMlp } from '../routers/mlp.js';
import { seededRandom } from '../util/random.js';
import type { TrainedMlp } from '../training/mlp-train.js';

/**
 * Loads the written model.onnx the way the gateway does and checks it computes what the trained
 * model computes (on seeded random unit vectors), so the numbers `eval` reports hold for the file.
 */
export async function verifyOnnx(dir: string, model: TrainedMlp): Promise<number> {
  const onnx = await OnnxMlp.load(dir);
  const next = seededRandom(12345);
  let worst = 0;
  try {
    for (let k = 0; k < 8; k++) {
      const x = Float32Array.from({ length: model.spec.inputDim }, () => next() * 2 - 1);
      const norm = Math.hypot(...x);
      for (let i = 0; i < x.length; i++) x[i] = x[i]! / norm;
      const a = model.predict(x);
      const b = await onnx.run(x);
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    }
  } finally {
    await onnx.close();
  }
  if (!(worst < 1e-4)) throw new Error(`${dir}/model.onnx differs from the trained model by ${worst}; the export is broken`);
  return worst;
}

const USAGE = `usage: signalman train --protocol p1|p2|p3 [--router RECIPE] [--data DIR] [--out DIR]
       signalman train --input FILE --kind knn|mlp [--embedder lexical|use-lite] [--dim N]
                       [--split train|all] [--hidden N,N] [--epochs N] [--seed N] --out DIR

With --protocol: trains a recipe on the protocol's train split (../shared/datasets/PROTOCOLS.md),
scores its test sets, and writes the artifact with those metrics in its manifest.
With --input: builds a kNN index or trains an MLP (exported to ONNX) on any routing-outcome JSONL;
--split train keeps rows with bucket(id) == 0 (default), --split all keeps every clean row.`;

const cmdline = (argv: string[]): string => ['signalman train', ...argv].join(' ');

/** An MLP learns every output on every row: a row without some model's score cannot train it. */
function requireCompleteRows(rows: readonly OutcomeRow[], file: string): void {
  const models = modelsOf(rows);
  const row = rows.find((r) => models.some((m) => r.scores[m] === undefined));
  if (row === undefined) return;
  const missing = models.filter((m) => row.scores[m] === undefined);
  throw new Error(
    `${file}: row '${row.id}' has no score for [${missing.join(', ')}]; --kind mlp needs every row to score every model: use --kind knn (which takes partial rows) or complete the rows`,
  );
}

async function trainProtocol(
  proto: string,
  recipe: Recipe,
  out: string,
  ctx: RunContext,
  pool: EmbedderPool,
  argv: string[],
): Promise<void> {
  const now = new Date().toISOString();
  let model: TrainedMlp;
  if (proto === 'p1') {
    const r = await runP1({ recipe, pool, bootstrap: 0 }, ctx);
    model = r.model;
    const metrics: Record<string, number> = {};
    for (const b of r.benchmarks) {
      metrics[`apgr_${b.benchmark}`] = b.router.apgr;
      if (b.router.cpt50 !== null) metrics[`cpt50_${b.benchmark}`] = b.router.cpt50;
      if (b.router.cpt80 !== null) metrics[`cpt80_${b.benchmark}`] = b.router.cpt80;
    }
    await writeMlpArtifact(out, r.model, {
      embedder: { id: r.embedder, dim: r.model.spec.inputDim },
      models: [r.strong, r.weak],
      trained_on: { file: 'routellm/mmlu.jsonl', sha256: r.train.sha256, split: r.train.split, seed: recipe.seed, rows: r.train.rows },
      metrics,
      command: cmdline(argv),
      created_at: now,
    });
  } else if (proto === 'p2') {
    const r = await runP2({ recipe, pool }, ctx);
    model = r.model;
    await writeMlpArtifact(out, r.model, {
      embedder: { id: r.embedder, dim: r.model.spec.inputDim },
      models: r.models,
      trained_on: { file: 'llmrouter/train.jsonl', sha256: r.train.sha256, split: r.train.split, seed: recipe.seed, rows: r.train.rows },
      metrics: {
        aiq: r.router.aiq,
        aiq_zero_router: r.zeroRouter.aiq,
        aiq_oracle: r.oracle.aiq,
        accuracy_at_best_single_cost: r.router.accuracyAtBestCost,
        ...(r.router.costToMatch === null ? {} : { cost_to_match_best_single: r.router.costToMatch }),
      },
      command: cmdline(argv),
      created_at: now,
    });
  } else {
    const r = await runP3({ recipe, pool }, ctx);
    model = r.model;
    await writeMlpArtifact(out, r.model, {
      embedder: { id: r.embedder, dim: r.model.spec.inputDim },
      models: [...r.labels],
      labels: [...r.labels],
      trained_on: {
        file: 'routellm/mmlu.jsonl + llmrouter/train.jsonl',
        sha256: r.train.sha256,
        split: r.train.split,
        seed: recipe.seed,
        rows: r.train.rows,
      },
      guard: { kind: 'max_prob', threshold: r.threshold, calibration: r.calibration },
      metrics: {
        p3_score: r.result.score,
        id_accuracy: r.result.idAccuracy,
        ood_accuracy: r.result.oodAccuracy,
        decision_us: r.decisionMicros,
      },
      command: cmdline(argv),
      created_at: now,
    });
  }
  await verifyOnnx(out, model);
}

async function trainFile(
  values: Record<string, string | boolean | undefined>,
  out: string,
  ctx: RunContext,
  pool: EmbedderPool,
  argv: string[],
): Promise<void> {
  const input = String(values.input);
  const kind = values.kind;
  if (kind !== 'knn' && kind !== 'mlp') throw new Error(`--kind must be knn or mlp, got '${String(kind)}'`);
  const split = values.split ?? 'train';
  if (split !== 'train' && split !== 'all') throw new Error(`--split must be train or all, got '${String(split)}'`);
  // kNN takes partial rows (each scoring some of the models, e.g. `signalman export-feedback`): an
  // unscored model is NaN in scores.f32 and left out of that model's neighbour mean. An MLP refuses them.
  const ds = await readDataset(input, { partial: true });
  if (kind === 'mlp') requireCompleteRows(ds.rows, input);
  const spec: Recipe['embedder'] = { type: String(values.embedder ?? 'lexical') };
  if (values.dim !== undefined) spec.dim = Number(values.dim);
  const embedder = await pool.get(spec);
  const X = await embedAll(embedder, ds, ctx);
  const rows = range(ds.rows.length).filter((i) => split === 'all' || bucket(ds.rows[i]!.id) === 0);
  if (rows.length === 0) throw new Error(`${input}: no rows left for --split ${split}`);
  // The models the kept rows score (with partial rows, a model may only appear in the other split).
  const models = modelsOf(rows.map((i) => ds.rows[i]!));
  const Y = rows.map((i) =>
    Float32Array.from(models, (m) => (ds.rows[i]!.scores[m] === undefined ? Number.NaN : unitScore(ds.rows[i]!, m))),
  );
  const seed = Number(values.seed ?? 1);
  const manifest: ManifestInput = {
    embedder: { id: embedder.id, dim: embedder.dim },
    models,
    trained_on: { file: input, sha256: ds.sha256, split: split === 'all' ? 'all clean rows' : 'bucket(id) == 0', seed, rows: rows.length },
    metrics: {},
    command: cmdline(argv),
    created_at: new Date().toISOString(),
  };
  if (kind === 'knn') {
    await writeKnnArtifact(
      out,
      rows.map((i) => rowOf(X, i)),
      Y,
      manifest,
    );
    return;
  }
  const hidden = values.hidden === undefined || values.hidden === '' ? [] : String(values.hidden).split(',').map(Number);
  const recipe: Recipe = {
    name: 'custom',
    protocol: 'p2',
    embedder: spec,
    mlp: {
      hidden,
      epochs: Number(values.epochs ?? 20),
      lr: hidden.length === 0 ? 0.01 : 0.001,
      batchSize: hidden.length === 0 ? 256 : 64,
      l2: 1e-4,
    },
    seed,
    shipped: false,
    note: '',
  };
  const mlp = await fitRecipe(recipe, X, rows, Y, 'sigmoid', ctx);
  await writeMlpArtifact(out, mlp, manifest);
  await verifyOnnx(out, mlp);
}

export async function trainCommand(argv: string[]): Promise<number> {
  const values = parseCommand('train', USAGE, argv, {
    ...DATA_OPTIONS,
    protocol: { type: 'string' },
    router: { type: 'string' },
    input: { type: 'string' },
    kind: { type: 'string' },
    embedder: { type: 'string' },
    dim: { type: 'string' },
    split: { type: 'string' },
    hidden: { type: 'string' },
    epochs: { type: 'string' },
    seed: { type: 'string' },
    out: { type: 'string' },
  });
  if (typeof values === 'number') return values;
  if ((values.protocol === undefined) === (values.input === undefined)) {
    process.stderr.write(`signalman train: give exactly one of --protocol or --input\n${USAGE}\n`);
    return 2;
  }
  const ctx: RunContext = { dataDir: values.data, cacheDir: values['no-cache'] ? null : values['cache-dir'] };
  const pool = new EmbedderPool();
  try {
    if (values.protocol !== undefined) {
      const proto = values.protocol;
      if (proto !== 'p1' && proto !== 'p2' && proto !== 'p3') throw new Error(`--protocol must be p1, p2 or p3, got '${proto}'`);
      const recipe = values.router === undefined ? shippedRecipe(proto) : findRecipe(values.router);
      if (recipe.protocol !== proto) throw new Error(`recipe '${recipe.name}' belongs to ${recipe.protocol}, not ${proto}`);
      await trainProtocol(proto, recipe, values.out ?? `routers/${recipe.name}`, ctx, pool, argv);
      process.stdout.write(`wrote ${values.out ?? `routers/${recipe.name}`}\n`);
    } else {
      if (values.out === undefined) throw new Error('--out DIR is required with --input');
      await trainFile(values, values.out, ctx, pool, argv);
      process.stdout.write(`wrote ${values.out}\n`);
    }
  } catch (err) {
    process.stderr.write(`signalman train: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await pool.close();
  }
  return 0;
}
