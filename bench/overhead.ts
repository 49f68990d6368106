// What latency, CPU and memory does Signalman add over calling the upstream directly, and how does that
// compare with Portkey's open-source gateway on the same machine, in the same run?
//
// Targets, all in front of one mock upstream (separate processes): direct (the mock itself), signalman
// (pass-through: `model` names a backend), portkey (`x-portkey-custom-host`). For each round, for each
// mode and concurrency, every target runs back to back in an order that rotates, so machine noise hits
// all alike; the report takes the median over rounds, and "added" is target minus direct in the same round.
import { intEnv, intListEnv, listEnv, optionalIntEnv } from './lib/knobs.js';
import { runLoad, summarize } from './lib/loadgen.js';
import { describeMachine, machine, stamp } from './lib/machine.js';
import { cpuSeconds, rssBytes } from './lib/proc.js';
import { writeResults } from './lib/report.js';
import { SIGNALMAN_BACKEND, startBareProxy, startMock, startPortkey, startSignalman, type ServerProc } from './lib/servers.js';
import { aggregate, printOverhead, verdicts, type CellResult, type Mode, type TargetName } from './lib/overhead-summary.js';

const ALL_TARGETS = ['direct', 'signalman', 'signalman-nolog', 'portkey', 'bare-proxy'] as const satisfies readonly TargetName[];

export interface OverheadKnobs {
  rounds: number;
  durationMs: number;
  warmupMs: number;
  /** Load per target and mode once before round 1, so the servers' JIT is warm for every round. */
  prewarmMs: number;
  requests: number | undefined;
  concurrency: number[];
  targets: TargetName[];
  modes: Mode[];
}

export function overheadKnobs(): OverheadKnobs {
  const targets = listEnv('TARGETS', ['direct', 'signalman', 'portkey', 'bare-proxy'], ALL_TARGETS);
  if (!targets.includes('direct')) targets.unshift('direct'); // every "added" number is relative to it
  return {
    rounds: intEnv('ROUNDS', 5, 1),
    durationMs: intEnv('DURATION_MS', 2000, 100),
    warmupMs: intEnv('WARMUP_MS', 300, 0),
    prewarmMs: intEnv('PREWARM_MS', 1000, 0),
    requests: optionalIntEnv('REQUESTS', 1),
    concurrency: intListEnv('CONCURRENCY', [1, 16, 64], 1),
    targets,
    modes: listEnv('MODES', ['plain', 'stream'], ['plain', 'stream'] as const),
  };
}

interface Target {
  name: TargetName;
  proc: ServerProc;
  headers: Record<string, string>;
  model: string;
}

const PATH = '/v1/chat/completions';
const PROMPT = 'Benchmark request: answer in one short sentence.';

function bodyFor(t: Target, mode: Mode): string {
  return JSON.stringify({ model: t.model, messages: [{ role: 'user', content: PROMPT }], ...(mode === 'stream' ? { stream: true } : {}) });
}

const check = (mode: Mode) => (_status: number, body: string) =>
  mode === 'stream' ? body.includes('data: [DONE]') && body.includes('chat.completion.chunk') : body.includes('"chat.completion"');

async function startTargets(k: OverheadKnobs, mock: ServerProc, notes: string[]): Promise<Target[]> {
  const base = { 'content-type': 'application/json', authorization: 'Bearer bench' };
  const out: Target[] = [{ name: 'direct', proc: mock, headers: base, model: 'gpt-4o-mini' }];
  for (const name of k.targets) {
    try {
      if (name === 'signalman' || name === 'signalman-nolog') {
        const proc = await startSignalman(mock.origin, { accessLog: name === 'signalman', name });
        out.push({ name, proc, headers: base, model: SIGNALMAN_BACKEND });
      } else if (name === 'bare-proxy') {
        const proc = await startBareProxy(mock.origin);
        out.push({ name, proc, headers: base, model: 'gpt-4o-mini' });
      } else if (name === 'portkey') {
        const proc = await startPortkey();
        const headers = { ...base, 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${mock.origin}/v1` };
        out.push({ name, proc, headers, model: 'gpt-4o-mini' });
      }
    } catch (err) {
      notes.push(`${name} skipped: could not start (${(err as Error).message.split('\n')[0]})`);
    }
  }
  // One checked request per target and mode before measuring: a broken target is reported and dropped,
  // and the rest of the bench still runs.
  const ok: Target[] = [];
  for (const t of out) {
    let failure: string | null = null;
    for (const mode of k.modes) {
      const r = await runLoad({
        origin: t.proc.origin,
        path: PATH,
        headers: t.headers,
        body: bodyFor(t, mode),
        concurrency: 1,
        warmupMs: 0,
        durationMs: 0,
        requests: 3,
        maxMs: 10_000,
        check: check(mode),
        stopOnError: true,
      });
      if (r.errors > 0 || r.ok === 0) failure ??= `${mode}: ${r.firstError ?? 'no answer'}`;
    }
    if (failure === null || t.name === 'direct') {
      if (failure !== null) throw new Error(`the mock upstream itself fails (${failure}); nothing to compare against`);
      ok.push(t);
    } else {
      notes.push(`${t.name} dropped: its preflight request failed (${failure}). Output: ${t.proc.output().slice(-500)}`);
      if (t.proc !== out[0]!.proc) await t.proc.stop();
    }
  }
  return ok;
}

async function measure(
  t: Target,
  mock: ServerProc,
  mode: Mode,
  c: number,
  k: OverheadKnobs,
  round: number,
  position: number,
): Promise<CellResult> {
  let cpu0 = 0;
  let mockCpu0 = 0;
  let cpu1 = 0;
  let mockCpu1 = 0;
  const r = await runLoad({
    origin: t.proc.origin,
    path: PATH,
    headers: t.headers,
    body: bodyFor(t, mode),
    concurrency: c,
    warmupMs: k.warmupMs,
    durationMs: k.durationMs,
    requests: k.requests,
    check: check(mode),
    onWindow: (edge) => {
      if (edge === 'start') {
        cpu0 = cpuSeconds(t.proc.pid) ?? Number.NaN;
        mockCpu0 = cpuSeconds(mock.pid) ?? Number.NaN;
      } else {
        cpu1 = cpuSeconds(t.proc.pid) ?? Number.NaN;
        mockCpu1 = cpuSeconds(mock.pid) ?? Number.NaN;
      }
    },
  });
  const n = r.totalMs.length;
  return {
    round,
    mode,
    concurrency: c,
    target: t.name,
    position,
    requests: n,
    errors: r.errors,
    firstError: r.firstError,
    elapsedS: r.elapsedS,
    rps: n / r.elapsedS,
    totalMs: summarize(r.totalMs),
    ttfbMs: summarize(r.ttfbMs),
    cpuUsPerReq: n > 0 ? ((cpu1 - cpu0) * 1e6) / n : Number.NaN,
    upstreamCpuUsPerReq: n > 0 ? ((mockCpu1 - mockCpu0) * 1e6) / n : Number.NaN,
    rssBytes: rssBytes(t.proc.pid) ?? Number.NaN,
  };
}

export async function runOverheadBench(): Promise<{ file: string; failed: number }> {
  const k = overheadKnobs();
  const m = machine();
  const started = new Date();
  console.log(`# overhead: direct vs gateways over one mock upstream`);
  console.log(`machine: ${describeMachine(m)}`);
  const windowText = k.requests !== undefined ? `${k.requests} requests` : `${k.durationMs} ms`;
  console.log(
    `knobs: ROUNDS=${k.rounds} ${k.requests !== undefined ? 'REQUESTS' : 'DURATION_MS'}=${k.requests ?? k.durationMs} WARMUP_MS=${k.warmupMs} PREWARM_MS=${k.prewarmMs} CONCURRENCY=${k.concurrency.join(',')} TARGETS=${k.targets.join(',')} MODES=${k.modes.join(',')} (${windowText} per cell)`,
  );
  if (m.loadAvg1 > m.cores * 0.5)
    console.log(`note: load average ${m.loadAvg1} on ${m.cores} cores: the machine is busy, expect wider tails`);

  const notes: string[] = [];
  const mock = await startMock();
  const cells: CellResult[] = [];
  let targets: Target[] = [];
  try {
    targets = await startTargets(k, mock, notes);
    for (const n of notes) console.log(`note: ${n}`);
    if (k.prewarmMs > 0) {
      for (const t of targets) {
        for (const mode of k.modes) {
          await runLoad({
            origin: t.proc.origin,
            path: PATH,
            headers: t.headers,
            body: bodyFor(t, mode),
            concurrency: Math.max(...k.concurrency),
            warmupMs: 0,
            durationMs: k.prewarmMs,
          });
        }
      }
    }
    for (let round = 0; round < k.rounds; round++) {
      let cellIndex = 0;
      for (const mode of k.modes) {
        for (const c of k.concurrency) {
          const shift = (round + cellIndex++) % targets.length;
          const order = [...targets.slice(shift), ...targets.slice(0, shift)];
          const line: string[] = [];
          for (const [position, t] of order.entries()) {
            const cell = await measure(t, mock, mode, c, k, round, position);
            cells.push(cell);
            line.push(`${t.name} ${Math.round(cell.rps)}/s p50 ${cell.totalMs.p50.toFixed(3)}${cell.errors ? ` ERR ${cell.errors}` : ''}`);
            if (cell.errors > 0)
              notes.push(`round ${round + 1} ${mode} c=${c} ${t.name}: ${cell.errors} errors, first: ${cell.firstError}`);
          }
          console.log(`round ${round + 1}/${k.rounds} ${mode.padEnd(6)} c=${String(c).padEnd(3)} ${line.join(' | ')}`);
        }
      }
    }
  } finally {
    for (const t of targets) if (t.proc !== mock) await t.proc.stop();
    await mock.stop();
  }

  const rows = aggregate(cells);
  const checks = verdicts(rows);
  printOverhead(rows, checks);
  const endMachine = machine();
  for (const n of notes) console.log(`note: ${n}`);
  const file = writeResults('overhead', stamp(started), {
    suite: 'overhead',
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: m,
    loadAvg1AtEnd: endMachine.loadAvg1,
    knobs: k,
    notes,
    targets: targets.map((t) => t.name),
    medians: rows,
    verdicts: checks,
    cells,
  });
  console.log(`\nwrote ${file} (and bench/results/latest-overhead.json)`);
  // The bare proxy's checks are a reference, not Signalman's score.
  return { file, failed: checks.filter((c) => c.pass === false && c.target !== 'bare-proxy').length };
}
