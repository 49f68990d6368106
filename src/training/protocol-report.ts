import { EmbedderPool, type RunContext } from './fit.js';
import type { Panel } from './plot.js';
import { runP1, type P1Run } from './protocols/p1.js';
import { runP2, type P2Run } from './protocols/p2.js';
import { runP3, type P3Run } from './protocols/p3.js';
import { type Protocol, findRecipe } from './recipes.js';
import { type CvProtocol, type CvRun, crossValidate } from './cv.js';
import { type Run, p1Table, p2Table, p3Table, panels, summarize } from './report.js';
import { robustnessTable } from './report-robustness.js';
import type { RobustnessOptions } from './robustness.js';
import { newWorker, workerFileFor } from '../embedders/worker-pool.js';

// One protocol's share of `signalman eval`: its recipes run, and what the command prints and writes of
// them, as plain data. The same function serves a run in this thread and one in a worker thread, so a
// protocol reports the same bytes either way; the three protocols share nothing but the disk cache,
// so `eval` runs them side by side (a cold `npm run eval` is mostly training, one core per protocol).

export interface ProtocolJob {
  protocol: Protocol;
  /** Recipe names (findRecipe), in the order their rows are printed; the first one's dump is written. */
  recipes: string[];
  /** P1's bootstrap resamples. */
  bootstrap: number;
  /** Score these files instead of the protocol's test sets (P2 and P3 read the first). */
  testFiles?: string[];
  robustness?: RobustnessOptions;
  ctx: RunContext;
}

export interface ProtocolReport {
  protocol: Protocol;
  /** The tables, as `eval` prints them. */
  text: string;
  /** The first recipe's per-prompt dump, JSONL. */
  dump: string;
  /** summarize() of each run, for the results JSON. */
  summaries: unknown[];
  /** This protocol's panels of the curves PNG (none for P3). */
  panels: Panel[];
}

const jsonl = (rows: readonly object[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

function runOne(job: ProtocolJob, name: string, pool: EmbedderPool): Promise<Run> {
  const common = { recipe: findRecipe(name), pool, ...(job.robustness === undefined ? {} : { robustness: job.robustness }) };
  const test = job.testFiles?.[0];
  if (job.protocol === 'p1')
    return runP1({ ...common, bootstrap: job.bootstrap, ...(job.testFiles === undefined ? {} : { testFiles: job.testFiles }) }, job.ctx);
  if (job.protocol === 'p2') return runP2({ ...common, ...(test === undefined ? {} : { testFile: test }) }, job.ctx);
  return runP3({ ...common, ...(test === undefined ? {} : { testFile: test }) }, job.ctx);
}

/** Runs the job's recipes one after another in this thread, with `pool`'s embedders. */
export async function reportProtocol(job: ProtocolJob, pool: EmbedderPool): Promise<ProtocolReport> {
  const done: Run[] = [];
  for (const name of job.recipes) done.push(await runOne(job, name, pool));
  const table =
    job.protocol === 'p1' ? p1Table(done as P1Run[]) : job.protocol === 'p2' ? p2Table(done as P2Run[]) : p3Table(done as P3Run[]);
  const robust = robustnessTable(done);
  return {
    protocol: job.protocol,
    text: `\n${table}\n${robust === '' ? '' : `\n${robust}\n`}`,
    dump: jsonl(done[0]?.dump ?? []),
    summaries: done.map(summarize),
    panels: panels(done),
  };
}

/** One recipe's cross-validation (cv.ts), as a job a thread can take. */
export interface CvJob {
  protocol: CvProtocol;
  recipe: string;
  folds: number;
  robustness: boolean;
  /** P3: CvOptions.extraFolds. */
  extraFolds?: string;
  ctx: RunContext;
}

/** What protocol.worker.ts is asked to do. */
export type ThreadJob = { kind: 'report'; job: ProtocolJob } | { kind: 'cv'; job: CvJob };

export const crossValidateJob = (job: CvJob, pool: EmbedderPool): Promise<CvRun> =>
  crossValidate(
    job.protocol,
    {
      recipe: findRecipe(job.recipe),
      pool,
      folds: job.folds,
      robustness: job.robustness,
      ...(job.extraFolds === undefined ? {} : { extraFolds: job.extraFolds }),
    },
    job.ctx,
  );

export interface InThread<T> {
  result: Promise<T>;
  stop: () => Promise<void>;
}

/** A job in a worker thread of its own (own embedders, no progress bars: threads would interleave them). */
export function inThread(job: { kind: 'report'; job: ProtocolJob }): InThread<ProtocolReport>;
export function inThread(job: { kind: 'cv'; job: CvJob }): InThread<CvRun>;
export function inThread(job: ThreadJob): InThread<ProtocolReport | CvRun> {
  const { worker: file, tsLoader } = workerFileFor(import.meta.url, 'protocol.worker');
  const ctx = { ...job.job.ctx, progress: false };
  const data: ThreadJob = job.kind === 'cv' ? { kind: 'cv', job: { ...job.job, ctx } } : { kind: 'report', job: { ...job.job, ctx } };
  const what = job.kind === 'cv' ? `${job.job.protocol} ${job.job.recipe}` : job.job.protocol;
  const worker = newWorker(file, tsLoader, { workerData: data, name: `signalman-eval ${what}` });
  const result = new Promise<ProtocolReport | CvRun>((resolve, reject) => {
    let got: ProtocolReport | CvRun | undefined;
    worker.once('message', (m: ProtocolReport | CvRun) => (got = m));
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (got !== undefined) resolve(got);
      else reject(new Error(`${what}: its thread stopped (exit code ${code}) before reporting`));
    });
  });
  return {
    result,
    stop: async () => {
      await worker.terminate();
    },
  };
}
