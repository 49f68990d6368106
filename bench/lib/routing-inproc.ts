// Part 1 of the routing bench: the decision itself, in this process, with no HTTP. The runtime is
// compiled from the same YAML the gateway serves (parseConfigText + compileRuntime), and routeRequest()
// is called one decision at a time: first on distinct prompts (embedding cache misses), then on the same
// prompts again (hits). Whole-decision time is taken around the await; stage times come from the
// Decision's own timingsMs. GC work during each pass is counted as the allocation signal.
import { PerformanceObserver, monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import { compileRuntime, createSharedPools, type Runtime } from '../../src/runtime/compile.js';
import { parseConfigText } from '../../src/config/load.js';
import { routeRequest } from '../../src/routers/engine.js';
import { RoutingState } from '../../src/routers/state.js';
import { summarize, type LatencySummary } from './loadgen.js';
import { STREAM, syntheticPrompt } from './prompts.js';
import { routingConfigYaml, type PolicySpec } from './routing-config.js';

export const STAGES = ['extract', 'embed', 'guard', 'score', 'decide'] as const;
export type Stage = (typeof STAGES)[number];

/** One pass of one policy in one round. */
export interface PassResult {
  policy: string;
  pass: 'miss' | 'hit';
  round: number;
  decisions: number;
  whole: LatencySummary;
  stages: Record<Stage, LatencySummary>;
  /** Share of decisions whose embedding came from the cache (checks that misses missed and hits hit). */
  cacheHitRate: number;
  gcCount: number;
  gcMs: number;
}

/** use-lite under concurrent load, with a lexical kNN probe on the same thread. */
export interface ConcurrentResult {
  policy: string;
  concurrency: number;
  decisions: number;
  decisionsPerS: number;
  whole: LatencySummary;
  /** Event-loop delay (perf_hooks, 1 ms resolution) while the use-lite decisions were in flight. */
  loopDelayMs: { p50: number; p99: number; max: number };
  /** The same over 1.5 s just before with only the paced probe running: what the timer and probe add. */
  idleLoopDelayMs: { p50: number; p99: number; max: number };
  probePolicy: string;
  probeAlone: LatencySummary;
  probeUnderLoad: LatencySummary;
}

export interface InprocKnobs {
  rounds: number;
  decisions: number;
  slowDecisions: number;
  slowConcurrency: number;
  slowConcurrentDecisions: number;
}

const META = { endpoint: '/v1/chat/completions', messages: 1, has_tools: false, stream: false, user: '' };
const bodyOf = (model: string, content: string): Record<string, unknown> => ({ model, messages: [{ role: 'user', content }] });

/** Compiles the bench config the way RuntimeRef does. */
export async function compileBenchRuntime(
  dir: string,
  policies: readonly PolicySpec[],
): Promise<{ runtime: Runtime; close: () => Promise<void> }> {
  const loaded = parseConfigText(routingConfigYaml({ port: 0, upstream: 'http://127.0.0.1:9', policies }), join(dir, 'inproc.yaml'));
  const shared = createSharedPools();
  const runtime = await compileRuntime(loaded, shared, 1);
  return {
    runtime,
    close: async () => {
      await runtime.dispose();
      await shared.embedders.closeAll();
      await shared.pools.closeAll();
    },
  };
}

/**
 * GC pauses attributed by start time: the observer delivers entries asynchronously, so counting in the
 * callback would charge one pass's collections to the next.
 */
class GcMeter {
  private entries: Array<{ start: number; ms: number }> = [];
  private readonly obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) this.entries.push({ start: e.startTime, ms: e.duration });
    if (this.entries.length > 100_000) this.entries = this.entries.slice(-50_000);
  });
  constructor() {
    this.obs.observe({ entryTypes: ['gc'] });
  }
  /** Collections that started in [t0, t1] (performance.now() times); wait a few ms after t1 first. */
  between(t0: number, t1: number): { count: number; ms: number } {
    let count = 0;
    let ms = 0;
    for (const e of this.entries) {
      if (e.start >= t0 && e.start <= t1) {
        count++;
        ms += e.ms;
      }
    }
    return { count, ms };
  }
  stop(): void {
    this.obs.disconnect();
  }
}

const PROBE_GAP_MS = 5;
const LARGE_ROWS = 50_000;

export class InprocRunner {
  private readonly state = new RoutingState();
  private readonly gc = new GcMeter();
  /** Next unused prompt index of the query stream: every miss pass gets prompts never seen before. */
  private next = 0;

  constructor(private readonly runtime: Runtime) {}

  freshPrompts(n: number): string[] {
    const out = Array.from({ length: n }, (_, i) => syntheticPrompt(STREAM.query, this.next + i));
    this.next += n;
    return out;
  }

  private async decideOnce(
    policyName: string,
    body: Record<string, unknown>,
  ): Promise<{ ms: number; timings: Record<Stage, number>; hit: boolean }> {
    const policy = this.runtime.policies.get(policyName);
    if (!policy) throw new Error(`bench policy '${policyName}' is not in the compiled runtime`);
    const t0 = performance.now();
    const d = await routeRequest({ policy, backends: this.runtime.backends, body, meta: META, headers: {}, state: this.state });
    const ms = performance.now() - t0;
    return { ms, timings: d.timingsMs, hit: d.embedCacheHit };
  }

  /** One pass: every prompt once, one decision at a time. */
  async pass(policy: string, prompts: readonly string[], pass: 'miss' | 'hit', round: number): Promise<PassResult> {
    const bodies = prompts.map((p) => bodyOf(policy, p));
    const whole = new Float64Array(bodies.length);
    const stage = Object.fromEntries(STAGES.map((s) => [s, new Float64Array(bodies.length)])) as Record<Stage, Float64Array>;
    let hits = 0;
    const t0 = performance.now();
    for (let i = 0; i < bodies.length; i++) {
      const r = await this.decideOnce(policy, bodies[i]!);
      whole[i] = r.ms;
      for (const s of STAGES) stage[s][i] = r.timings[s];
      if (r.hit) hits++;
    }
    const t1 = performance.now();
    await new Promise((r) => setTimeout(r, 5)); // let the GC observer deliver
    const gc = this.gc.between(t0, t1);
    return {
      policy,
      pass,
      round,
      decisions: bodies.length,
      whole: summarize(whole),
      stages: Object.fromEntries(STAGES.map((s) => [s, summarize(stage[s])])) as Record<Stage, LatencySummary>,
      cacheHitRate: hits / bodies.length,
      gcCount: gc.count,
      gcMs: gc.ms,
    };
  }

  /** Unmeasured decisions so the JIT has compiled the path before the first measured pass. */
  async warm(policy: string, n: number): Promise<void> {
    const prompts = this.freshPrompts(n);
    for (const p of [...prompts, ...prompts]) await this.decideOnce(policy, bodyOf(policy, p));
  }

  /** `probe` decisions every PROBE_GAP_MS until `until()` says stop; their latencies. */
  private async pacedProbe(probe: string, until: () => boolean): Promise<Float64Array> {
    const lat: number[] = [];
    while (!until()) {
      const body = bodyOf(probe, this.freshPrompts(1)[0]!);
      lat.push((await this.decideOnce(probe, body)).ms);
      await new Promise((r) => setTimeout(r, PROBE_GAP_MS));
    }
    return Float64Array.from(lat);
  }

  /**
   * `concurrency` workers route distinct prompts through a slow (worker-thread) embedder while the
   * event-loop delay is sampled and `probe` decisions run every few ms on this same thread. The same
   * paced probe runs alone first (with its own loop-delay reading): if the slow embedder blocked the
   * loop, the probe's latency and the loop delay would show it. The probe is paced like a moderate
   * request rate: a tight loop would take the core the load's own main-thread work needs.
   */
  async concurrent(policy: string, probe: string, concurrency: number, decisions: number): Promise<ConcurrentResult> {
    const idle = monitorEventLoopDelay({ resolution: 1 });
    idle.enable();
    const tIdle = performance.now();
    const probeAlone = await this.pacedProbe(probe, () => performance.now() - tIdle > 1500);
    idle.disable();

    const prompts = this.freshPrompts(decisions);
    const lat = new Float64Array(decisions);
    let taken = 0;
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    const t0 = performance.now();
    let done = false;
    const workers = Array.from({ length: concurrency }, async () => {
      for (let i = taken++; i < decisions; i = taken++) {
        lat[i] = (await this.decideOnce(policy, bodyOf(policy, prompts[i]!))).ms;
      }
    });
    const all = Promise.all(workers).then(() => {
      done = true;
    });
    const probeUnderLoad = await this.pacedProbe(probe, () => done);
    await all;
    const elapsed = performance.now() - t0;
    h.disable();
    const ms = (ns: number) => ns / 1e6;
    const delay = (x: ReturnType<typeof monitorEventLoopDelay>) => ({
      p50: ms(x.percentile(50)),
      p99: ms(x.percentile(99)),
      max: ms(x.max),
    });
    return {
      policy,
      concurrency,
      decisions,
      decisionsPerS: decisions / (elapsed / 1000),
      whole: summarize(lat),
      loopDelayMs: delay(h),
      idleLoopDelayMs: delay(idle),
      probePolicy: probe,
      probeAlone: summarize(probeAlone),
      probeUnderLoad: summarize(probeUnderLoad),
    };
  }

  stop(): void {
    this.gc.stop();
  }
}

export interface InprocResults {
  passes: PassResult[];
  concurrent: ConcurrentResult | null;
}

/**
 * Every fast policy gets `rounds` rounds (order rotated each round) of a miss pass and a hit pass over
 * `decisions` prompts; slow ones one round of `slowDecisions`, then the concurrent run.
 */
export async function runInproc(
  runtime: Runtime,
  policies: readonly PolicySpec[],
  k: InprocKnobs,
  log: (line: string) => void,
): Promise<InprocResults> {
  const runner = new InprocRunner(runtime);
  const passes: PassResult[] = [];
  const fast = policies.filter((p) => !p.slow);
  const slow = policies.filter((p) => p.slow);
  try {
    for (const p of fast) await runner.warm(p.name, 300);
    for (let round = 0; round < k.rounds; round++) {
      const shift = round % fast.length;
      const line: string[] = [];
      for (const p of [...fast.slice(shift), ...fast.slice(0, shift)]) {
        // An exact scan of 100k rows takes ~10x as long as 10k: a fifth of the decisions keeps the run short.
        const n = (p.rows ?? 0) >= LARGE_ROWS ? Math.max(100, Math.round(k.decisions / 5)) : k.decisions;
        const prompts = runner.freshPrompts(n);
        const miss = await runner.pass(p.name, prompts, 'miss', round);
        const hit = await runner.pass(p.name, prompts, 'hit', round);
        passes.push(miss, hit);
        line.push(`${p.name} ${miss.whole.p50.toFixed(3)}/${hit.whole.p50.toFixed(3)}`);
      }
      log(`in-process round ${round + 1}/${k.rounds} (p50 ms miss/hit): ${line.join(' | ')}`);
    }
    let concurrent: ConcurrentResult | null = null;
    for (const p of slow) {
      await runner.warm(p.name, 8);
      const prompts = runner.freshPrompts(k.slowDecisions);
      const miss = await runner.pass(p.name, prompts, 'miss', 0);
      const hit = await runner.pass(p.name, prompts, 'hit', 0);
      passes.push(miss, hit);
      log(
        `in-process ${p.name}: p50 ms miss ${miss.whole.p50.toFixed(2)} / hit ${hit.whole.p50.toFixed(3)} (${k.slowDecisions} prompts, one at a time)`,
      );
      const probe = fast.find((f) => f.name === 'b-knn-exact') ?? fast[0];
      if (probe && k.slowConcurrentDecisions > 0) {
        concurrent = await runner.concurrent(p.name, probe.name, k.slowConcurrency, k.slowConcurrentDecisions);
        log(
          `in-process ${p.name} c=${k.slowConcurrency}: ${concurrent.decisionsPerS.toFixed(0)} decisions/s, loop delay p99 ${concurrent.loopDelayMs.p99.toFixed(2)} ms, probe ${probe.name} p50 ${concurrent.probeAlone.p50.toFixed(3)} alone vs ${concurrent.probeUnderLoad.p50.toFixed(3)} under load`,
        );
      }
    }
    return { passes, concurrent };
  } finally {
    runner.stop();
  }
}
