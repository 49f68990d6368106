// Routing bench output: medians over rounds, the targets, and the tables.
import { availableParallelism } from 'node:os';
import { fmt, median, printTable, type Cell } from './report.js';
import type { PolicySpec } from './routing-config.js';
import type { GwCell, InterferenceCell } from './routing-gateway.js';
import type { DecisionTiming } from './routing-shipped.js';
import { STAGES, type ConcurrentResult, type PassResult, type Stage } from './routing-inproc.js';

export interface InprocRow {
  policy: string;
  label: string;
  pass: 'miss' | 'hit';
  rounds: number;
  decisions: number;
  p50: number;
  p99: number;
  stageP50: Record<Stage, number>;
  stageP99: Record<Stage, number>;
  cacheHitRate: number;
  gcPer1k: number;
  gcMsPer1k: number;
}

export function aggregateInproc(passes: readonly PassResult[], policies: readonly PolicySpec[]): InprocRow[] {
  const rows: InprocRow[] = [];
  for (const p of policies) {
    for (const pass of ['miss', 'hit'] as const) {
      const g = passes.filter((x) => x.policy === p.name && x.pass === pass);
      if (g.length === 0) continue;
      const decisions = g.reduce((s, x) => s + x.decisions, 0);
      const stage = (f: (x: PassResult, s: Stage) => number) =>
        Object.fromEntries(STAGES.map((s) => [s, median(g.map((x) => f(x, s)))])) as Record<Stage, number>;
      rows.push({
        policy: p.name,
        label: p.label,
        pass,
        rounds: g.length,
        decisions,
        p50: median(g.map((x) => x.whole.p50)),
        p99: median(g.map((x) => x.whole.p99)),
        stageP50: stage((x, s) => x.stages[s].p50),
        stageP99: stage((x, s) => x.stages[s].p99),
        cacheHitRate: median(g.map((x) => x.cacheHitRate)),
        gcPer1k: (g.reduce((s, x) => s + x.gcCount, 0) / decisions) * 1000,
        gcMsPer1k: (g.reduce((s, x) => s + x.gcMs, 0) / decisions) * 1000,
      });
    }
  }
  return rows;
}

export interface GwRow {
  target: string;
  label: string;
  concurrency: number;
  rounds: number;
  p50: number;
  p90: number;
  p99: number;
  rps: number;
  /** req/s relative to pass-through in the same round, then the median. */
  xPassthrough: number;
  /** The lowest and highest of those per-round ratios: how far one round's verdict could swing. */
  xPassthroughRange: [number, number];
  cpuUsPerReq: number;
  /** The event loop's (main thread's) part of cpuUsPerReq. */
  loopCpuUsPerReq: number;
  /** The mock upstream's and the load generator's CPU per request (NaN where not measured). */
  mockCpuUsPerReq: number;
  loadCpuUsPerReq: number;
  /** Share of the machine's cores busy with the three (gateway, mock, load generator) over the window. */
  busy: number;
  rssBytes: number;
  errors: number;
}

export function aggregateGateway(cells: readonly GwCell[], labels: ReadonlyMap<string, string>, baseline = 'passthrough'): GwRow[] {
  const base = new Map(cells.filter((c) => c.target === baseline).map((c) => [c.round, c]));
  const targets = [...new Set(cells.map((c) => c.target))];
  return targets.map((t) => {
    const g = cells.filter((c) => c.target === t);
    const ratios = g.flatMap((c) => (base.get(c.round) ? [c.rps / base.get(c.round)!.rps] : []));
    return {
      target: t,
      label: labels.get(t) ?? t,
      concurrency: g[0]!.concurrency,
      rounds: g.length,
      p50: median(g.map((c) => c.totalMs.p50)),
      p90: median(g.map((c) => c.totalMs.p90)),
      p99: median(g.map((c) => c.totalMs.p99)),
      rps: median(g.map((c) => c.rps)),
      xPassthrough: median(ratios),
      xPassthroughRange: ratios.length === 0 ? [Number.NaN, Number.NaN] : [Math.min(...ratios), Math.max(...ratios)],
      cpuUsPerReq: median(g.map((c) => c.cpuUsPerReq)),
      loopCpuUsPerReq: median(g.map((c) => c.loopCpuUsPerReq)),
      mockCpuUsPerReq: median(g.map((c) => c.mockCpuUsPerReq)),
      loadCpuUsPerReq: median(g.map((c) => c.loadCpuUsPerReq)),
      busy: median(g.map((c) => ((c.cpuUsPerReq + c.mockCpuUsPerReq + c.loadCpuUsPerReq) * c.rps) / (1e6 * availableParallelism()))),
      rssBytes: Math.max(...g.map((c) => c.rssBytes)),
      errors: g.reduce((s, c) => s + c.errors, 0),
    };
  });
}

export interface InterferenceRow {
  foreground: string;
  label: string;
  background: string;
  concurrency: number;
  rounds: number;
  aloneP50: number;
  aloneP99: number;
  loadedP50: number;
  loadedP99: number;
  /** loaded / alone in the same round, then the median. */
  ratioP50: number;
  ratioP99: number;
  aloneRps: number;
  loadedRps: number;
  /** Gateway process CPU in cores over the foreground window. */
  aloneCores: number;
  loadedCores: number;
  bgRps: number;
  bgP50: number;
  errors: number;
}

export function aggregateInterference(cells: readonly InterferenceCell[], labels: ReadonlyMap<string, string>): InterferenceRow[] {
  const out: InterferenceRow[] = [];
  for (const fg of [...new Set(cells.map((c) => c.foreground))]) {
    const alone = cells.filter((c) => c.foreground === fg && c.background === 'none');
    const loaded = cells.filter((c) => c.foreground === fg && c.background !== 'none');
    if (alone.length === 0 || loaded.length === 0) continue;
    const pairs = loaded.map((l) => ({ l, a: alone.find((a) => a.round === l.round) }));
    const ratio = (f: (c: InterferenceCell) => number) => median(pairs.map(({ l, a }) => (a ? f(l) / f(a) : Number.NaN)));
    out.push({
      foreground: fg,
      label: labels.get(fg) ?? fg,
      background: loaded[0]!.background,
      concurrency: loaded[0]!.concurrency,
      rounds: loaded.length,
      aloneP50: median(alone.map((c) => c.totalMs.p50)),
      aloneP99: median(alone.map((c) => c.totalMs.p99)),
      loadedP50: median(loaded.map((c) => c.totalMs.p50)),
      loadedP99: median(loaded.map((c) => c.totalMs.p99)),
      ratioP50: ratio((c) => c.totalMs.p50),
      ratioP99: ratio((c) => c.totalMs.p99),
      aloneRps: median(alone.map((c) => c.rps)),
      loadedRps: median(loaded.map((c) => c.rps)),
      aloneCores: median(alone.map((c) => c.gatewayCores)),
      loadedCores: median(loaded.map((c) => c.gatewayCores)),
      bgRps: median(loaded.map((c) => c.bg?.rps ?? Number.NaN)),
      bgP50: median(loaded.map((c) => c.bg?.p50 ?? Number.NaN)),
      errors: [...alone, ...loaded].reduce((s, c) => s + c.errors + (c.bg?.errors ?? 0), 0),
    });
  }
  return out;
}

export interface RoutingVerdict {
  check: string;
  value: string;
  /** null: not judged (the policy did not run); 'info' lines are reported, not judged. */
  pass: boolean | null | 'info';
}

export const TARGET_MS = { knnWhole: 1, mlpScore: 0.2, cachedWhole: 0.05 } as const;
/** Issue #15: a shipped policy's whole decision, and its req/s as a share of pass-through at c=16. */
export const SHIPPED_TARGETS = { decisionMs: 1, xPassthrough: 0.5 } as const;

/** Each shipped demo policy: decision p50 < 1 ms, and at least half the pass-through rate. */
export function shippedVerdicts(rows: readonly GwRow[], timings: readonly DecisionTiming[]): RoutingVerdict[] {
  const out: RoutingVerdict[] = [];
  for (const t of timings) {
    out.push({
      check: `shipped ${t.policy}: whole decision p50 (POST /v1/route) < ${SHIPPED_TARGETS.decisionMs} ms`,
      value: `${t.decisionMs.p50.toFixed(4)} ms`,
      pass: t.decisionMs.p50 < SHIPPED_TARGETS.decisionMs,
    });
    const r = rows.find((x) => x.target === t.policy);
    if (r === undefined) continue;
    out.push({
      check: `shipped ${t.policy}: req/s at c=${r.concurrency} >= ${SHIPPED_TARGETS.xPassthrough * 100}% of pass-through (same gateway, same round)`,
      value: `${(r.xPassthrough * 100).toFixed(1)}% (rounds ${r.xPassthroughRange.map((x) => Math.round(x * 100)).join('-')}%)`,
      pass: r.xPassthrough >= SHIPPED_TARGETS.xPassthrough,
    });
  }
  return out;
}

export function routingVerdicts(
  inproc: readonly InprocRow[],
  conc: ConcurrentResult | null,
  interference: readonly InterferenceRow[],
): RoutingVerdict[] {
  const row = (policy: string, pass: 'miss' | 'hit') => inproc.find((r) => r.policy === policy && r.pass === pass);
  const out: RoutingVerdict[] = [];
  const judge = (check: string, value: number | undefined, limit: number) =>
    out.push(
      value === undefined || Number.isNaN(value)
        ? { check, value: 'not run', pass: null }
        : { check, value: `${value.toFixed(4)} ms`, pass: value < limit },
    );
  const knn = row('b-knn-exact', 'miss');
  judge(
    `${knn?.label ?? 'lexical + knn exact'}: whole decision p50, distinct prompts < ${TARGET_MS.knnWhole} ms`,
    knn?.p50,
    TARGET_MS.knnWhole,
  );
  judge(
    `lexical + mlp: score stage p50, distinct prompts < ${TARGET_MS.mlpScore} ms`,
    row('b-mlp', 'miss')?.stageP50.score,
    TARGET_MS.mlpScore,
  );
  judge(
    `${knn?.label ?? 'lexical + knn exact'}: whole decision p50, cached repeat < ${TARGET_MS.cachedWhole} ms`,
    row('b-knn-exact', 'hit')?.p50,
    TARGET_MS.cachedWhole,
  );
  for (const r of inproc.filter((x) => x.pass === 'hit' && x.policy !== 'b-knn-exact')) {
    out.push({
      check: `${r.label}: whole decision p50, cached repeat (embed stage p50 ${r.stageP50.embed.toFixed(4)} ms)`,
      value: `${r.p50.toFixed(4)} ms`,
      pass: 'info',
    });
  }
  if (conc) {
    out.push({
      check: `${conc.policy} c=${conc.concurrency} in flight: event-loop delay p99 (probe only: ${conc.idleLoopDelayMs.p99.toFixed(2)} ms)`,
      value: `${conc.loopDelayMs.p99.toFixed(2)} ms`,
      pass: 'info',
    });
    out.push({
      check: `${conc.probePolicy} decisions on the same thread meanwhile: p50 loaded / alone`,
      value: `${(conc.probeUnderLoad.p50 / conc.probeAlone.p50).toFixed(2)}x`,
      pass: 'info',
    });
  }
  for (const r of interference) {
    out.push({
      check: `gateway ${r.label} c=${r.concurrency} with ${r.background} c=8 in flight: p50 / p99 vs alone`,
      value: `${r.ratioP50.toFixed(2)}x / ${r.ratioP99.toFixed(2)}x`,
      pass: 'info',
    });
  }
  return out;
}

const stageCells = (r: InprocRow): Cell[] => STAGES.map((s) => fmt.ms(r.stageP50[s], 4));

export function printRouting(o: {
  inproc: readonly InprocRow[];
  conc: ConcurrentResult | null;
  gateway: readonly GwRow[];
  interference: readonly InterferenceRow[];
  verdicts: readonly RoutingVerdict[];
  shipped?: { rows: readonly GwRow[]; timings: readonly DecisionTiming[] };
}): void {
  if (o.inproc.length > 0) {
    printTable(
      'In-process decision time, ms (routeRequest, one at a time; miss = distinct prompts, hit = the same prompts again; median over rounds)',
      [
        'policy',
        'pass',
        'rounds',
        'n',
        'p50',
        'p99',
        ...STAGES.map((s) => `${s} p50`),
        'embed p99',
        'score p99',
        'cache hit',
        'GCs/1k',
        'GC ms/1k',
      ],
      o.inproc.map((r) => [
        r.label,
        r.pass,
        r.rounds,
        r.decisions,
        fmt.ms(r.p50, 4),
        fmt.ms(r.p99, 3),
        ...stageCells(r),
        fmt.ms(r.stageP99.embed, 3),
        fmt.ms(r.stageP99.score, 3),
        `${Math.round(r.cacheHitRate * 100)} %`,
        r.gcPer1k.toFixed(1),
        r.gcMsPer1k.toFixed(1),
      ]),
    );
  }
  const c = o.conc;
  if (c) {
    printTable(
      `In-process ${c.policy} under c=${c.concurrency} (worker thread + batching), with a ${c.probePolicy} decision every 5 ms on the main thread`,
      ['what', 'p50 ms', 'p99 ms', 'max ms', 'rate'],
      [
        [
          `${c.policy} decisions`,
          fmt.ms(c.whole.p50, 2),
          fmt.ms(c.whole.p99, 2),
          fmt.ms(c.whole.max, 2),
          `${c.decisionsPerS.toFixed(0)}/s`,
        ],
        ['event-loop delay, loaded', fmt.ms(c.loopDelayMs.p50, 2), fmt.ms(c.loopDelayMs.p99, 2), fmt.ms(c.loopDelayMs.max, 2), null],
        [
          'event-loop delay, probe only',
          fmt.ms(c.idleLoopDelayMs.p50, 2),
          fmt.ms(c.idleLoopDelayMs.p99, 2),
          fmt.ms(c.idleLoopDelayMs.max, 2),
          null,
        ],
        [`${c.probePolicy} alone (paced)`, fmt.ms(c.probeAlone.p50, 4), fmt.ms(c.probeAlone.p99, 3), fmt.ms(c.probeAlone.max, 2), null],
        [
          `${c.probePolicy} under load (paced)`,
          fmt.ms(c.probeUnderLoad.p50, 4),
          fmt.ms(c.probeUnderLoad.p99, 3),
          fmt.ms(c.probeUnderLoad.max, 2),
          null,
        ],
      ],
    );
  }
  if (o.gateway.length > 0) {
    printTable(
      `Gateway: routed chat completions, distinct prompts, plain, c=${o.gateway[0]!.concurrency} (median over rounds; x pass-through = same round)`,
      ['target', 'p50 ms', 'p90 ms', 'p99 ms', 'req/s', 'x pass-through', 'CPU us/req', 'RSS MiB', 'errors'],
      o.gateway.map((r) => [
        r.label,
        fmt.ms(r.p50),
        fmt.ms(r.p90),
        fmt.ms(r.p99),
        fmt.int(r.rps),
        fmt.ratio(r.xPassthrough),
        fmt.int(r.cpuUsPerReq),
        fmt.mib(r.rssBytes),
        r.errors,
      ]),
    );
  }
  const sh = o.shipped;
  if (sh !== undefined && sh.rows.length > 0) {
    const timing = new Map(sh.timings.map((t) => [t.policy, t]));
    printTable(
      `Shipped demo policies (configs/default.yaml: routing_threads 1) in their own gateway, then the same with routing_threads 0 (scored on the event loop); distinct prompts, plain, c=${sh.rows[0]!.concurrency}; x pass-through = vs the pass-through of the same gateway and round; decision = POST /v1/route totalMs`,
      [
        'target',
        'decision p50 ms',
        'decision p99 ms',
        'guarded',
        'p50 ms',
        'p99 ms',
        'req/s',
        'x pass-through',
        'CPU us/req',
        'event loop us/req',
        'mock us/req',
        'load gen us/req',
        'cores busy',
        'errors',
      ],
      sh.rows.map((r) => {
        const t = timing.get(r.target);
        return [
          r.label,
          t ? fmt.ms(t.decisionMs.p50, 3) : null,
          t ? fmt.ms(t.decisionMs.p99, 3) : null,
          t ? `${Math.round(t.guarded * 100)} %` : null,
          fmt.ms(r.p50),
          fmt.ms(r.p99),
          fmt.int(r.rps),
          fmt.ratio(r.xPassthrough),
          fmt.int(r.cpuUsPerReq),
          fmt.int(r.loopCpuUsPerReq),
          fmt.int(r.mockCpuUsPerReq),
          fmt.int(r.loadCpuUsPerReq),
          `${Math.round(r.busy * 100)} %`,
          r.errors,
        ];
      }),
    );
  }
  if (o.interference.length > 0) {
    printTable(
      'Gateway interference: foreground alone vs with use-lite-routed requests in flight (ratio = loaded / alone, same round)',
      [
        'foreground',
        'c',
        'alone p50',
        'loaded p50',
        'x p50',
        'alone p99',
        'loaded p99',
        'x p99',
        'alone req/s',
        'loaded req/s',
        'gw cores alone',
        'gw cores loaded',
        'bg req/s',
        'bg p50 ms',
        'errors',
      ],
      o.interference.map((r) => [
        r.label,
        r.concurrency,
        fmt.ms(r.aloneP50),
        fmt.ms(r.loadedP50),
        fmt.ratio(r.ratioP50),
        fmt.ms(r.aloneP99),
        fmt.ms(r.loadedP99),
        fmt.ratio(r.ratioP99),
        fmt.int(r.aloneRps),
        fmt.int(r.loadedRps),
        r.aloneCores.toFixed(2),
        r.loadedCores.toFixed(2),
        fmt.int(r.bgRps),
        fmt.ms(r.bgP50, 1),
        r.errors,
      ]),
    );
  }
  console.log('\nTargets (issue: routing stage)');
  for (const v of o.verdicts) {
    const tag = v.pass === 'info' ? 'INFO' : v.pass === null ? 'N/A ' : v.pass ? 'PASS' : 'FAIL';
    console.log(`${tag}  ${v.check.padEnd(96)} ${v.value}`);
  }
}
