// `npm run bench:soak`: does the gateway hold up under sustained mixed load with things going wrong?
//
// Separate processes on loopback: the mock upstream, the bench's own redis-server (persistent, so a
// restart loses nothing it acknowledged) and `signalman serve` with a routed policy (rules router over
// two priced backends, fallbacks, breakers at their defaults) and all telemetry on (access log, metrics,
// memory records, the Redis sink). A closed loop of SOAK_CONCURRENCY workers sends plain and streamed
// chat completions for SOAK_DURATION_MS, a known share carrying injected upstream faults. Mid-run the
// config file is rewritten and reloaded (POST /admin/reload), and later Redis is killed and started
// again on the same port while the load goes on. Reported: throughput, latency, failures by class
// (injected vs unexpected), the gateway's RSS after warm-up and at the end, CPU per request, and whether
// every request's record reached Redis. Verdicts print as PASS/FAIL; the exit code is 0 unless the bench
// itself crashes.
import { createReadStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Pool, request } from 'undici';
import { intEnv, listEnv } from './lib/knobs.js';
import { summarize, type LatencySummary } from './lib/loadgen.js';
import { describeMachine, machine, stamp } from './lib/machine.js';
import { cpuSeconds, rssBytes } from './lib/proc.js';
import { fmt, printTable, writeResults, type Cell } from './lib/report.js';
import { freePort, redisCommand, spawnServer, startMock, type ServerProc } from './lib/servers.js';
import { ADMIN_KEY_ENV, RELOAD_KEYWORD, soakConfig, type SoakConfigSpec } from './lib/soak-config.js';
import { FAULT_KINDS, INJECTED_FAILURES, makeMix, sendOne, startSoakLoad, type FaultKind, type Sample } from './lib/soak-load.js';
import { startSoakRedis, type SoakRedis } from './lib/soak-redis.js';

const MAIN_JS = join(import.meta.dirname, '..', 'src', 'cli', 'main.js'); // dist/bench -> dist/src/cli/main.js

/** Extra node flags for the gateway, e.g. GATEWAY_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' (as servers.ts reads them). */
function gatewayNodeArgs(): string[] {
  const raw = process.env.GATEWAY_NODE_ARGS?.trim();
  return raw ? raw.split(/\s+/) : [];
}

/** One shell word. */
const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** The gateway's stdout: access lines (`"msg":"request"`), and its other lines at warn level or above. */
async function readGatewayLog(file: string): Promise<{ access: number; bytes: number; warnings: string[] }> {
  let access = 0;
  const warnings: string[] = [];
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    if (line.includes('"msg":"request"')) access++;
    else if (/^\{"level":([4-9]\d)/.test(line)) warnings.push(line.slice(0, 300));
  }
  return { access, bytes: statSync(file).size, warnings };
}

interface SoakKnobs {
  durationMs: number;
  warmupMs: number;
  concurrency: number;
  streamPct: number;
  faultPct: number;
  prompts: number;
  redisDownMs: number;
  redisSignal: 'SIGKILL' | 'SIGTERM';
  /** telemetry.redis.buffer_max_records. */
  redisBuffer: number;
  seed: number;
}

function soakKnobs(): SoakKnobs {
  const durationMs = intEnv('SOAK_DURATION_MS', 120_000, 20_000);
  const warmupMs = intEnv('SOAK_WARMUP_MS', Math.min(30_000, Math.round(durationMs / 4)), 0);
  const redisDownMs = intEnv('SOAK_REDIS_DOWN_MS', 2_000, 0);
  if (warmupMs + 10_000 > durationMs)
    throw new Error(`SOAK_WARMUP_MS (${warmupMs}) must end at least 10 s before SOAK_DURATION_MS (${durationMs})`);
  // The restart starts 55 % into the measured window; Redis must be back well before the load ends.
  if (warmupMs + 0.55 * (durationMs - warmupMs) + redisDownMs + 5_000 > durationMs)
    throw new Error(
      `SOAK_REDIS_DOWN_MS (${redisDownMs}) is too long for SOAK_DURATION_MS (${durationMs}): Redis must be back 5 s before the end`,
    );
  const pct = (name: string, def: number) => {
    const v = intEnv(name, def, 0);
    if (v > 100) throw new Error(`${name} is a percentage (0-100), got ${v}`);
    return v;
  };
  return {
    durationMs,
    warmupMs,
    concurrency: intEnv('SOAK_CONCURRENCY', 16, 1),
    streamPct: pct('SOAK_STREAM_PCT', 50),
    faultPct: pct('SOAK_FAULT_PCT', 1),
    prompts: intEnv('SOAK_PROMPTS', 2000, 0),
    redisDownMs,
    redisSignal: listEnv('SOAK_REDIS_SIGNAL', ['KILL'], ['KILL', 'TERM'] as const)[0] === 'TERM' ? 'SIGTERM' : 'SIGKILL',
    redisBuffer: intEnv('SOAK_REDIS_BUFFER', 50_000, 1),
    seed: intEnv('SOAK_SEED', 1, 0),
  };
}

/** Sums the samples of one metric in Prometheus text format (series whose line contains `labels`). */
function metricSum(text: string, name: string, labels = ''): number | null {
  let sum = 0;
  let series = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (labels !== '' && !line.includes(labels)) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) {
      sum += v;
      series++;
    }
  }
  return series > 0 ? sum : null;
}

async function scrape(origin: string): Promise<string> {
  const res = await request(`${origin}/metrics`, { headersTimeout: 5000, bodyTimeout: 5000 });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET /metrics: HTTP ${res.statusCode}`);
  return text;
}

interface Tick {
  t: number;
  rss: number | null;
  cpu: number | null;
  /** signalman_telemetry_buffered_records{sink="redis"} at that moment. */
  buffered: number | null;
  /** V8 heap used and total, and external memory (ArrayBuffers, Buffers), from the same scrape. */
  heapUsed: number | null;
  heapTotal: number | null;
  external: number | null;
  /** Backends whose breaker is not closed (signalman_breaker_state != 0). */
  open: string[] | null;
}

/** POST /admin/reload's answer. */
interface ReloadStatus {
  ok?: boolean;
  generation?: number;
  warnings?: string[];
  errors?: string[];
}

interface SoakEvent {
  at: number;
  what: string;
}

interface LatencyRow {
  group: string;
  requests: number;
  rps: number;
  ms: LatencySummary;
}

const LATENCY_COLUMNS = ['requests', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'];

export async function runSoakBench(): Promise<{ file: string; failed: number }> {
  const k = soakKnobs();
  const m = machine();
  const started = new Date();
  const runStamp = stamp(started);
  console.log('# soak: sustained mixed load through a routed gateway, with faults, a config reload and a Redis restart');
  console.log(`machine: ${describeMachine(m)}`);
  console.log(
    `knobs: SOAK_DURATION_MS=${k.durationMs} SOAK_WARMUP_MS=${k.warmupMs} SOAK_CONCURRENCY=${k.concurrency} SOAK_STREAM_PCT=${k.streamPct} SOAK_FAULT_PCT=${k.faultPct} SOAK_PROMPTS=${k.prompts} SOAK_REDIS_DOWN_MS=${k.redisDownMs} SOAK_REDIS_SIGNAL=${k.redisSignal === 'SIGKILL' ? 'KILL' : 'TERM'} SOAK_REDIS_BUFFER=${k.redisBuffer} SOAK_SEED=${k.seed}`,
  );
  if (m.loadAvg1 > m.cores * 0.5)
    console.log(`note: load average ${m.loadAvg1} on ${m.cores} cores: the machine is busy, expect wider tails`);

  const W = k.warmupMs;
  const D = k.durationMs;
  const reloadAt = Math.round(W + 0.3 * (D - W));
  const redisAt = Math.round(W + 0.55 * (D - W));
  const keyPrefix = `soak:${runStamp}:`;
  const adminKey = `soak-admin-${process.pid}-${Date.now()}`;
  const procs: Array<{ stop(): Promise<void> }> = [];
  const events: SoakEvent[] = [];
  try {
    const mock = await startMock();
    procs.push(mock);
    const redis: SoakRedis = await startSoakRedis();
    procs.push(redis);
    const dir = mkdtempSync(join(tmpdir(), 'signalman-soak-'));
    procs.push({ stop: async () => rmSync(dir, { recursive: true, force: true }) });
    const gwPort = await freePort();
    const spec = (phase: 'a' | 'b'): SoakConfigSpec => ({
      port: gwPort,
      mockOrigin: mock.origin,
      redisUrl: redis.url,
      keyPrefix,
      streamMaxLen: 10_000_000,
      bufferMaxRecords: k.redisBuffer,
      phase,
    });
    const configFile = join(dir, 'signalman-soak.yaml');
    const logFile = join(dir, 'gateway-stdout.log');
    writeFileSync(configFile, soakConfig(spec('a')));
    // stdout (the access log and the gateway's own log lines) goes to a file, as a log shipper would drain
    // it: a pipe read by this busy process could back up into the gateway's bounded log buffer and its RSS.
    // `exec` keeps the pid: RSS and CPU are read from the gateway itself.
    const gwCommand = [
      process.execPath,
      ...gatewayNodeArgs(),
      MAIN_JS,
      'serve',
      '--config',
      configFile,
      '--port',
      String(gwPort),
      '--host',
      '127.0.0.1',
    ];
    const gw: ServerProc = await spawnServer({
      name: 'signalman',
      command: '/bin/sh',
      args: ['-c', `exec ${gwCommand.map(shq).join(' ')} > ${shq(logFile)}`],
      port: gwPort,
      readyPath: '/healthz',
      // The config names its Redis; REDIS_URL from the bench's environment must not matter.
      env: { REDIS_URL: '', [ADMIN_KEY_ENV]: adminKey },
    });
    procs.unshift(gw); // stopped first, so its last records flush while Redis is still up
    console.log(
      `servers: mock ${mock.origin} (pid ${mock.pid}), redis ${redis.url} (pid ${redis.proc().pid}), gateway ${gw.origin} (pid ${gw.pid})`,
    );

    // Preflight: one plain and one streamed request must pass before the clock starts.
    const preflight: Sample[] = [];
    {
      const pool = new Pool(gw.origin, { connections: 1 });
      const mix = makeMix({ streamShare: 0, faultShare: 0, prompts: 1, seed: 7 });
      const streamMix = makeMix({ streamShare: 1, faultShare: 0, prompts: 1, seed: 7 });
      for (const req of [mix(), streamMix()]) {
        const s = await sendOne(pool, performance.now(), req, 10_000);
        preflight.push(s);
        if (!s.ok) throw new Error(`preflight ${req.mode} request failed: ${s.error}\n${gw.output().slice(-800)}`);
      }
      await pool.close();
    }

    const ticks: Tick[] = [];
    // Filled in by the timeline below (an object: TypeScript does not track assignments inside callbacks).
    const st: {
      rss0: number | null;
      cpu0: number | null;
      heap0: number | null;
      rss1: number | null;
      cpu1: number | null;
      heap1: number | null;
      reload: ReloadStatus | null;
      reloadStart: number;
      reloadEnd: number;
      restart: { downMs: number; readyMs: number } | null;
    } = {
      rss0: null,
      cpu0: null,
      heap0: null,
      rss1: null,
      cpu1: null,
      heap1: null,
      reload: null,
      reloadStart: Number.NaN,
      reloadEnd: Number.NaN,
      restart: null,
    };

    const load = startSoakLoad({
      origin: gw.origin,
      concurrency: k.concurrency,
      durationMs: D,
      streamShare: k.streamPct / 100,
      faultShare: k.faultPct / 100,
      prompts: k.prompts,
      seed: k.seed,
    });
    const at = (ms: number, fn: () => Promise<void>): Promise<void> =>
      new Promise<void>((res) => setTimeout(res, Math.max(0, ms - load.elapsed()))).then(fn);
    const heapOf = async (): Promise<number | null> => {
      try {
        return metricSum(await scrape(gw.origin), 'signalman_nodejs_heap_size_used_bytes');
      } catch {
        return null;
      }
    };

    // Once a second: the gateway's RSS and CPU, and the Redis sink's buffer; a progress line per 10 s.
    let lastPrinted = 0;
    const sampler = setInterval(() => {
      const t = load.elapsed();
      const tick: Tick = {
        t,
        rss: rssBytes(gw.pid),
        cpu: cpuSeconds(gw.pid),
        buffered: null,
        heapUsed: null,
        heapTotal: null,
        external: null,
        open: null,
      };
      ticks.push(tick);
      void scrape(gw.origin)
        .then((text) => {
          tick.buffered = metricSum(text, 'signalman_telemetry_buffered_records', 'sink="redis"');
          tick.heapUsed = metricSum(text, 'signalman_nodejs_heap_size_used_bytes');
          tick.heapTotal = metricSum(text, 'signalman_nodejs_heap_size_total_bytes');
          tick.external = metricSum(text, 'signalman_nodejs_external_memory_bytes');
          tick.open = [...text.matchAll(/^signalman_breaker_state\{backend="([^"]+)"\} (\S+)$/gm)]
            .filter((x) => x[2] !== '0')
            .map((x) => x[1]!);
        })
        .catch(() => undefined);
      if (t - lastPrinted >= 10_000) {
        lastPrinted = t;
        const recent = load.samples.filter((s) => s.end > t - 10_000);
        const unexpected = load.samples.filter((s) => !s.ok && !INJECTED_FAILURES.has(s.fault)).length;
        console.log(
          `t=${(t / 1000).toFixed(0).padStart(4)} s  ${(recent.length / 10).toFixed(0).padStart(5)} req/s  RSS ${fmt.mib(tick.rss)} MiB  unexpected failures so far: ${unexpected}`,
        );
      }
    }, 1000);

    const timeline = Promise.all([
      at(W, async () => {
        st.rss0 = rssBytes(gw.pid);
        st.cpu0 = cpuSeconds(gw.pid);
        st.heap0 = await heapOf();
        events.push({ at: load.elapsed(), what: `warm-up over: RSS ${fmt.mib(st.rss0)} MiB` });
      }),
      at(reloadAt, async () => {
        st.reloadStart = load.elapsed();
        writeFileSync(configFile, soakConfig(spec('b')));
        const res = await request(`${gw.origin}/admin/reload`, {
          method: 'POST',
          headers: { authorization: `Bearer ${adminKey}` },
          headersTimeout: 30_000,
          bodyTimeout: 30_000,
        });
        st.reload = (await res.body.json()) as ReloadStatus;
        st.reloadEnd = load.elapsed();
        events.push({
          at: st.reloadStart,
          what: `config reload (POST /admin/reload): HTTP ${res.statusCode}, generation ${st.reload?.generation ?? '?'}, ${(st.reloadEnd - st.reloadStart).toFixed(0)} ms`,
        });
      }),
      at(redisAt, async () => {
        const t = load.elapsed();
        st.restart = await redis.restart(k.redisDownMs, k.redisSignal);
        events.push({
          at: t,
          what: `redis ${k.redisSignal} + restart on the same port: down ${(st.restart.downMs / 1000).toFixed(1)} s, ready again after ${(st.restart.readyMs / 1000).toFixed(1)} s`,
        });
      }),
      at(D, async () => {
        st.rss1 = rssBytes(gw.pid);
        st.cpu1 = cpuSeconds(gw.pid);
        st.heap1 = await heapOf();
        events.push({ at: load.elapsed(), what: `load over: RSS ${fmt.mib(st.rss1)} MiB` });
      }),
    ]);
    await Promise.all([load.done, timeline]);
    clearInterval(sampler);

    // Let the Redis sink write what it still holds, then count.
    const drainStart = performance.now();
    let finalMetrics = '';
    for (;;) {
      finalMetrics = await scrape(gw.origin);
      const buffered = metricSum(finalMetrics, 'signalman_telemetry_buffered_records', 'sink="redis"');
      if (buffered === 0 || performance.now() - drainStart > 30_000) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    await new Promise((r) => setTimeout(r, 300));
    finalMetrics = await scrape(gw.origin);
    const drainMs = performance.now() - drainStart;
    const gwLog = await readGatewayLog(logFile);

    const samples = [...preflight, ...load.samples];
    const sent = samples.length;
    const requestsTotal = metricSum(finalMetrics, 'signalman_requests_total');
    const written = metricSum(finalMetrics, 'signalman_telemetry_written_records_total', 'sink="redis"');
    const dropped = metricSum(finalMetrics, 'signalman_telemetry_dropped_records_total', 'sink="redis"');
    const buffered = metricSum(finalMetrics, 'signalman_telemetry_buffered_records', 'sink="redis"');
    const streamKey = `${keyPrefix}records`;
    const xlenRaw = await redisCommand(redis.port, ['XLEN', streamKey]);
    const xlen = typeof xlenRaw === 'number' ? xlenRaw : null;
    // Every answered request's record, by the id the gateway sent back (x-signalman-request-id).
    const withId = samples.filter((s) => s.id !== null);
    const missing: Sample[] = [];
    {
      const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await client.connect();
      for (let i = 0; i < withId.length; i += 5000) {
        const chunk = withId.slice(i, i + 5000);
        const pipe = client.pipeline();
        for (const s of chunk) pipe.exists(`${keyPrefix}req:${s.id}`);
        const replies = (await pipe.exec()) ?? [];
        replies.forEach(([err, n], j) => {
          if (err !== null || n !== 1) missing.push(chunk[j]!);
        });
      }
      await client.quit();
    }

    // ---- numbers ----
    const windowS = (D - W) / 1000;
    const inWindow = samples.filter((s) => s.start >= W && s.end <= D);
    const completedInWindow = samples.filter((s) => s.end >= W && s.end <= D).length;
    const rps = completedInWindow / windowS;
    const latencyRow = (group: string, list: Sample[], pick: (s: Sample) => number = (s) => s.end - s.start): LatencyRow => ({
      group,
      requests: list.length,
      rps: list.length / windowS,
      ms: summarize(Float64Array.from(list, pick)),
    });
    const okIn = inWindow.filter((s) => s.ok);
    const latency: LatencyRow[] = [
      latencyRow(
        'plain',
        okIn.filter((s) => s.mode === 'plain' && s.fault === 'none'),
      ),
      latencyRow(
        'stream (whole)',
        okIn.filter((s) => s.mode === 'stream' && s.fault === 'none'),
      ),
      latencyRow(
        'stream (first byte)',
        okIn.filter((s) => s.mode === 'stream' && s.fault === 'none'),
        (s) => s.ttfb,
      ),
      latencyRow(
        'retried (fault, recovered)',
        okIn.filter((s) => s.fault === 'retry'),
      ),
      latencyRow(
        'fallback (fault, recovered)',
        okIn.filter((s) => s.fault === 'fallback'),
      ),
      latencyRow('all answered', okIn),
    ];

    const failed = samples.filter((s) => !s.ok);
    const unexpected = failed.filter((s) => !INJECTED_FAILURES.has(s.fault));
    const classes = new Map<string, { expected: boolean; fault: FaultKind; error: string; n: number; first: number }>();
    for (const s of failed) {
      const expected = INJECTED_FAILURES.has(s.fault);
      const key = `${expected}|${s.fault}|${s.error}`;
      const c = classes.get(key) ?? { expected, fault: s.fault, error: s.error ?? '?', n: 0, first: s.end };
      c.n++;
      classes.set(key, c);
    }
    const failureRows = [...classes.values()].sort((a, b) => Number(a.expected) - Number(b.expected) || b.n - a.n);

    const faults = FAULT_KINDS.map((f) => {
      const list = samples.filter((s) => s.fault === f);
      return { fault: f, sent: list.length, ok: list.filter((s) => s.ok).length, failed: list.filter((s) => !s.ok).length };
    });

    // Reload check: prompts with the reload keyword are routed like the default prompts (weak) before the
    // reload and like the keyword-rule prompts (strong) after it. Compared with those prompts in the same
    // period rather than with 100 %: an open breaker sends a share of either to the other backend.
    const clean = samples.filter((s) => s.ok && s.fault === 'none');
    const beforeReload = (s: Sample) => s.end < st.reloadStart;
    const afterReload = (s: Sample) => s.start > st.reloadEnd;
    const share = (list: Sample[], backend: string) =>
      list.length ? list.filter((s) => s.backend === backend).length / list.length : Number.NaN;
    const before = clean.filter((s) => s.topic === 'reload' && beforeReload(s));
    const after = clean.filter((s) => s.topic === 'reload' && afterReload(s));
    const weakBefore = share(before, 'weak');
    const strongAfter = share(after, 'strong');
    const defaultWeakBefore = share(
      clean.filter((s) => s.topic === 'default' && beforeReload(s)),
      'weak',
    );
    const ruleStrongAfter = share(
      clean.filter((s) => s.topic === 'strong' && afterReload(s)),
      'strong',
    );
    const rs = st.reload;
    const reloadOk =
      rs?.ok === true &&
      rs.generation === 2 &&
      (rs.warnings ?? []).length === 0 &&
      Math.abs(weakBefore - defaultWeakBefore) <= 0.02 &&
      Math.abs(strongAfter - ruleStrongAfter) <= 0.02 &&
      strongAfter >= 0.5;
    /** The backend the rules choose for a sample's prompt (null: in flight across the reload). */
    const ruled = (s: Sample): string | null =>
      s.topic === 'strong' ? 'strong' : s.topic === 'default' ? 'weak' : beforeReload(s) ? 'weak' : afterReload(s) ? 'strong' : null;

    const cpuUsPerReq =
      st.cpu0 !== null && st.cpu1 !== null && completedInWindow > 0 ? ((st.cpu1 - st.cpu0) * 1e6) / completedInWindow : null;
    const rssAfterWarmup = ticks.filter((t) => t.t >= W && t.rss !== null).map((t) => t.rss!);
    const rssMax = rssAfterWarmup.length ? Math.max(...rssAfterWarmup) : null;
    // Growth compares the peak RSS of the first and of the last stretch after warm-up (a third of it, at most
    // 20 s): two single samples land anywhere on the GC sawtooth (seen: 151 -> 206 MiB between a trough and a
    // crest of a flat run), while a leak raises the peaks.
    const stretch = Math.min(20_000, (D - W) / 3);
    const peak = (from: number, to: number) => {
      const xs = ticks.filter((t) => t.t >= from && t.t < to && t.rss !== null).map((t) => t.rss!);
      return xs.length ? Math.max(...xs) : null;
    };
    const peakFirst = peak(W, W + stretch);
    const peakLast = peak(D - stretch, D + 1);
    const growth = peakFirst !== null && peakLast !== null ? (peakLast - peakFirst) / peakFirst : null;
    const bufferedPeak = Math.max(0, ...ticks.map((t) => t.buffered ?? 0));

    /** Seconds (1 s samples) each breaker was seen not closed in these ticks, e.g. `weak 5s`. */
    const openText = (tk: readonly Tick[]): string => {
      const n = new Map<string, number>();
      for (const t of tk) for (const b of t.open ?? []) n.set(b, (n.get(b) ?? 0) + 1);
      return [...n].map(([b, c]) => `${b} ${c}s`).join(', ');
    };
    // Timeline: ~12 buckets.
    const bucketMs = Math.max(5_000, Math.round(D / 12 / 1000) * 1000);
    const timelineRows: Cell[][] = [];
    for (let b0 = 0; b0 < D; b0 += bucketMs) {
      const b1 = Math.min(D, b0 + bucketMs);
      const ended = load.samples.filter((s) => s.end >= b0 && s.end < b1);
      const p99 = (mode: string) =>
        summarize(
          Float64Array.from(
            ended.filter((s) => s.ok && s.mode === mode && s.fault === 'none'),
            (s) => s.end - s.start,
          ),
        ).p99;
      const tk = ticks.filter((t) => t.t >= b0 && t.t < b1);
      const last = tk.length ? tk[tk.length - 1]! : null;
      const ev = events.filter((e) => e.at >= b0 && e.at < b1).map((e) => e.what.split(':')[0]!.replace(/ \(.*$/, ''));
      timelineRows.push([
        `${(b0 / 1000).toFixed(0)}-${(b1 / 1000).toFixed(0)} s`,
        fmt.int(ended.length / ((b1 - b0) / 1000)),
        fmt.ms(p99('plain'), 1),
        fmt.ms(p99('stream'), 1),
        ended.filter((s) => !s.ok && INJECTED_FAILURES.has(s.fault)).length,
        ended.filter((s) => !s.ok && !INJECTED_FAILURES.has(s.fault)).length,
        Math.max(0, ...tk.map((t) => t.buffered ?? 0)),
        fmt.mib(last?.rss),
        last === null ? null : `${fmt.mib(last.heapUsed) ?? '-'}/${fmt.mib(last.heapTotal) ?? '-'}`,
        ended.filter((s) => s.ok && s.fault === 'none' && ruled(s) !== null && s.backend !== ruled(s)).length,
        openText(tk),
        ev.join('; ') || '',
      ]);
    }

    // ---- print ----
    console.log('\nEvents (ms since the load started)');
    for (const e of events.sort((a, b) => a.at - b.at)) console.log(`  ${e.at.toFixed(0).padStart(7)}  ${e.what}`);

    printTable(
      `Soak timeline (c=${k.concurrency}; failures by when they ended; buffered = the Redis sink's buffer, max of 1 s samples)`,
      [
        'window',
        'req/s',
        'plain p99',
        'stream p99',
        'injected fail',
        'unexpected',
        'buffered',
        'RSS MiB',
        'heap used/total',
        'rerouted',
        'breaker open',
        'events',
      ],
      timelineRows,
    );
    printTable(
      `Latency after warm-up (${(W / 1000).toFixed(0)}-${(D / 1000).toFixed(0)} s, answered requests; clean = no fault)`,
      ['', ...LATENCY_COLUMNS],
      latency.map((r) => [
        r.group,
        r.requests,
        fmt.int(r.rps),
        fmt.ms(r.ms.p50, 2),
        fmt.ms(r.ms.p90, 2),
        fmt.ms(r.ms.p99, 2),
        fmt.ms(r.ms.max, 1),
      ]),
    );
    printTable(
      'Injected faults (mock upstream, body field `mock`; retry/fallback must recover, fail/cut may fail)',
      ['fault', 'sent', 'answered', 'failed'],
      faults.map((f) => [f.fault, f.sent, f.ok, f.failed]),
    );
    printTable(
      'Failures by class (whole run)',
      ['class', 'fault', 'error', 'count'],
      failureRows.length
        ? failureRows.map((c) => [c.expected ? 'injected' : 'UNEXPECTED', c.fault, c.error, c.n])
        : [['none', '-', '-', 0]],
    );

    const pct = (v: number | null) => (v === null ? '-' : `${(v * 100).toFixed(1)} %`);
    const summaryRows: Cell[][] = [
      ['duration / warm-up', `${(D / 1000).toFixed(0)} s / ${(W / 1000).toFixed(0)} s`],
      ['concurrency, mix', `${k.concurrency}, ${100 - k.streamPct} % plain / ${k.streamPct} % stream, ${k.faultPct} % with a fault`],
      ['requests sent (whole run)', sent],
      ['throughput after warm-up', `${rps.toFixed(0)} req/s`],
      ['plain p50 / p99', `${fmt.ms(latency[0]!.ms.p50, 2)} / ${fmt.ms(latency[0]!.ms.p99, 2)} ms`],
      ['stream p50 / p99 (whole stream)', `${fmt.ms(latency[1]!.ms.p50, 2)} / ${fmt.ms(latency[1]!.ms.p99, 2)} ms`],
      [
        'injected faults: recovered / failed as injected',
        `${faults.filter((f) => f.fault === 'retry' || f.fault === 'fallback').reduce((a, f) => a + f.ok, 0)} / ${failed.length - unexpected.length}`,
      ],
      ['unexpected failures', unexpected.length],
      ['records: sent / in Redis (XLEN) / missing by id / dropped', `${sent} / ${xlen ?? '-'} / ${missing.length} / ${dropped ?? '-'}`],
      [
        'gateway RSS after warm-up -> end (max)',
        `${fmt.mib(st.rss0)} -> ${fmt.mib(st.rss1)} MiB (${fmt.mib(rssMax)}), ${growth === null ? '-' : `${growth >= 0 ? '+' : ''}${pct(growth)}`}`,
      ],
      ['gateway CPU per request', cpuUsPerReq === null ? '-' : `${cpuUsPerReq.toFixed(0)} us`],
    ];
    printTable('Soak summary', ['metric', 'value'], summaryRows);

    const checks: Array<{ name: string; pass: boolean; detail: string }> = [
      {
        name: 'no unexpected failures',
        pass: unexpected.length === 0,
        detail: `${unexpected.length} of ${sent - faults.filter((f) => INJECTED_FAILURES.has(f.fault)).reduce((a, f) => a + f.sent, 0)} requests without an injected failure failed${unexpected.length ? ` (first: ${unexpected[0]!.error} at ${(unexpected[0]!.end / 1000).toFixed(1)} s)` : ''}`,
      },
      {
        name: 'no record lost',
        pass:
          xlen === sent &&
          missing.length === 0 &&
          requestsTotal === sent &&
          written === sent &&
          (dropped ?? 0) === 0 &&
          gwLog.access === sent,
        detail: `sent ${sent}; access log lines ${gwLog.access}; signalman_requests_total ${requestsTotal ?? '-'}; Redis sink wrote ${written ?? '-'}, dropped ${dropped ?? '-'}, still buffered ${buffered ?? '-'}; XLEN ${streamKey} ${xlen ?? '-'}; ${withId.length - missing.length} of ${withId.length} response ids have their record${missing.length ? ` (first missing: ${missing[0]!.id} at ${(missing[0]!.end / 1000).toFixed(1)} s)` : ''}`,
      },
      {
        name: 'RSS growth < 10 % after warm-up',
        pass: growth !== null && growth < 0.1,
        detail: `peak ${fmt.mib(peakFirst)} MiB in ${(W / 1000).toFixed(0)}-${((W + stretch) / 1000).toFixed(0)} s -> peak ${fmt.mib(peakLast)} MiB in ${((D - stretch) / 1000).toFixed(0)}-${(D / 1000).toFixed(0)} s (${pct(growth)}; samples ${fmt.mib(st.rss0)} -> ${fmt.mib(st.rss1)} MiB; max ${fmt.mib(rssMax)} MiB; V8 heap used ${fmt.mib(st.heap0)} -> ${fmt.mib(st.heap1)} MiB)`,
      },
      {
        name: 'config reload applied',
        pass: reloadOk,
        detail: `POST /admin/reload ok=${String(rs?.ok)} generation ${rs?.generation ?? '-'} warnings ${(rs?.warnings ?? []).length}${(rs?.errors ?? []).length ? ` errors: ${rs?.errors?.join('; ')}` : ''}; '${RELOAD_KEYWORD}' prompts on weak before ${pct(weakBefore)} of ${before.length} (default prompts ${pct(defaultWeakBefore)}), on strong after ${pct(strongAfter)} of ${after.length} (keyword-rule prompts ${pct(ruleStrongAfter)})`,
      },
    ];
    console.log('\nChecks');
    for (const c of checks) console.log(`${c.pass ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`);
    const rr = st.restart;
    const attemptsAll = metricSum(finalMetrics, 'signalman_upstream_attempts_total');
    const attemptsFailed = metricSum(finalMetrics, 'signalman_upstream_attempts_total', 'result="error"');
    const attemptsFailedShare = attemptsAll ? (attemptsFailed ?? 0) / attemptsAll : null;
    const info = [
      `Redis ${k.redisSignal} at ${(redisAt / 1000).toFixed(0)} s: down ${rr ? (rr.downMs / 1000).toFixed(1) : '-'} s; the sink's buffer peaked at ${bufferedPeak} records (1 s samples; bound ${k.redisBuffer}), drained ${drainMs.toFixed(0)} ms after the load ended`,
      `retries ${metricSum(finalMetrics, 'signalman_retries_total') ?? 0}, fallbacks ${metricSum(finalMetrics, 'signalman_fallbacks_total') ?? 0}, breakers opened ${metricSum(finalMetrics, 'signalman_breaker_transitions_total', 'to="open"') ?? 0} times (weak ${metricSum(finalMetrics, 'signalman_breaker_transitions_total', 'backend="weak",to="open"') ?? 0}, strong ${metricSum(finalMetrics, 'signalman_breaker_transitions_total', 'backend="strong",to="open"') ?? 0}), upstream attempts failed ${pct(attemptsFailedShare)}, retry budget exhausted ${metricSum(finalMetrics, 'signalman_retry_budget_exhausted_total') ?? 0}, config reloads ok ${metricSum(finalMetrics, 'signalman_config_reloads_total', 'result="ok"') ?? 0}`,
      `gateway CPU ${st.cpu0 !== null && st.cpu1 !== null ? ((st.cpu1 - st.cpu0) / windowS).toFixed(2) : '-'} cores after warm-up; ${cpuUsPerReq === null ? '-' : cpuUsPerReq.toFixed(0)} us per request (mock, Redis and the load generator share the same ${m.cores} cores)`,
      `access log: ${gwLog.access} lines, ${fmt.mib(gwLog.bytes)} MiB; other log lines at warn or above: ${gwLog.warnings.length}`,
    ];
    // The gateway's warnings, one line per distinct message.
    const byMsg = new Map<string, number>();
    for (const w of gwLog.warnings) {
      const msg = /"msg":"([^"]*)"/.exec(w)?.[1] ?? w.slice(0, 120);
      byMsg.set(msg, (byMsg.get(msg) ?? 0) + 1);
    }
    for (const [msg, n] of byMsg) info.push(`gateway log x${n}: ${msg}`);
    for (const line of info) console.log(`INFO  ${line}`);

    const failedChecks = checks.filter((c) => !c.pass).length;
    const file = writeResults('soak', runStamp, {
      suite: 'soak',
      started: started.toISOString(),
      machine: m,
      knobs: k,
      events,
      summary: {
        sent,
        rps,
        windowS,
        unexpectedFailures: unexpected.length,
        injectedFailures: failed.length - unexpected.length,
        rss: { afterWarmup: st.rss0, end: st.rss1, max: rssMax, growth },
        heapUsed: { afterWarmup: st.heap0, end: st.heap1 },
        cpuUsPerReq,
      },
      latency,
      faults,
      failures: failureRows,
      telemetry: {
        sent,
        requestsTotal,
        written,
        dropped,
        buffered,
        xlen,
        streamKey,
        idsChecked: withId.length,
        missing: missing.length,
        bufferedPeak,
        drainMs,
      },
      reload: {
        status: rs,
        at: st.reloadStart,
        ms: st.reloadEnd - st.reloadStart,
        weakBefore,
        defaultWeakBefore,
        strongAfter,
        ruleStrongAfter,
        before: before.length,
        after: after.length,
      },
      redisRestart: { at: redisAt, signal: k.redisSignal, ...(rr ?? {}) },
      timeline: ticks,
      checks,
      info,
    });
    console.log(`\nwrote ${file}`);
    return { file, failed: failedChecks };
  } finally {
    for (const p of procs) await p.stop().catch(() => undefined);
  }
}

try {
  const { failed } = await runSoakBench();
  // Failed checks are reported, not fatal: the numbers are the product.
  if (failed > 0) console.log(`\n${failed} soak check(s) failed`);
} catch (err) {
  console.error(`soak bench failed: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
}
process.exit(0);
