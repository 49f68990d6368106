import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { DATA_OPTIONS } from './args.js';
import { EmbedderPool, type RunContext } from '../training/fit.js';
import { writeCurvesPng } from '../training/plot.js';
import { type Protocol, type Recipe, findRecipe, recipesFor, shippedRecipe } from '../training/recipes.js';
import { cvTable } from '../training/report.js';
import {
  type CvJob,
  type InThread,
  type ProtocolJob,
  type ProtocolReport,
  crossValidateJob,
  inThread,
  reportProtocol,
} from '../training/protocol-report.js';
import { type CvProtocol, type CvRun, isCvProtocol } from '../training/cv.js';
import type { RobustnessOptions } from '../training/robustness.js';

const USAGE = `usage: signalman eval [--protocol p1|p2|p3] [--router NAME|all]... [--test FILE]...
                      [--data DIR] [--dump FILE | --dump-dir DIR] [--results FILE] [--plot FILE]
                      [--cache-dir DIR | --no-cache] [--bootstrap N] [--no-robustness | --robustness-sample N] [--serial | --jobs N]
       signalman eval --cv K [--protocol p1|p2|p3] [--router NAME|all]... [--data DIR] [--results FILE] [--no-robustness] [--serial | --jobs N]
                      [--cv-extra FILE]

Runs the evaluation protocols of ../shared/datasets/PROTOCOLS.md (all three unless --protocol) and
prints a table per router against the random, zero-router and oracle baselines. Each router is
trained by its protocol (deterministic: recipe + seed) before it is scored. The protocols run side by
side, each in a thread of its own, and print in order; what they print and write is the same as one
after another.
  --data DIR       datasets folder (default ../shared/datasets)
  --router NAME    a recipe name (see routers/README.md), or 'all' for every recipe of the protocol;
                   default: the shipped router of each protocol
  --test FILE      score this file (same schema) instead of the protocol's test sets
  --dump FILE      per-prompt dump of the first router (needs one --protocol)
  --dump-dir DIR   writes DIR/p1.jsonl.gz, p2.jsonl.gz, p3.jsonl.gz (gzipped; a --dump FILE ending in .gz is too)
  --results FILE   all numbers as JSON       --plot FILE   quality/cost curves as PNG
  --bootstrap N    bootstrap resamples for P1 standard errors (default 200)
  --no-robustness  skip robustness to prompt shape: each test row (P1 and P3 with --cv: each validation row)
                   also scored as a chat request, behind a system prompt, after an unrelated exchange
                   and without its options (src/training/shapes.ts); one more embedding per shape
  --robustness-sample N   reshape only N test rows per test set (hash-ordered sample; slow embedders)
  --serial         run the protocols (with --cv: the recipes) one after another in this thread; less memory,
                   progress bars on a terminal. Without it each protocol runs in a thread of its own, and
                   with --cv each recipe, as many at once as the machine has cores, at most 4 (memory: a whole
                   'npm run eval' peaks at about 3.4 GB); the output is the same
  --jobs N         at most N of those threads at once
  --cv K           K-fold cross-validation inside the train rows instead: compare or tune recipes
                   without ever scoring a test half or an out-of-domain set. P3: folds of its train
                   split (MMLU negatives folded by whole subject, so each fold's negatives are unseen
                   subjects); each fold's guard is trained as P3 trains it (fit, threshold on a held-out
                   part of the other folds, refit) and scored by ID/OOD accuracy and their harmonic mean
                   (score), and, as a diagnostic, the score at the threshold best for the fold's own
                   rows (scoreAtBestThreshold); unless --no-robustness also the score on the rows'
                   shaped copies (scoreShapes) and the share of copies labelled like their original
                   (agreeShapes)
  --cv-extra FILE  P3 with --cv: also cut FILE's rows (dataset schema; label = category when it is law, finance,
                   health or ood, as for a recipe's extra prompts) into the same K folds by id: each fold's guard
                   is scored on its part too (extraScore, extraIdAccuracy, extraOodAccuracy), and a recipe that
                   trains on FILE (its extra) trains on the other folds' part only`;

export function parseEvalArgs(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      protocol: { type: 'string' },
      router: { type: 'string', multiple: true },
      test: { type: 'string', multiple: true },
      ...DATA_OPTIONS,
      dump: { type: 'string' },
      'dump-dir': { type: 'string' },
      results: { type: 'string' },
      plot: { type: 'string' },
      bootstrap: { type: 'string', default: '200' },
      cv: { type: 'string' },
      'no-robustness': { type: 'boolean', default: false },
      'robustness-sample': { type: 'string' },
      serial: { type: 'boolean', default: false },
      jobs: { type: 'string' },
      'cv-extra': { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  const p = values.protocol;
  if (p !== undefined && p !== 'p1' && p !== 'p2' && p !== 'p3') throw new Error(`--protocol must be p1, p2 or p3, got '${p}'`);
  const protocols: Protocol[] = p === undefined ? ['p1', 'p2', 'p3'] : [p];
  if (values.dump !== undefined && protocols.length !== 1) throw new Error('--dump FILE needs one --protocol (or use --dump-dir DIR)');
  if (values.test !== undefined && protocols.length !== 1) throw new Error('--test FILE needs one --protocol');
  if (values.test !== undefined && values.test.length > 1 && protocols[0] !== 'p1') throw new Error('only p1 accepts several --test files');
  let folds: number | undefined;
  if (values.cv !== undefined) {
    folds = Number(values.cv);
    if (!Number.isInteger(folds) || folds < 2) throw new Error(`--cv must be a whole number of folds >= 2, got '${values.cv}'`);
    const clash = (['test', 'dump', 'dump-dir', 'plot'] as const).filter((k) => values[k] !== undefined);
    if (clash.length > 0) throw new Error(`--cv scores folds of the train rows only; it takes no ${clash.map((k) => `--${k}`).join(', ')}`);
  }
  if (values['cv-extra'] !== undefined && (folds === undefined || !protocols.includes('p3')))
    throw new Error('--cv-extra FILE folds a file into the P3 cross-validation: it needs --cv K and protocol p3');
  let jobs: number | undefined;
  if (values.jobs !== undefined) {
    jobs = Number(values.jobs);
    if (!Number.isInteger(jobs) || jobs < 1) throw new Error(`--jobs must be a whole number >= 1, got '${values.jobs}'`);
    if (values.serial) throw new Error('--jobs and --serial exclude each other');
  }
  let sample: number | undefined;
  if (values['robustness-sample'] !== undefined) {
    sample = Number(values['robustness-sample']);
    if (!Number.isInteger(sample) || sample < 1)
      throw new Error(`--robustness-sample must be a whole number >= 1, got '${values['robustness-sample']}'`);
    if (values['no-robustness']) throw new Error('--robustness-sample and --no-robustness exclude each other');
  }
  const robustness: RobustnessOptions | undefined = values['no-robustness'] ? undefined : sample === undefined ? {} : { sample };
  const bootstrap = Number(values.bootstrap);
  if (!Number.isInteger(bootstrap) || bootstrap < 0) throw new Error(`--bootstrap must be a whole number >= 0, got '${values.bootstrap}'`);
  const recipes = (proto: Protocol): Recipe[] => {
    const names = values.router ?? [];
    if (names.length === 0) return [shippedRecipe(proto)];
    if (names.includes('all')) return recipesFor(proto);
    const picked = names.map(findRecipe).filter((r) => r.protocol === proto);
    if (picked.length === 0)
      throw new Error(
        `none of --router ${names.join(', ')} is a ${proto} recipe; ${proto} has ${recipesFor(proto)
          .map((r) => r.name)
          .join(', ')}`,
      );
    return picked;
  };
  return { values, protocols, recipes, bootstrap, folds, robustness, jobs };
}

/** Writes `text` to `file`, gzipped when the name ends in .gz (the per-prompt dumps: outputs, kept small). */
async function writeOut(file: string, text: string | Uint8Array): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, file.endsWith('.gz') ? gzipSync(text) : text);
}

/** Runs `work`; a failure is one line on stderr and exit code 1. The embedders are closed either way. */
async function closing(pool: EmbedderPool, work: () => Promise<void>): Promise<number> {
  try {
    await work();
    return 0;
  } catch (err) {
    process.stderr.write(`signalman eval: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await pool.close();
  }
}

async function crossValidateAll(
  protocols: readonly CvProtocol[],
  recipes: (p: Protocol) => Recipe[],
  cv: { folds: number; robustness: boolean; serial: boolean; extra: string | undefined; jobs: number },
  results: string | undefined,
  pool: EmbedderPool,
  ctx: RunContext,
): Promise<void> {
  const jobs: CvJob[] = protocols.flatMap((protocol) =>
    recipes(protocol).map((r) => ({
      protocol,
      recipe: r.name,
      folds: cv.folds,
      robustness: cv.robustness,
      ...(protocol === 'p3' && cv.extra !== undefined ? { extraFolds: cv.extra } : {}),
      ctx,
    })),
  );
  const pending =
    cv.serial || jobs.length === 1
      ? inTurn(jobs, (job) => crossValidateJob(job, pool))
      : sideBySide(
          jobs.map((job) => ({ what: `${job.protocol} ${job.recipe}`, start: () => inThread({ kind: 'cv', job }) })),
          cv.jobs,
        );
  // Jobs are in protocol order: a protocol's table is printed once its last recipe is done.
  const runs: CvRun[] = [];
  let from = 0;
  for (const p of pending) {
    runs.push(await p);
    if (jobs[runs.length]?.protocol !== jobs[runs.length - 1]!.protocol) {
      process.stdout.write(`\n${cvTable(runs.slice(from))}\n`);
      from = runs.length;
    }
  }
  if (results !== undefined) await writeOut(results, `${JSON.stringify({ data: ctx.dataDir, cv: runs }, null, 2)}\n`);
}

export async function evalCommand(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parseEvalArgs>;
  try {
    args = parseEvalArgs(argv);
  } catch (err) {
    process.stderr.write(`signalman eval: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, protocols, recipes, bootstrap, folds, robustness, jobs: lanes } = args;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const ctx: RunContext = { dataDir: values.data, cacheDir: values['no-cache'] ? null : values['cache-dir'] };
  const pool = new EmbedderPool();
  if (folds !== undefined)
    return closing(pool, () =>
      crossValidateAll(
        protocols.filter(isCvProtocol),
        recipes,
        {
          folds,
          robustness: robustness !== undefined,
          serial: values.serial,
          extra: values['cv-extra'],
          // One recipe per core at a time, at most 4 by default: each thread holds a protocol's vectors and copies.
          jobs: lanes ?? Math.min(availableParallelism(), 4),
        },
        values.results,
        pool,
        ctx,
      ),
    );
  const jobs: ProtocolJob[] = protocols.map((protocol) => ({
    protocol,
    recipes: recipes(protocol).map((r) => r.name),
    bootstrap,
    ...(values.test === undefined ? {} : { testFiles: values.test }),
    ...(robustness === undefined ? {} : { robustness }),
    ctx,
  }));
  return closing(pool, async () => {
    const reports =
      values.serial || jobs.length === 1
        ? inTurn(jobs, (job) => reportProtocol(job, pool))
        : // All three at once by default, on any machine: P3 (the longest) is on a core from the start.
          sideBySide(
            jobs.map((job) => ({ what: job.protocol, start: () => inThread({ kind: 'report', job }) })),
            lanes ?? jobs.length,
          );
    const all: ProtocolReport[] = [];
    // Printed and written in protocol order, each as soon as it and those before it are done.
    for (const pending of reports) {
      const r = await pending;
      process.stdout.write(r.text);
      if (values.dump !== undefined) await writeOut(values.dump, r.dump);
      if (values['dump-dir'] !== undefined) await writeOut(join(values['dump-dir'], `${r.protocol}.jsonl.gz`), r.dump);
      all.push(r);
    }
    if (values.results !== undefined) {
      await writeOut(values.results, `${JSON.stringify({ data: values.data, runs: all.flatMap((r) => r.summaries) }, null, 2)}\n`);
    }
    if (values.plot !== undefined) {
      const ps = all.flatMap((r) => r.panels);
      if (ps.length > 0) await writeCurvesPng(values.plot, ps);
    }
  });
}

/** One job after another in this thread (progress bars on a terminal): each starts when the caller asks for the next. */
function* inTurn<J, T>(jobs: readonly J[], run: (job: J) => Promise<T>): Generator<Promise<T>> {
  for (const job of jobs) yield run(job);
}

/**
 * Starts each job in a thread of its own, at most `lanes` at a time, in order; the promises settle in any
 * order and are awaited in order by the caller. The first failure stops every thread and is what each
 * unfinished job reports.
 */
function sideBySide<T>(jobs: ReadonlyArray<{ what: string; start: () => InThread<T> }>, lanes: number): Array<Promise<T>> {
  const t0 = performance.now();
  const running = new Set<InThread<T>>();
  let failure: { err: unknown } | undefined;
  let next = 0;
  const settle = jobs.map(() => {
    const d = {} as { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void };
    d.promise = new Promise<T>((res, rej) => ((d.resolve = res), (d.reject = rej)));
    return d;
  });
  const launch = (): void => {
    while (failure === undefined && next < jobs.length && running.size < lanes) {
      const i = next++;
      const t = jobs[i]!.start();
      running.add(t);
      t.result.then(
        (r) => {
          running.delete(t);
          // The tables tell nothing of time; a line per job on stderr shows a long run moving.
          process.stderr.write(`signalman eval: ${jobs[i]!.what} done after ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
          settle[i]!.resolve(r);
          launch();
        },
        async (err: unknown) => {
          running.delete(t);
          if (failure === undefined) {
            failure = { err };
            await Promise.allSettled([...running].map((x) => x.stop()));
            for (const s of settle) s.reject(err); // no effect on the ones already settled
          }
        },
      );
    }
  };
  launch();
  for (const s of settle) s.promise.catch(() => {}); // awaited in order by the caller, which stops at the first rejection
  return settle.map((s) => s.promise);
}
