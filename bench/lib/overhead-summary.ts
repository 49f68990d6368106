// Turns every cell of every round into medians per (mode, concurrency, target), checks the issue's
// targets, and prints the side-by-side tables.
import type { LatencySummary } from './loadgen.js';
import { fmt, median, printTable, type Cell } from './report.js';

export type Mode = 'plain' | 'stream';
/**
 * `signalman` runs with telemetry on (access log, metrics, memory records, Redis), `signalman-off` with it all off,
 * `signalman-keys` like off plus one client key whose requests-per-minute limit is counted in Redis.
 */
export type TargetName = 'direct' | 'signalman' | 'signalman-off' | 'signalman-keys' | 'portkey' | 'bare-proxy';

/** One target measured once: one mode, one concurrency, one round. */
export interface CellResult {
  round: number;
  mode: Mode;
  concurrency: number;
  target: TargetName;
  /** Place in that round's rotated order (0 = ran first). */
  position: number;
  requests: number;
  errors: number;
  firstError: string | null;
  elapsedS: number;
  rps: number;
  totalMs: LatencySummary;
  /** Time to the first body chunk; equals total for plain answers sent in one write. */
  ttfbMs: LatencySummary;
  /** Server process CPU (utime+stime) over the window / requests; for `direct` that is the mock's. */
  cpuUsPerReq: number;
  /** The mock upstream's CPU per request in the same window. */
  upstreamCpuUsPerReq: number;
  /** The bench Redis's CPU per request in the same window (telemetry on only; NaN otherwise). */
  redisCpuUsPerReq: number;
  /** The load generator's (this process's) CPU per request in the same window. */
  loadgenCpuUsPerReq: number;
  /** Every busy core of the machine per request in the same window: what the req/s ratios follow on a saturated box. */
  machineCpuUsPerReq: number;
  rssBytes: number;
}

/**
 * Medians over rounds; `added*` and `xDirect` are per-round differences/ratios to direct, then the median;
 * `xBare` and `cpuMinusOffUs` likewise to bare-proxy and to signalman-off (NaN when that target did not run).
 */
export interface MedianRow {
  mode: Mode;
  concurrency: number;
  target: TargetName;
  rounds: number;
  p50: number;
  p90: number;
  p99: number;
  ttfbP50: number;
  ttfbP99: number;
  addedP50: number;
  addedP90: number;
  addedP99: number;
  addedTtfbP50: number;
  addedTtfbP99: number;
  rps: number;
  xDirect: number;
  /** req/s / bare-proxy's req/s in the same round, then the median. */
  xBare: number;
  /** req/s / signalman-off's (the pass-through) in the same round, then the median. */
  xOff: number;
  cpuUsPerReq: number;
  /** CPU us per request minus signalman-off's in the same round, then the median. */
  cpuMinusOffUs: number;
  upstreamCpuUsPerReq: number;
  redisCpuUsPerReq: number;
  loadgenCpuUsPerReq: number;
  machineCpuUsPerReq: number;
  rssBytes: number;
  errors: number;
}

export function aggregate(cells: readonly CellResult[]): MedianRow[] {
  const key = (c: { mode: string; concurrency: number; target: string }) => `${c.mode}|${c.concurrency}|${c.target}`;
  // The same cell (mode, concurrency, round) of the reference targets: every comparison is within a round.
  const sameRound = (c: CellResult) => `${c.mode}|${c.concurrency}|${c.round}`;
  const refs = (t: TargetName) => new Map(cells.filter((c) => c.target === t).map((c) => [sameRound(c), c] as const));
  const direct = refs('direct');
  const bare = refs('bare-proxy');
  const off = refs('signalman-off');
  const groups = new Map<string, CellResult[]>();
  for (const c of cells) {
    const g = groups.get(key(c));
    if (g) g.push(c);
    else groups.set(key(c), [c]);
  }
  const rows: MedianRow[] = [];
  for (const g of groups.values()) {
    const first = g[0]!;
    const pairs = g.map((c) => ({ c, d: direct.get(sameRound(c)) }));
    const diff = (f: (x: CellResult) => number) => median(pairs.map(({ c, d }) => (d ? f(c) - f(d) : Number.NaN)));
    const vs = (ref: Map<string, CellResult>, f: (c: CellResult, r: CellResult) => number) =>
      median(
        g.map((c) => {
          const r = ref.get(sameRound(c));
          return r ? f(c, r) : Number.NaN;
        }),
      );
    rows.push({
      mode: first.mode,
      concurrency: first.concurrency,
      target: first.target,
      rounds: g.length,
      p50: median(g.map((c) => c.totalMs.p50)),
      p90: median(g.map((c) => c.totalMs.p90)),
      p99: median(g.map((c) => c.totalMs.p99)),
      ttfbP50: median(g.map((c) => c.ttfbMs.p50)),
      ttfbP99: median(g.map((c) => c.ttfbMs.p99)),
      addedP50: diff((x) => x.totalMs.p50),
      addedP90: diff((x) => x.totalMs.p90),
      addedP99: diff((x) => x.totalMs.p99),
      addedTtfbP50: diff((x) => x.ttfbMs.p50),
      addedTtfbP99: diff((x) => x.ttfbMs.p99),
      rps: median(g.map((c) => c.rps)),
      xDirect: median(pairs.map(({ c, d }) => (d ? c.rps / d.rps : Number.NaN))),
      xBare: vs(bare, (c, r) => c.rps / r.rps),
      xOff: vs(off, (c, r) => c.rps / r.rps),
      cpuUsPerReq: median(g.map((c) => c.cpuUsPerReq)),
      cpuMinusOffUs: vs(off, (c, r) => c.cpuUsPerReq - r.cpuUsPerReq),
      upstreamCpuUsPerReq: median(g.map((c) => c.upstreamCpuUsPerReq)),
      redisCpuUsPerReq: median(g.map((c) => c.redisCpuUsPerReq)),
      loadgenCpuUsPerReq: median(g.map((c) => c.loadgenCpuUsPerReq)),
      machineCpuUsPerReq: median(g.map((c) => c.machineCpuUsPerReq)),
      rssBytes: Math.max(...g.map((c) => c.rssBytes)),
      errors: g.reduce((s, c) => s + c.errors, 0),
    });
  }
  const order: Record<TargetName, number> = {
    direct: 0,
    'bare-proxy': 1,
    signalman: 2,
    'signalman-off': 3,
    'signalman-keys': 4,
    portkey: 5,
  };
  return rows.sort((a, b) => a.mode.localeCompare(b.mode) || a.concurrency - b.concurrency || order[a.target] - order[b.target]);
}

export interface Verdict {
  target: TargetName;
  check: string;
  value: string;
  /** null when it cannot be judged (a concurrency or rival was not run). */
  pass: boolean | null;
}

// The streamed-first-byte check compares two medians of small differences; allow this much noise.
export const STREAM_TOLERANCE_MS = 0.1;
/** Telemetry on must keep c=16 throughput at or above this share of the bare proxy's (same round). */
export const TELEMETRY_MIN_X_BARE = 0.9;
/** ... and add at most this much gateway CPU per request over telemetry off (plain c=16, same round). */
export const TELEMETRY_MAX_CPU_US = 15;
/** One client key with a Redis-counted limit must keep plain c=16 throughput at this share of the pass-through's. */
export const KEYS_MIN_X_OFF = 0.85;

/**
 * The targets for Signalman pass-through, judged for each Signalman variant that ran (telemetry on
 * and off), and for the bare proxy as a reference: which targets a Node proxy doing nothing at all meets on
 * this machine today. Telemetry on (`signalman`) is also judged against the bare proxy and telemetry off.
 */
export function verdicts(rows: readonly MedianRow[]): Verdict[] {
  const find = (mode: Mode, c: number, t: TargetName) => rows.find((r) => r.mode === mode && r.concurrency === c && r.target === t);
  const out: Verdict[] = [];
  const keys16 = find('plain', 16, 'signalman-keys');
  if (keys16 !== undefined) {
    const x = keys16.xOff;
    out.push({
      target: 'signalman-keys',
      check: `plain c=16 req/s >= ${(KEYS_MIN_X_OFF * 100).toFixed(0)}% of signalman-off, the pass-through (same round)`,
      value: Number.isNaN(x) ? 'not run' : `${(x * 100).toFixed(0)}% of signalman-off (CPU ${fmt.signedUs(keys16.cpuMinusOffUs)})`,
      pass: Number.isNaN(x) ? null : x >= KEYS_MIN_X_OFF,
    });
  }
  for (const t of ['signalman', 'signalman-off', 'bare-proxy'] as const) {
    if (!rows.some((r) => r.target === t)) continue;
    const p1 = find('plain', 1, t);
    const p16 = find('plain', 16, t);
    const s1 = find('stream', 1, t);
    const pk16 = find('plain', 16, 'portkey');
    const v = (check: string, value: number | undefined, show: (x: number) => string, ok: (x: number) => boolean) =>
      out.push({
        target: t,
        check,
        value: value === undefined || Number.isNaN(value) ? 'not run' : show(value),
        pass: value === undefined || Number.isNaN(value) ? null : ok(value),
      });
    v(
      'added p50, plain, c=1 <= 0.3 ms',
      p1?.addedP50,
      (x) => `${x.toFixed(3)} ms`,
      (x) => x <= 0.3,
    );
    v(
      'added p99, plain, c=1 <= 2 ms',
      p1?.addedP99,
      (x) => `${x.toFixed(3)} ms`,
      (x) => x <= 2,
    );
    v(
      "req/s, plain, c=16 >= 10x Portkey's",
      p16 && pk16 ? p16.rps / pk16.rps : undefined,
      (x) => `${x.toFixed(1)}x Portkey`,
      (x) => x >= 10,
    );
    v(
      'req/s, plain, c=16 >= 35% of direct',
      p16?.xDirect,
      (x) => `${(x * 100).toFixed(0)}% of direct`,
      (x) => x >= 0.35,
    );
    v(
      'CPU per request, plain, c=16 <= 150 us',
      p16?.cpuUsPerReq,
      (x) => `${x.toFixed(0)} us`,
      (x) => x <= 150,
    );
    const streamGap = s1 && p1 ? s1.addedTtfbP50 - p1.addedP50 : undefined;
    v(
      `stream first byte adds <= plain (c=1 p50, ${STREAM_TOLERANCE_MS} ms noise allowance)`,
      streamGap,
      () => `stream +${s1!.addedTtfbP50.toFixed(3)} vs plain +${p1!.addedP50.toFixed(3)} ms`,
      (x) => x <= STREAM_TOLERANCE_MS,
    );
    if (t !== 'signalman') continue;
    // Telemetry's price: everything on against the floor and against the same gateway with it all off.
    const pct = `${(TELEMETRY_MIN_X_BARE * 100).toFixed(0)}%`;
    for (const mode of ['plain', 'stream'] as const) {
      v(
        `${mode} c=16 req/s >= ${pct} of bare-proxy (same round)`,
        find(mode, 16, t)?.xBare,
        (x) => `${(x * 100).toFixed(0)}% of bare-proxy`,
        (x) => x >= TELEMETRY_MIN_X_BARE,
      );
    }
    v(
      `CPU per request (plain c=16) minus signalman-off's <= ${TELEMETRY_MAX_CPU_US} µs`,
      p16?.cpuMinusOffUs,
      (x) =>
        `${x >= 0 ? '+' : ''}${x.toFixed(1)} us (${p16!.cpuUsPerReq.toFixed(0)} vs ${find('plain', 16, 'signalman-off')?.cpuUsPerReq.toFixed(0)} us)`,
      (x) => x <= TELEMETRY_MAX_CPU_US,
    );
  }
  return out;
}

export function printOverhead(rows: readonly MedianRow[], checks: readonly Verdict[]): void {
  for (const mode of ['plain', 'stream'] as const) {
    const rs = rows.filter((r) => r.mode === mode);
    if (rs.length === 0) continue;
    const stream = mode === 'stream';
    const cols = [
      'target',
      'c',
      'p50 ms',
      'p90 ms',
      'p99 ms',
      ...(stream ? ['ttfb p50', 'ttfb p99'] : []),
      'added p50',
      'added p99',
      ...(stream ? ['added ttfb p50'] : []),
      'req/s',
      'x direct',
      'x bare',
      'CPU us/req',
      'CPU vs off',
      'loadgen us',
      'machine us',
      'RSS MiB',
      'errors',
    ];
    const body: Cell[][] = rs.map((r) => [
      r.target,
      r.concurrency,
      fmt.ms(r.p50),
      fmt.ms(r.p90),
      fmt.ms(r.p99),
      ...(stream ? [fmt.ms(r.ttfbP50), fmt.ms(r.ttfbP99)] : []),
      r.target === 'direct' ? null : fmt.signedMs(r.addedP50),
      r.target === 'direct' ? null : fmt.signedMs(r.addedP99),
      ...(stream ? [r.target === 'direct' ? null : fmt.signedMs(r.addedTtfbP50)] : []),
      fmt.int(r.rps),
      fmt.ratio(r.xDirect),
      r.target === 'bare-proxy' ? null : fmt.ratio(r.xBare),
      fmt.int(r.cpuUsPerReq),
      r.target === 'signalman' || r.target === 'signalman-keys' ? fmt.signedUs(r.cpuMinusOffUs) : null,
      fmt.int(r.loadgenCpuUsPerReq),
      fmt.int(r.machineCpuUsPerReq),
      fmt.mib(r.rssBytes),
      r.errors,
    ]);
    printTable(
      `${mode === 'plain' ? 'Plain' : 'Streamed'} chat completions (median over ${rs[0]?.rounds ?? 0} rounds; added = target - direct, x = req/s ratio, CPU vs off = signalman CPU/req - signalman-off's; loadgen = this process's CPU/req, machine = all busy cores' CPU/req; all per round, then the median)`,
      cols,
      body,
    );
  }
  console.log(
    '\nTargets (issue: Signalman pass-through, telemetry on = signalman and off = signalman-off; bare-proxy, the floor, judged alike for reference)',
  );
  for (const c of checks) {
    const tag = c.pass === null ? 'N/A ' : c.pass ? 'PASS' : 'FAIL';
    console.log(`${tag}  ${c.target.padEnd(15)} ${c.check.padEnd(72)} ${c.value}`);
  }
}
