// Parts 2 and 3 of the routing bench, through a real gateway process in front of the mock upstream:
// throughput and latency of routed chat completions per policy, and whether pass-through and lexical
// requests keep their latency while use-lite-routed requests (worker-thread embeddings) are in flight.
// Every routed request carries a prompt never sent before, so the embedding cache always misses.
import { request } from 'undici';
import { runLoad, summarize, type LatencySummary, type LoadResult } from './loadgen.js';
import { cpuSeconds, mainThreadCpuSeconds, rssBytes } from './proc.js';
import { chatBody, STREAM, syntheticPrompt } from './prompts.js';
import { PASSTHROUGH_MODEL, type PolicySpec } from './routing-config.js';
import type { ServerProc } from './servers.js';

export interface GatewayKnobs {
  rounds: number;
  durationMs: number;
  warmupMs: number;
  prewarmMs: number;
  concurrency: number;
  fgConcurrency: number;
  bgConcurrency: number;
}

/** A policy name, or 'passthrough' (the client names a backend: no policy runs). */
export type GwTarget = string;

/** What one measured window of load gave. */
interface LoadCell {
  concurrency: number;
  requests: number;
  errors: number;
  firstError: string | null;
  rps: number;
  totalMs: LatencySummary;
}

export interface GwCell extends LoadCell {
  round: number;
  target: GwTarget;
  position: number;
  cpuUsPerReq: number;
  /** The main thread's share of it (the event loop; scoring and embedding threads excluded). */
  loopCpuUsPerReq: number;
  /**
   * The rest of the machine's work per request: the mock upstream (when runThroughput was given it) and
   * this process, the load generator. The three share the cores with the gateway.
   */
  mockCpuUsPerReq: number;
  loadCpuUsPerReq: number;
  rssBytes: number;
}

export interface InterferenceCell extends LoadCell {
  round: number;
  foreground: GwTarget;
  background: 'none' | string;
  /** Gateway process CPU (all its threads) over the foreground window, in cores: the worker's share shows here. */
  gatewayCores: number;
  /** The background's own numbers over its whole run (null when alone). */
  bg: { concurrency: number; rps: number; p50: number; p99: number; errors: number } | null;
}

const PATH = '/v1/chat/completions';
const HEADERS = { 'content-type': 'application/json', authorization: 'Bearer bench' };
const isCompletion = (_s: number, body: string) => body.includes('"chat.completion"');

/** Distinct prompts forever: one counter per stream, shared by every cell of the run. */
const counters = new Map<number, number>();
export function freshBody(model: string, stream: number): () => string {
  return () => {
    const i = counters.get(stream) ?? 0;
    counters.set(stream, i + 1);
    return chatBody(model, syntheticPrompt(stream, i));
  };
}

const modelOf = (t: GwTarget, passthrough = PASSTHROUGH_MODEL) => (t === 'passthrough' ? passthrough : t);

/** One /v1/route per policy and three checked completions per target; throws naming the broken one. */
export async function preflight(gw: ServerProc, policies: readonly PolicySpec[]): Promise<void> {
  for (const p of policies) {
    const res = await request(`${gw.origin}/v1/route`, {
      method: 'POST',
      headers: HEADERS,
      body: chatBody(p.name, syntheticPrompt(STREAM.gateway, 1e9)),
    });
    const text = await res.body.text();
    const d = JSON.parse(text) as { router?: string; embedder?: string | null };
    if (res.statusCode !== 200 || d.router !== p.router || (p.embedder !== null && !d.embedder?.startsWith(p.embedder))) {
      throw new Error(
        `policy ${p.name}: /v1/route answered ${res.statusCode} ${text.slice(0, 300)}; expected router '${p.router}' with embedder '${p.embedder}'`,
      );
    }
  }
  for (const t of ['passthrough', ...policies.map((p) => p.name)]) {
    const r = await runLoad({
      origin: gw.origin,
      path: PATH,
      headers: HEADERS,
      body: freshBody(modelOf(t), STREAM.gateway),
      concurrency: 1,
      warmupMs: 0,
      durationMs: 0,
      requests: 3,
      maxMs: 30_000,
      check: isCompletion,
      stopOnError: true,
    });
    if (r.errors > 0 || r.ok === 0)
      throw new Error(`${t}: chat completion through the gateway failed: ${r.firstError ?? 'no answer'}\n${gw.output().slice(-800)}`);
  }
}

async function cell(
  gw: ServerProc,
  t: GwTarget,
  stream: number,
  c: number,
  k: GatewayKnobs,
  passthrough = PASSTHROUGH_MODEL,
  mock?: ServerProc,
): Promise<{
  r: LoadResult;
  cpuUsPerReq: number;
  loopCpuUsPerReq: number;
  mockCpuUsPerReq: number;
  loadCpuUsPerReq: number;
  cores: number;
}> {
  let cpu0 = Number.NaN;
  let cpu1 = Number.NaN;
  let loop0 = Number.NaN;
  let loop1 = Number.NaN;
  let mock0 = Number.NaN;
  let mock1 = Number.NaN;
  let load0: NodeJS.CpuUsage | null = null;
  let loadUs = Number.NaN;
  const r = await runLoad({
    origin: gw.origin,
    path: PATH,
    headers: HEADERS,
    body: freshBody(modelOf(t, passthrough), stream),
    concurrency: c,
    warmupMs: k.warmupMs,
    durationMs: k.durationMs,
    check: isCompletion,
    onWindow: (edge) => {
      if (edge === 'start') {
        cpu0 = cpuSeconds(gw.pid) ?? Number.NaN;
        loop0 = mainThreadCpuSeconds(gw.pid) ?? Number.NaN;
        if (mock) mock0 = cpuSeconds(mock.pid) ?? Number.NaN;
        load0 = process.cpuUsage();
      } else {
        cpu1 = cpuSeconds(gw.pid) ?? Number.NaN;
        loop1 = mainThreadCpuSeconds(gw.pid) ?? Number.NaN;
        if (mock) mock1 = cpuSeconds(mock.pid) ?? Number.NaN;
        const d = process.cpuUsage(load0 ?? undefined);
        loadUs = d.user + d.system;
      }
    },
  });
  const n = r.totalMs.length;
  const perReq = (s: number) => (n > 0 ? (s * 1e6) / n : Number.NaN);
  return {
    r,
    cpuUsPerReq: perReq(cpu1 - cpu0),
    loopCpuUsPerReq: perReq(loop1 - loop0),
    mockCpuUsPerReq: perReq(mock1 - mock0),
    loadCpuUsPerReq: perReq(loadUs / 1e6),
    cores: (cpu1 - cpu0) / r.elapsedS,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** After a slow-embedder cell the worker may still be cleaning up; the next cell must not pay for it. */
const SETTLE_MS = 1000;

/**
 * Every target at c=`concurrency`, `rounds` times. Fast targets rotate their order each round; slow
 * (worker-thread embedder) ones run after them, then the gateway gets a moment to settle.
 */
export async function runThroughput(
  gw: ServerProc,
  policies: ReadonlyArray<Pick<PolicySpec, 'name' | 'slow'>>,
  k: GatewayKnobs,
  log: (line: string) => void,
  /** The backend 'passthrough' requests name (the bench's own config: 'strong'). */
  passthrough = PASSTHROUGH_MODEL,
  /** The mock upstream, to count its CPU per request too. */
  mock?: ServerProc,
): Promise<GwCell[]> {
  const fast: GwTarget[] = ['passthrough', ...policies.filter((p) => !p.slow).map((p) => p.name)];
  const slow: GwTarget[] = policies.filter((p) => p.slow).map((p) => p.name);
  if (k.prewarmMs > 0) {
    for (const t of [...fast, ...slow])
      await runLoad({
        origin: gw.origin,
        path: PATH,
        headers: HEADERS,
        body: freshBody(modelOf(t, passthrough), STREAM.gateway),
        concurrency: k.concurrency,
        warmupMs: 0,
        durationMs: k.prewarmMs,
      });
    if (slow.length > 0) await sleep(SETTLE_MS);
  }
  const cells: GwCell[] = [];
  for (let round = 0; round < k.rounds; round++) {
    const shift = round % fast.length;
    const line: string[] = [];
    for (const [position, t] of [...fast.slice(shift), ...fast.slice(0, shift), ...slow].entries()) {
      const { r, cpuUsPerReq, loopCpuUsPerReq, mockCpuUsPerReq, loadCpuUsPerReq } = await cell(
        gw,
        t,
        STREAM.gateway,
        k.concurrency,
        k,
        passthrough,
        mock,
      );
      const n = r.totalMs.length;
      cells.push({
        round,
        target: t,
        position,
        concurrency: k.concurrency,
        requests: n,
        errors: r.errors,
        firstError: r.firstError,
        rps: n / r.elapsedS,
        totalMs: summarize(r.totalMs),
        cpuUsPerReq,
        loopCpuUsPerReq,
        mockCpuUsPerReq,
        loadCpuUsPerReq,
        rssBytes: rssBytes(gw.pid) ?? Number.NaN,
      });
      line.push(`${t} ${Math.round(n / r.elapsedS)}/s${r.errors ? ` ERR ${r.errors}` : ''}`);
    }
    if (slow.length > 0) await sleep(SETTLE_MS);
    log(`gateway round ${round + 1}/${k.rounds} c=${k.concurrency}: ${line.join(' | ')}`);
  }
  return cells;
}

/**
 * For each foreground target: c=fgConcurrency alone, and again while `background` (a slow-embedder
 * policy) runs c=bgConcurrency of distinct prompts. The background starts a second early so its queue
 * and worker are busy before the foreground window opens, and ends after it. Order alternates by round.
 */
export async function runInterference(
  gw: ServerProc,
  foreground: readonly GwTarget[],
  background: string,
  k: GatewayKnobs,
  log: (line: string) => void,
): Promise<InterferenceCell[]> {
  const LEAD_MS = 1000;
  const cells: InterferenceCell[] = [];
  const one = async (round: number, fg: GwTarget, withBg: boolean): Promise<InterferenceCell> => {
    const bgRun = withBg
      ? runLoad({
          origin: gw.origin,
          path: PATH,
          headers: HEADERS,
          body: freshBody(background, STREAM.background),
          concurrency: k.bgConcurrency,
          warmupMs: 0,
          durationMs: LEAD_MS + k.warmupMs + k.durationMs + 300,
        })
      : null;
    if (bgRun) await sleep(LEAD_MS);
    const { r, cores } = await cell(gw, fg, STREAM.gateway, k.fgConcurrency, k);
    const bg = bgRun ? await bgRun : null;
    if (bg) await sleep(SETTLE_MS);
    const n = r.totalMs.length;
    const bgSum = bg ? summarize(bg.totalMs) : null;
    return {
      round,
      foreground: fg,
      background: withBg ? background : 'none',
      concurrency: k.fgConcurrency,
      requests: n,
      errors: r.errors,
      firstError: r.firstError,
      rps: n / r.elapsedS,
      totalMs: summarize(r.totalMs),
      gatewayCores: cores,
      bg:
        bg && bgSum
          ? { concurrency: k.bgConcurrency, rps: bg.totalMs.length / bg.elapsedS, p50: bgSum.p50, p99: bgSum.p99, errors: bg.errors }
          : null,
    };
  };
  for (let round = 0; round < k.rounds; round++) {
    const line: string[] = [];
    for (const fg of round % 2 === 0 ? foreground : [...foreground].reverse()) {
      for (const withBg of round % 2 === 0 ? [false, true] : [true, false]) {
        const c = await one(round, fg, withBg);
        cells.push(c);
        line.push(
          `${fg}${withBg ? '+bg' : ''} p50 ${c.totalMs.p50.toFixed(2)} p99 ${c.totalMs.p99.toFixed(2)}${c.bg ? ` (bg ${c.bg.rps.toFixed(0)}/s)` : ''}`,
        );
      }
    }
    log(`interference round ${round + 1}/${k.rounds}: ${line.join(' | ')}`);
  }
  return cells;
}
