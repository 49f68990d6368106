// What latency, CPU and memory does Signalman add over calling the upstream directly, and how does that
// compare with Portkey's open-source gateway on the same machine, in the same run?
//
// Targets, all in front of one mock upstream (separate processes): direct (the mock itself), signalman
// (pass-through: `model` names a backend; telemetry on: access log, metrics, memory records and a Redis
// sink writing to the bench's own redis-server), signalman-off (the same with all telemetry off),
// signalman-keys (off, plus one client key whose requests-per-minute limit is counted in that Redis),
// bare-proxy (the floor), portkey (`x-portkey-custom-host`). For each round, for each
// mode and concurrency, every target runs back to back in an order that rotates, so machine noise hits
// all alike; the report takes the median over rounds, and "added" is target minus direct in the same round.
import { request } from 'undici';
import { intEnv, intListEnv, listEnv, optionalIntEnv } from './lib/knobs.js';
import { runLoad, summarize } from './lib/loadgen.js';
import { describeMachine, machine, stamp } from './lib/machine.js';
import { cpuSeconds, machineBusySeconds, rssBytes } from './lib/proc.js';
import { writeResults } from './lib/report.js';
import {
  redisCommand,
  SIGNALMAN_BACKEND,
  startBareProxy,
  startMock,
  startPortkey,
  startRedis,
  startSignalman,
  type ServerProc,
} from './lib/servers.js';
import { aggregate, printOverhead, verdicts, type CellResult, type MedianRow, type Mode, type TargetName } from './lib/overhead-summary.js';

const ALL_TARGETS = [
  'direct',
  'signalman',
  'signalman-off',
  'signalman-keys',
  'bare-proxy',
  'portkey',
] as const satisfies readonly TargetName[];

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
  if (/(^|,)\s*signalman-nolog\s*(,|$)/.test(process.env.TARGETS ?? '')) {
    throw new Error('TARGETS: signalman-nolog is gone; signalman-off is Signalman with all telemetry (access log included) off');
  }
  const targets = listEnv('TARGETS', ALL_TARGETS, ALL_TARGETS);
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

/** The bench's own Redis for telemetry on, and the key prefix that gateway writes under. */
interface BenchRedis {
  proc: ServerProc & { port: number; url: string };
  keyPrefix: string;
}

async function startTargets(k: OverheadKnobs, mock: ServerProc, redis: BenchRedis | null, notes: string[]): Promise<Target[]> {
  const base = { 'content-type': 'application/json', authorization: 'Bearer bench' };
  const out: Target[] = [{ name: 'direct', proc: mock, headers: base, model: 'gpt-4o-mini' }];
  for (const name of k.targets) {
    try {
      if (name === 'signalman') {
        if (redis === null) continue; // its Redis could not start: already noted
        const telemetry = { on: true, redisUrl: redis.proc.url, keyPrefix: redis.keyPrefix } as const;
        const proc = await startSignalman(mock.origin, { name, telemetry });
        out.push({ name, proc, headers: base, model: SIGNALMAN_BACKEND });
      } else if (name === 'signalman-off') {
        const proc = await startSignalman(mock.origin, { name, telemetry: { on: false } });
        out.push({ name, proc, headers: base, model: SIGNALMAN_BACKEND });
      } else if (name === 'signalman-keys') {
        if (redis === null) continue;
        const key = { secret: 'sk-bench-key', redisUrl: redis.proc.url, keyPrefix: `${redis.keyPrefix}keys:` };
        const proc = await startSignalman(mock.origin, { name, telemetry: { on: false }, key });
        out.push({ name, proc, headers: { ...base, authorization: `Bearer ${key.secret}` }, model: SIGNALMAN_BACKEND });
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

/** This process's (the load generator's) CPU time in seconds. */
function cpuUsageSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

async function measure(
  t: Target,
  mock: ServerProc,
  redis: BenchRedis | null,
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
  // The Redis the telemetry-on gateway writes to: its CPU is telemetry's too, on the same cores.
  const redisPid = t.name === 'signalman' && redis !== null ? redis.proc.pid : null;
  let redisCpu0 = Number.NaN;
  let redisCpu1 = Number.NaN;
  let loadgen0 = 0;
  let loadgen1 = 0;
  let machine0 = Number.NaN;
  let machine1 = Number.NaN;
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
        if (redisPid !== null) redisCpu0 = cpuSeconds(redisPid) ?? Number.NaN;
        loadgen0 = cpuUsageSeconds();
        machine0 = machineBusySeconds() ?? Number.NaN;
      } else {
        cpu1 = cpuSeconds(t.proc.pid) ?? Number.NaN;
        mockCpu1 = cpuSeconds(mock.pid) ?? Number.NaN;
        if (redisPid !== null) redisCpu1 = cpuSeconds(redisPid) ?? Number.NaN;
        loadgen1 = cpuUsageSeconds();
        machine1 = machineBusySeconds() ?? Number.NaN;
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
    redisCpuUsPerReq: n > 0 ? ((redisCpu1 - redisCpu0) * 1e6) / n : Number.NaN,
    loadgenCpuUsPerReq: n > 0 ? ((loadgen1 - loadgen0) * 1e6) / n : Number.NaN,
    machineCpuUsPerReq: n > 0 ? ((machine1 - machine0) * 1e6) / n : Number.NaN,
    rssBytes: rssBytes(t.proc.pid) ?? Number.NaN,
  };
}

/** Did telemetry on really run? Read once after the last cell, before the gateways stop. */
interface TelemetryCheck {
  /** HTTP status of the telemetry-on gateway's GET /metrics. */
  metricsStatus: number | null;
  /** Sum over the `signalman_requests_total` series (every finished request, warm-ups included). */
  requestsTotal: number | null;
  requestsSeries: number;
  /** The Redis sink's own counters from /metrics (`signalman_telemetry_*_records_total{sink="redis"}`). */
  redisWritten: number | null;
  redisDropped: number | null;
  /** The records stream in the bench's Redis and its XLEN (capped near telemetry.redis.stream_max_len). */
  redisKey: string | null;
  redisXlen: number | null;
  /** redis-server CPU over the whole run / requestsTotal. */
  redisCpuUsPerReq: number | null;
  /** Measured (not warm-up) requests the telemetry-on gateway answered. */
  measuredRequests: number;
  /** HTTP status of signalman-off's GET /metrics: 404 when metrics are really off. */
  offMetricsStatus: number | null;
  problems: string[];
}

/** Sums the samples of one metric in Prometheus text format; returns the sum and the series count. */
function sumMetric(text: string, name: string, labelFilter = ''): { sum: number; series: number } {
  let sum = 0;
  let series = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (labelFilter !== '' && !line.includes(labelFilter)) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) {
      sum += v;
      series++;
    }
  }
  return { sum, series };
}

async function getText(url: string): Promise<{ status: number; text: string }> {
  const res = await request(url, { headersTimeout: 5000, bodyTimeout: 5000 });
  return { status: res.statusCode, text: await res.body.text() };
}

async function checkTelemetry(
  k: OverheadKnobs,
  targets: readonly Target[],
  redis: BenchRedis | null,
  cells: readonly CellResult[],
): Promise<TelemetryCheck> {
  const on = targets.find((t) => t.name === 'signalman');
  const off = targets.find((t) => t.name === 'signalman-off');
  const out: TelemetryCheck = {
    metricsStatus: null,
    requestsTotal: null,
    requestsSeries: 0,
    redisWritten: null,
    redisDropped: null,
    redisKey: redis === null ? null : `${redis.keyPrefix}records`,
    redisXlen: null,
    redisCpuUsPerReq: null,
    measuredRequests: cells.filter((c) => c.target === 'signalman').reduce((s, c) => s + c.requests, 0),
    offMetricsStatus: null,
    problems: [],
  };
  if (off !== undefined) {
    try {
      out.offMetricsStatus = (await getText(`${off.proc.origin}/metrics`)).status;
      if (out.offMetricsStatus !== 404)
        out.problems.push(`signalman-off answers GET /metrics with ${out.offMetricsStatus}, not 404: metrics are not off`);
    } catch (err) {
      out.problems.push(`signalman-off GET /metrics failed: ${(err as Error).message}`);
    }
  }
  if (!k.targets.includes('signalman')) return out;
  if (on === undefined || redis === null) {
    out.problems.push('signalman (telemetry on) did not run: see the notes above');
    return out;
  }
  // The Redis sink flushes every 100 ms by default: let the last batch land before counting.
  await new Promise((r) => setTimeout(r, 500));
  try {
    const m = await getText(`${on.proc.origin}/metrics`);
    out.metricsStatus = m.status;
    if (m.status !== 200) throw new Error(`HTTP ${m.status}`);
    const req = sumMetric(m.text, 'signalman_requests_total');
    out.requestsTotal = req.sum;
    out.requestsSeries = req.series;
    const written = sumMetric(m.text, 'signalman_telemetry_written_records_total', 'sink="redis"');
    const dropped = sumMetric(m.text, 'signalman_telemetry_dropped_records_total', 'sink="redis"');
    out.redisWritten = written.series > 0 ? written.sum : null;
    out.redisDropped = dropped.series > 0 ? dropped.sum : null;
    if (!(req.sum > 0)) out.problems.push(`GET /metrics: signalman_requests_total sums to ${req.sum} over ${req.series} series`);
    if (req.sum < out.measuredRequests)
      out.problems.push(`GET /metrics: signalman_requests_total ${req.sum} < the ${out.measuredRequests} measured requests it answered`);
    if ((out.redisDropped ?? 0) > 0) out.problems.push(`the Redis sink dropped ${out.redisDropped} records`);
  } catch (err) {
    out.problems.push(`GET /metrics of signalman failed: ${(err as Error).message}`);
  }
  try {
    const n = await redisCommand(redis.proc.port, ['XLEN', out.redisKey!]);
    out.redisXlen = typeof n === 'number' ? n : null;
    if (!(typeof n === 'number' && n > 0)) out.problems.push(`Redis XLEN ${out.redisKey} = ${String(n)}: no records written`);
  } catch (err) {
    out.problems.push(`Redis XLEN ${out.redisKey} failed: ${(err as Error).message}`);
  }
  const redisCpu = cpuSeconds(redis.proc.pid);
  if (redisCpu !== null && out.requestsTotal !== null && out.requestsTotal > 0) out.redisCpuUsPerReq = (redisCpu * 1e6) / out.requestsTotal;
  return out;
}

function printTelemetryCheck(t: TelemetryCheck, rows: readonly MedianRow[]): void {
  const show = (v: number | null, digits = 0) => (v === null ? '-' : v.toFixed(digits));
  console.log('\nTelemetry check (signalman = telemetry on; read once after the last cell, before the gateways stop)');
  if (t.metricsStatus !== null || t.requestsTotal !== null) {
    console.log(
      `${(t.requestsTotal ?? 0) > 0 ? 'PASS' : 'FAIL'}  GET /metrics: signalman_requests_total = ${show(t.requestsTotal)} over ${t.requestsSeries} series (${t.measuredRequests} measured requests, warm-ups not counted)`,
    );
  }
  if (t.redisKey !== null && (t.redisXlen !== null || t.metricsStatus !== null)) {
    console.log(
      `${(t.redisXlen ?? 0) > 0 ? 'PASS' : 'FAIL'}  Redis XLEN ${t.redisKey} = ${show(t.redisXlen)} (${[
        ...(t.redisWritten === null ? [] : [`Redis sink wrote ${show(t.redisWritten)}`]),
        `dropped ${show(t.redisDropped)}`,
        `redis-server CPU ${show(t.redisCpuUsPerReq, 1)} us per request over the whole run`,
      ].join(', ')})`,
    );
  }
  for (const r of rows) {
    if (r.target !== 'signalman' || Number.isNaN(r.redisCpuUsPerReq)) continue;
    console.log(
      `INFO  redis-server CPU per request, ${r.mode} c=${r.concurrency}: ${r.redisCpuUsPerReq.toFixed(1)} us (not in the gateway's CPU us/req; same cores)`,
    );
  }
  if (t.offMetricsStatus !== null)
    console.log(
      `${t.offMetricsStatus === 404 ? 'PASS' : 'FAIL'}  signalman-off: GET /metrics -> ${t.offMetricsStatus} (404 = metrics off)`,
    );
  for (const p of t.problems) console.log(`!!! TELEMETRY CHECK FAILED: ${p}`);
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
  let redis: BenchRedis | null = null;
  let telemetry: TelemetryCheck;
  try {
    if (k.targets.includes('signalman') || k.targets.includes('signalman-keys')) {
      try {
        redis = { proc: await startRedis(), keyPrefix: `bench:${stamp(started)}:` };
      } catch (err) {
        notes.push(`!!! signalman and signalman-keys skipped: their Redis could not start: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    targets = await startTargets(k, mock, redis, notes);
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
            const cell = await measure(t, mock, redis, mode, c, k, round, position);
            cells.push(cell);
            line.push(`${t.name} ${Math.round(cell.rps)}/s p50 ${cell.totalMs.p50.toFixed(3)}${cell.errors ? ` ERR ${cell.errors}` : ''}`);
            if (cell.errors > 0)
              notes.push(`round ${round + 1} ${mode} c=${c} ${t.name}: ${cell.errors} errors, first: ${cell.firstError}`);
          }
          console.log(`round ${round + 1}/${k.rounds} ${mode.padEnd(6)} c=${String(c).padEnd(3)} ${line.join(' | ')}`);
        }
      }
    }
    telemetry = await checkTelemetry(k, targets, redis, cells);
  } finally {
    // The gateways first (telemetry on flushes its last records to Redis as it stops), then its Redis.
    for (const t of targets) if (t.proc !== mock) await t.proc.stop();
    await redis?.proc.stop();
    await mock.stop();
  }

  const rows = aggregate(cells);
  const checks = verdicts(rows);
  printOverhead(rows, checks);
  printTelemetryCheck(telemetry, rows);
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
    telemetry,
    cells,
  });
  console.log(`\nwrote ${file} (and bench/results/latest-overhead.json)`);
  // The bare proxy's checks are a reference, not Signalman's score.
  return { file, failed: checks.filter((c) => c.pass === false && c.target !== 'bare-proxy').length + telemetry.problems.length };
}
