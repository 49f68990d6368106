import { DATA_OPTIONS, parseCommand } from './args.js';
import { knobForCost, meanCostAt, shareAbove, thresholdForShare } from '../training/calibrate-router.js';
import { type Dataset, bucket, dataPath, readDataset, readPrices, requireModels } from '../training/dataset.js';
import { EmbedderPool, type RunContext, embedAll, predictRows, range } from '../training/fit.js';
import { P1_STRONG, P1_WEAK, trainP1 } from '../training/protocols/p1.js';
import { costsFor, trainP2 } from '../training/protocols/p2.js';
import { findRecipe, shippedRecipe } from '../training/recipes.js';

const USAGE = `usage: signalman calibrate-router --protocol p1 (--target-share X | --target-cost C) [--router RECIPE]
       signalman calibrate-router --protocol p2 --target-cost C [--router RECIPE]
         [--data DIR] [--on FILE] [--cache-dir DIR | --no-cache]

Finds the operating point for a target: P1, the score threshold (P(strong right) - P(weak right))
that sends share X (0..1) of prompts to the strong model, or the share whose mean price per M input
tokens is C (prices --strong-price 24.7 and --weak-price 0.24 by default); P2, the cost knob
lambda (route to argmax P(correct) - lambda x price) whose mean price is C. Calibrated on the
protocol's TRAIN split, or on --on FILE (e.g. a sample of your own traffic with the same schema).
To calibrate a gateway policy's objective instead, use signalman calibrate-policy.`;

export async function calibrateRouterCommand(argv: string[]): Promise<number> {
  const values = parseCommand('calibrate-router', USAGE, argv, {
    ...DATA_OPTIONS,
    protocol: { type: 'string' },
    router: { type: 'string' },
    'target-share': { type: 'string' },
    'target-cost': { type: 'string' },
    'strong-price': { type: 'string', default: '24.7' },
    'weak-price': { type: 'string', default: '0.24' },
    on: { type: 'string' },
  });
  if (typeof values === 'number') return values;
  const num = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const x = Number(v);
    if (!Number.isFinite(x) || x < 0) throw new Error(`--${name} must be a number >= 0, got '${v}'`);
    return x;
  };
  const ctx: RunContext = { dataDir: values.data, cacheDir: values['no-cache'] ? null : values['cache-dir'] };
  const pool = new EmbedderPool();
  try {
    const proto = values.protocol;
    if (proto !== 'p1' && proto !== 'p2')
      throw new Error(`--protocol must be p1 or p2 (p3's guard threshold is calibrated by train), got '${String(proto)}'`);
    const recipe = values.router === undefined ? shippedRecipe(proto) : findRecipe(values.router);
    if (recipe.protocol !== proto) throw new Error(`recipe '${recipe.name}' belongs to ${recipe.protocol}, not ${proto}`);
    const share = num('target-share', values['target-share']);
    const cost = num('target-cost', values['target-cost']);
    const onFile = values.on;
    const calib = async (ds: Dataset): Promise<{ ds: Dataset; idx: number[] }> =>
      onFile === undefined
        ? { ds, idx: range(ds.rows.length).filter((i) => bucket(ds.rows[i]!.id) === 0) }
        : { ds: await readDataset(onFile), idx: [] };
    const embedder = await pool.get(recipe.embedder);
    if (proto === 'p1') {
      const mmlu = await readDataset(dataPath(ctx.dataDir, 'mmlu'));
      const { model } = await trainP1(mmlu, { recipe, pool }, ctx);
      const c = await calib(mmlu);
      if (onFile !== undefined) c.idx = range(c.ds.rows.length);
      const pred = predictRows(model, await embedAll(embedder, c.ds, ctx), c.idx);
      const scores = Float64Array.from(c.idx, (_, k) => pred[2 * k]! - pred[2 * k + 1]!);
      const sp = num('strong-price', values['strong-price'])!;
      const wp = num('weak-price', values['weak-price'])!;
      let target = share;
      if (target === undefined && cost !== undefined) target = Math.min(1, Math.max(0, (cost - wp) / (sp - wp)));
      if (target === undefined) throw new Error('p1 needs --target-share X or --target-cost C');
      const t = thresholdForShare(scores, target);
      const out = {
        protocol: 'p1',
        router: recipe.name,
        strong: P1_STRONG,
        weak: P1_WEAK,
        targetShare: target,
        threshold: t,
        share: shareAbove(scores, t),
        rows: scores.length,
      };
      process.stdout.write(
        `${JSON.stringify(out)}\nroute to ${P1_STRONG} when P(strong right) - P(weak right) >= ${t.toFixed(4)}: ${(out.share * 100).toFixed(1)}% of ${out.rows} calibration prompts\n` +
          `(a gateway utility policy does this with lambda = ${t.toFixed(4)} / (strong - weak expected cost per request))\n`,
      );
    } else {
      if (cost === undefined) throw new Error('p2 needs --target-cost C (mean price per M input tokens)');
      const ds = await readDataset(dataPath(ctx.dataDir, 'llmrouter'));
      const ood = [await readDataset(dataPath(ctx.dataDir, 'gsm8k')), await readDataset(dataPath(ctx.dataDir, 'mtBench'))];
      const { model, models } = await trainP2(ds, ood, { recipe, pool }, ctx);
      const costs = costsFor(models, await readPrices(dataPath(ctx.dataDir, 'prices')), dataPath(ctx.dataDir, 'prices'));
      const c = await calib(ds);
      if (onFile !== undefined) {
        requireModels(c.ds, models);
        c.idx = range(c.ds.rows.length);
      }
      const pred = predictRows(model, await embedAll(embedder, c.ds, ctx), c.idx);
      const knob = knobForCost(pred, models.length, costs, cost);
      if (knob === null) throw new Error(`no knob reaches a mean cost of ${cost}: the cheapest model alone costs ${Math.min(...costs)}`);
      const out = {
        protocol: 'p2',
        router: recipe.name,
        targetCost: cost,
        knob,
        meanCost: meanCostAt(pred, models.length, costs, knob),
        rows: c.idx.length,
      };
      process.stdout.write(
        `${JSON.stringify(out)}\nknob lambda = ${knob.toPrecision(4)} (per $/M input tokens) gives mean cost ${out.meanCost.toFixed(3)} on ${out.rows} calibration prompts\n` +
          `(the gateway's lambda is per USD of expected request cost: lambda_gateway = ${knob.toPrecision(4)} x 1e6 / expected tokens)\n`,
      );
    }
  } catch (err) {
    process.stderr.write(`signalman calibrate-router: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await pool.close();
  }
  return 0;
}
