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
import { readManifest, writeManifest, type ManifestInput } from '../routers/artifacts.js';
import { KnnIndex } from '../routers/knn-index.js';
import type { Embedder } from '../embedders/types.js';
import { hashText32 } from '../util/hash.js';
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
       signalman train --input FILE --kind knn|mlp [--embedder TYPE|JSON] [--dim N]
                       [--split train|all] [--hidden N,N] [--epochs N] [--seed N] --out DIR
                       [--guard-pass RATE [--max-rows N] [--ood FILE]]   (knn only)

With --protocol: trains a recipe on the protocol's train split (../shared/datasets/PROTOCOLS.md),
scores its test sets, and writes the artifact with those metrics in its manifest.
With --input: builds a kNN index or trains an MLP (exported to ONNX) on any routing-outcome JSONL;
--split train keeps rows with bucket(id) == 0 (default), --split all keeps every clean row.
--embedder takes a type (lexical, use-lite, static) or a policy's embedder block as JSON, e.g.
'{"type":"static","artifact":"embedders/static-use-lite"}'.
--guard-pass RATE (knn): also calibrate the index as an out-of-domain guard. A tenth of the kept rows
(by a hash of their id) is held out of the index; the threshold is the top-1 cosine that RATE of them
reach, written to the manifest (guard.kind knn_distance), so a policy's guard: { artifact } needs no
threshold. --max-rows N keeps an N-row index (a hash-chosen sample: a guard needs coverage, not every
row, and a smaller index is faster per request). --ood FILE prints the share of another file's prompts
the guard would pass (information only; nothing is tuned on it).`;

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
        file: `routellm/mmlu.jsonl + llmrouter/train.jsonl${recipe.extra === undefined ? '' : ` + ${recipe.extra.file}`}`,
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
  const spec = embedderSpec(values.embedder);
  if (values.dim !== undefined) spec.dim = Number(values.dim);
  const embedder = await pool.get(spec);
  const X = await embedAll(embedder, ds, ctx);
  const kept = range(ds.rows.length).filter((i) => split === 'all' || bucket(ds.rows[i]!.id) === 0);
  if (kept.length === 0) throw new Error(`${input}: no rows left for --split ${split}`);
  const guard = guardOptions(values, kind);
  const idOf = (i: number) => ds.rows[i]!.id;
  const held = guard === null ? [] : kept.filter((i) => hashText32(`guard-holdout:${idOf(i)}`) % 10 === 0);
  let rows = guard === null ? kept : kept.filter((i) => hashText32(`guard-holdout:${idOf(i)}`) % 10 !== 0);
  if (guard?.maxRows !== undefined && rows.length > guard.maxRows) {
    // A stable sample: the same ids whatever order the file lists them in.
    rows = [...rows].sort((a, b) => hashText32(`guard-sample:${idOf(a)}`) - hashText32(`guard-sample:${idOf(b)}`)).slice(0, guard.maxRows);
    rows.sort((a, b) => a - b);
  }
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
    if (guard !== null)
      await calibrateKnnGuard(
        out,
        guard,
        held.map((i) => rowOf(X, i)),
        { embedder, ctx },
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

/** `--embedder lexical` or a whole embedder block as JSON (`{"type":"concat","members":[…]}`). */
function embedderSpec(raw: string | boolean | undefined): Recipe['embedder'] {
  const text = String(raw ?? 'lexical').trim();
  if (!text.startsWith('{')) return { type: text };
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch {
    throw new Error(`--embedder: not valid JSON: ${text}`);
  }
  if (typeof spec !== 'object' || spec === null || typeof (spec as { type?: unknown }).type !== 'string') {
    throw new Error(`--embedder: a JSON embedder needs a "type", got ${text}`);
  }
  return spec as Recipe['embedder'];
}

interface GuardOptions {
  passRate: number;
  maxRows?: number;
  ood?: string;
}

function guardOptions(values: Record<string, string | boolean | undefined>, kind: string): GuardOptions | null {
  if (values['guard-pass'] === undefined) {
    if (values['max-rows'] !== undefined || values.ood !== undefined) throw new Error('--max-rows and --ood go with --guard-pass');
    return null;
  }
  if (kind !== 'knn') throw new Error('--guard-pass calibrates a kNN index as a guard: use it with --kind knn');
  const passRate = Number(values['guard-pass']);
  if (!(passRate > 0.5 && passRate < 1))
    throw new Error(`--guard-pass is the share of in-domain prompts to let through, in (0.5, 1), got '${String(values['guard-pass'])}'`);
  const maxRows = values['max-rows'] === undefined ? undefined : Number(values['max-rows']);
  if (maxRows !== undefined && !(Number.isInteger(maxRows) && maxRows >= 10))
    throw new Error(`--max-rows must be an integer >= 10, got '${String(values['max-rows'])}'`);
  return { passRate, ...(maxRows === undefined ? {} : { maxRows }), ...(values.ood === undefined ? {} : { ood: String(values.ood) }) };
}

/**
 * The threshold RATE of the held-out in-domain rows clear, scored by the index just written exactly as
 * the gateway's guard scores a prompt (KnnIndex.topSimilarity), written into its manifest.
 */
async function calibrateKnnGuard(
  dir: string,
  g: GuardOptions,
  held: Float32Array[],
  deps: { embedder: Embedder; ctx: RunContext },
): Promise<void> {
  if (held.length < 20) throw new Error(`--guard-pass: only ${held.length} rows held out for calibration; the file needs more rows`);
  const index = await KnnIndex.load(dir);
  const sims = held.map((v) => index.topSimilarity(v, 1)).sort((a, b) => a - b);
  // The largest t that at least RATE of the held-out rows reach (score >= t passes).
  const threshold = sims[Math.floor((1 - g.passRate) * sims.length)]!;
  const passed = sims.filter((x) => x >= threshold).length / sims.length;
  const manifest = await readManifest(dir);
  const calibration = `${(passed * 100).toFixed(1)}% of ${held.length} held-out rows of the same split (ids hashing to 0 mod 10, not in the index) have top-1 cosine >= t (asked: ${g.passRate})`;
  const metrics: Record<string, number> = { guard_held_out_pass_rate: passed };
  process.stdout.write(`guard threshold ${threshold.toFixed(4)}: ${calibration}\n`);
  if (g.ood !== undefined) {
    const other = await readDataset(g.ood, { partial: true });
    const X = await embedAll(deps.embedder, other, deps.ctx);
    const pass = range(other.rows.length).filter((i) => index.topSimilarity(rowOf(X, i), 1) >= threshold).length;
    metrics.guard_ood_pass_rate = pass / other.rows.length;
    process.stdout.write(
      `--ood ${g.ood}: ${pass} of ${other.rows.length} prompts (${((100 * pass) / other.rows.length).toFixed(1)}%) would pass the guard\n`,
    );
  }
  await writeManifest(dir, {
    ...manifest,
    guard: { kind: 'knn_distance', threshold, calibration },
    metrics: { ...manifest.metrics, ...metrics },
  });
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
    'guard-pass': { type: 'string' },
    'max-rows': { type: 'string' },
    ood: { type: 'string' },
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
