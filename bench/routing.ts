// How long does a routing decision take, per embedder and router, and what does it cost the gateway?
//
// 1. In process: routeRequest() on the runtime compiled from the bench's YAML, on distinct prompts
//    (embedding-cache misses) and on repeats (hits), with stage times; use-lite also under concurrency,
//    with the event-loop delay and a lexical decision probe on the same thread.
// 2. Through the gateway (child process, mock upstream child): routed chat completions per policy.
// 3. Interference: pass-through and lexical-routed requests alone, and while use-lite-routed requests
//    are in flight; a worker-thread embedder must leave their latency alone.
// Artifacts come from generated prompts (lib/prompts.ts), never from dataset text.
import { intEnv, listEnv } from './lib/knobs.js';
import { describeMachine, machine, stamp } from './lib/machine.js';
import { promptStats, STREAM } from './lib/prompts.js';
import { writeResults } from './lib/report.js';
import { buildArtifacts, type ArtifactKnobs } from './lib/routing-artifacts.js';
import { routingConfigYaml, routingPolicies } from './lib/routing-config.js';
import { preflight, runInterference, runThroughput, type GatewayKnobs, type GwCell, type InterferenceCell } from './lib/routing-gateway.js';
import { compileBenchRuntime, runInproc, type InprocKnobs, type InprocResults } from './lib/routing-inproc.js';
import {
  aggregateGateway,
  aggregateInproc,
  aggregateInterference,
  printRouting,
  routingVerdicts,
  shippedVerdicts,
} from './lib/routing-summary.js';
import { runShipped, SHIPPED_PASSTHROUGH, SHIPPED_POLICIES, type DecisionTiming } from './lib/routing-shipped.js';
import { startGateway, startMock, type ServerProc } from './lib/servers.js';

const PARTS = ['inproc', 'gateway', 'interference', 'shipped'] as const;
type Part = (typeof PARTS)[number];

export interface RoutingKnobs {
  parts: Part[];
  /** /v1/route calls per shipped policy for its decision time. */
  shippedDecisions: number;
  /** The shipped part's c=16 windows: more and shorter than the other gateway cells' (see bench/README.md). */
  shippedGateway: GatewayKnobs;
  artifacts: ArtifactKnobs;
  inproc: InprocKnobs;
  gateway: GatewayKnobs;
}

export function routingKnobs(): RoutingKnobs {
  const gateway: GatewayKnobs = {
    rounds: intEnv('ROUTING_GW_ROUNDS', 3, 1),
    durationMs: intEnv('ROUTING_DURATION_MS', 2000, 100),
    warmupMs: intEnv('ROUTING_WARMUP_MS', 500, 0),
    prewarmMs: intEnv('ROUTING_PREWARM_MS', 1500, 0),
    concurrency: intEnv('ROUTING_CONCURRENCY', 16, 1),
    fgConcurrency: intEnv('ROUTING_FG_CONCURRENCY', 4, 1),
    bgConcurrency: intEnv('ROUTING_BG_CONCURRENCY', 8, 1),
  };
  return {
    parts: listEnv('ROUTING_PARTS', PARTS, PARTS),
    shippedDecisions: intEnv('ROUTING_SHIPPED_DECISIONS', 500, 10),
    shippedGateway: {
      ...gateway,
      rounds: intEnv('ROUTING_SHIPPED_ROUNDS', 9, 1),
      durationMs: intEnv('ROUTING_SHIPPED_DURATION_MS', 1000, 100),
      warmupMs: intEnv('ROUTING_SHIPPED_WARMUP_MS', 250, 0),
    },
    artifacts: {
      rows: intEnv('ROUTING_ROWS', 10_000, 1),
      useLiteRows: intEnv('ROUTING_USE_LITE_ROWS', 1000, 0),
      largeRows: intEnv('ROUTING_LARGE_ROWS', 0, 0),
      mlpEpochs: intEnv('ROUTING_MLP_EPOCHS', 2, 1),
      rebuild: process.env.REBUILD === '1',
    },
    inproc: {
      rounds: intEnv('ROUTING_ROUNDS', 3, 1),
      decisions: intEnv('ROUTING_DECISIONS', 2000, 10),
      slowDecisions: intEnv('ROUTING_USE_LITE_DECISIONS', 100, 1),
      slowConcurrency: intEnv('ROUTING_USE_LITE_CONCURRENCY', 8, 1),
      slowConcurrentDecisions: intEnv('ROUTING_USE_LITE_CONCURRENT_DECISIONS', 240, 0),
    },
    gateway,
  };
}

const log = (line: string) => console.log(line);

export async function runRoutingBench(): Promise<{ file: string; failed: number }> {
  const k = routingKnobs();
  const m = machine();
  const started = new Date();
  console.log('\n# routing: decision time per embedder x router, routed throughput, interference');
  console.log(`machine: ${describeMachine(m)}`);
  console.log(`knobs: ${JSON.stringify(k)}`);
  if (m.loadAvg1 > m.cores * 0.5)
    console.log(`note: load average ${m.loadAvg1} on ${m.cores} cores: the machine is busy, expect wider tails`);
  const ps = promptStats(STREAM.query, 5000);
  console.log(
    `prompts: generated from templates (bench/lib/prompts.ts), ${ps.mean} chars mean, p50 ${ps.p50}, p99 ${ps.p99}, max ${ps.max}`,
  );

  const artifacts = await buildArtifacts(k.artifacts, log);
  const notes = [...artifacts.notes];
  if (artifacts.useLiteKnn) {
    notes.push(
      `use-lite's kNN has ${artifacts.useLiteKnn.rows} rows, not ${k.artifacts.rows}: embedding ${k.artifacts.rows} prompts with it would take minutes here; its decision time is dominated by the embedding either way`,
    );
  }
  if (k.artifacts.largeRows === 0)
    notes.push('exact vs hnsw at scale: set ROUTING_LARGE_ROWS=100000 (first build ~2 min on a busy 2-core machine, then cached)');
  for (const n of notes) console.log(`note: ${n}`);
  const policies = routingPolicies(artifacts);
  const labels = new Map<string, string>([['passthrough', 'pass-through (no policy)'], ...policies.map((p) => [p.name, p.label] as const)]);

  let inproc: InprocResults = { passes: [], concurrent: null };
  if (k.parts.includes('inproc')) {
    const t0 = performance.now();
    const { runtime, close } = await compileBenchRuntime(artifacts.cacheDir, policies);
    console.log(`compiled ${policies.length} policies in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    try {
      inproc = await runInproc(runtime, policies, k.inproc, log);
    } finally {
      await close();
    }
  }

  let gwCells: GwCell[] = [];
  let intCells: InterferenceCell[] = [];
  if (k.parts.includes('gateway') || k.parts.includes('interference')) {
    const mock = await startMock();
    let gw: ServerProc | null = null;
    try {
      gw = await startGateway({
        name: 'signalman-routing',
        config: (port) => routingConfigYaml({ port, upstream: mock.origin, policies }),
        readyTimeoutMs: 120_000,
      });
      await preflight(gw, policies);
      if (k.parts.includes('gateway')) gwCells = await runThroughput(gw, policies, k.gateway, log);
      const bg = policies.find((p) => p.embedder === 'use-lite');
      if (k.parts.includes('interference')) {
        if (bg) intCells = await runInterference(gw, ['passthrough', 'b-knn-exact'], bg.name, k.gateway, log);
        else notes.push('interference skipped: no use-lite policy (ROUTING_USE_LITE_ROWS=0 or its model failed to load)');
      }
    } finally {
      await gw?.stop();
      await mock.stop();
    }
  }

  // The demo config as shipped (scoring threads on), then the same with routing_threads: 0 (every decision
  // on the event loop): each against the pass-through of its own gateway and rounds.
  const none = (): { cells: GwCell[]; timings: DecisionTiming[] } => ({ cells: [], timings: [] });
  let shipped = none();
  let onLoop = none();
  if (k.parts.includes('shipped')) {
    // The other parts' numbers are still worth writing when the demo config cannot be served.
    try {
      shipped = await runShipped(k.shippedGateway, k.shippedDecisions, log);
      onLoop = await runShipped(k.shippedGateway, k.shippedDecisions, (l) => log(`[routing_threads: 0] ${l}`), 0);
    } catch (err) {
      notes.push(`shipped part failed: ${(err as Error).message.split('\n').slice(0, 3).join(' ')}`);
    }
  }
  const shippedRows = aggregateGateway(shipped.cells, new Map([['passthrough', `pass-through (backend ${SHIPPED_PASSTHROUGH} named)`]]));
  const LOOP = '@routing_threads=0';
  const loopRows = aggregateGateway(
    onLoop.cells.map((c) => ({ ...c, target: `${c.target}${LOOP}` })),
    new Map([
      [`passthrough${LOOP}`, `pass-through, routing_threads: 0`],
      ...SHIPPED_POLICIES.map((p) => [`${p}${LOOP}`, `${p}, routing_threads: 0`] as const),
    ]),
    `passthrough${LOOP}`,
  );
  const loopTimings = onLoop.timings.map((t) => ({ ...t, policy: `${t.policy}${LOOP}` }));

  const inprocRows = aggregateInproc(inproc.passes, policies);
  const gwRows = aggregateGateway(gwCells, labels);
  const intRows = aggregateInterference(intCells, labels);
  const verdicts = [...routingVerdicts(inprocRows, inproc.concurrent, intRows), ...shippedVerdicts(shippedRows, shipped.timings)];
  printRouting({
    inproc: inprocRows,
    conc: inproc.concurrent,
    gateway: gwRows,
    interference: intRows,
    verdicts,
    shipped: { rows: [...shippedRows, ...loopRows], timings: [...shipped.timings, ...loopTimings] },
  });
  const end = machine();
  console.log(`\nload average ${m.loadAvg1} at the start, ${end.loadAvg1} at the end (${m.cores} cores)`);
  for (const n of notes) console.log(`note: ${n}`);
  const file = writeResults('routing', stamp(started), {
    suite: 'routing',
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: m,
    loadAvg1AtEnd: end.loadAvg1,
    knobs: k,
    notes,
    prompts: ps,
    artifacts: {
      cacheDir: artifacts.cacheDir,
      knn: artifacts.knn,
      mlp: artifacts.mlp,
      knnLarge: artifacts.knnLarge,
      useLiteKnn: artifacts.useLiteKnn,
      staticKnn: artifacts.staticKnn,
    },
    policies: policies.map(({ name, label, embedder, router, rows, yaml }) => ({ name, label, embedder, router, rows, yaml })),
    inproc: inprocRows,
    useLiteConcurrent: inproc.concurrent,
    gateway: gwRows,
    interference: intRows,
    shipped: { gateway: shippedRows, decisions: shipped.timings, routingThreads0: { gateway: loopRows, decisions: loopTimings } },
    verdicts,
    raw: { passes: inproc.passes, gateway: gwCells, interference: intCells, shipped: shipped.cells, shippedRoutingThreads0: onLoop.cells },
  });
  console.log(`\nwrote ${file} (and bench/results/latest-routing.json)`);
  return { file, failed: verdicts.filter((v) => v.pass === false).length };
}
