import { performance } from 'node:perf_hooks';
import { EmbedderPool, type RunContext } from './fit.js';
import type { Panel } from './plot.js';
import { runP1, type P1Run } from './protocols/p1.js';
import { runP2, type P2Run } from './protocols/p2.js';
import { runP3, type P3Run } from './protocols/p3.js';
import { type Protocol, findRecipe } from './recipes.js';
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
  /** Wall time of the job. */
  seconds: number;
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
  const t0 = performance.now();
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
    seconds: (performance.now() - t0) / 1000,
  };
}

/** reportProtocol() in a worker thread of its own (own embedders, no progress bars: threads would interleave them). */
export function reportProtocolInThread(job: ProtocolJob): { report: Promise<ProtocolReport>; stop: () => Promise<void> } {
  const { worker: file, tsLoader } = workerFileFor(import.meta.url, 'protocol.worker');
  const worker = newWorker(file, tsLoader, {
    workerData: { ...job, ctx: { ...job.ctx, progress: false } },
    name: `signalman-eval-${job.protocol}`,
  });
  const report = new Promise<ProtocolReport>((resolve, reject) => {
    let got: ProtocolReport | undefined;
    worker.once('message', (m: ProtocolReport) => (got = m));
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (got !== undefined) resolve(got);
      else reject(new Error(`${job.protocol}: its thread stopped (exit code ${code}) before reporting`));
    });
  });
  return {
    report,
    stop: async () => {
      await worker.terminate();
    },
  };
}
