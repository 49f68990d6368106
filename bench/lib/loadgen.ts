// A small closed-loop load generator on undici: `concurrency` workers, each with its own keep-alive
// connection, send the next request as soon as the previous one ends. Every request is timed with
// process.hrtime.bigint(), so latencies resolve to microseconds (autocannon's histogram has 1 ms buckets).
import { Pool } from 'undici';

export interface LoadSpec {
  origin: string;
  path: string;
  headers: Record<string, string>;
  /** The request body, or a function called once per request (e.g. a distinct prompt each time). */
  body: string | (() => string);
  concurrency: number;
  /** Requests before measuring: connections open, JIT warm. */
  warmupMs: number;
  /** Measured window; ignored when `requests` is set. */
  durationMs: number;
  /** A fixed number of measured requests instead of a duration (capped by maxMs). */
  requests?: number;
  maxMs?: number;
  /** Called right before and right after the measured window (CPU readings). */
  onWindow?: (edge: 'start' | 'end') => void;
  /** A response passes when this returns true for its status and full body (checked on a sample). */
  check?: (status: number, body: string) => boolean;
  /** End at the first failed request (preflight checks). */
  stopOnError?: boolean;
}

export interface LoadResult {
  /** Whole-response latency per measured request, ms. */
  totalMs: Float64Array;
  /** Time to the first body chunk per measured request, ms. */
  ttfbMs: Float64Array;
  ok: number;
  errors: number;
  firstError: string | null;
  /** Measured window, seconds. */
  elapsedS: number;
}

const NS_PER_MS = 1e6;

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const pool = new Pool(spec.origin, { connections: spec.concurrency, pipelining: 1, keepAliveTimeout: 60_000 });
  const cap = spec.requests ?? 16_384; // grows by doubling
  let total = new Float64Array(cap);
  let ttfb = new Float64Array(cap);
  let n = 0;
  let ok = 0;
  let errors = 0;
  let firstError: string | null = null;
  let measuring = false;
  let stopped = false;
  let checked = 0;

  const one = async (): Promise<void> => {
    // Built before the clock starts: generating a prompt is the load generator's cost, not the server's.
    const body = typeof spec.body === 'string' ? spec.body : spec.body();
    const t0 = process.hrtime.bigint();
    let tFirst = 0n;
    let status: number;
    let text = '';
    const keepBody = spec.check !== undefined && checked < 8;
    try {
      const res = await pool.request({ method: 'POST', path: spec.path, headers: spec.headers, body });
      status = res.statusCode;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        if (tFirst === 0n) tFirst = process.hrtime.bigint();
        if (keepBody) text += chunk.toString('utf8');
      }
    } catch (err) {
      errors++;
      firstError ??= `request failed: ${(err as Error).message}`;
      if (spec.stopOnError) stopped = true;
      return;
    }
    const t1 = process.hrtime.bigint();
    if (tFirst === 0n) tFirst = t1;
    if (status !== 200 || (keepBody && spec.check?.(status, text) === false)) {
      errors++;
      firstError ??= `HTTP ${status}: ${text.slice(0, 300)}`;
      if (spec.stopOnError) stopped = true;
      return;
    }
    if (keepBody) checked++;
    if (!measuring) return;
    if (n === total.length) {
      const grow = (a: Float64Array) => {
        const b = new Float64Array(a.length * 2);
        b.set(a);
        return b;
      };
      total = grow(total);
      ttfb = grow(ttfb);
    }
    total[n] = Number(t1 - t0) / NS_PER_MS;
    ttfb[n] = Number(tFirst - t0) / NS_PER_MS;
    n++;
    ok++;
    if (spec.requests !== undefined && n >= spec.requests) stopped = true;
  };

  const worker = async (): Promise<void> => {
    while (!stopped) await one();
  };

  const workers = Array.from({ length: spec.concurrency }, worker);
  await new Promise((r) => setTimeout(r, spec.warmupMs));
  errors = 0; // warm-up errors (cold connections) are not the measurement's
  firstError = null;
  spec.onWindow?.('start');
  const tStart = process.hrtime.bigint();
  measuring = true;
  const limitMs = spec.requests !== undefined ? (spec.maxMs ?? 60_000) : spec.durationMs;
  await new Promise<void>((r) => {
    const timer = setTimeout(() => {
      stopped = true;
      r();
    }, limitMs);
    if (spec.requests !== undefined) {
      const poll = setInterval(() => {
        if (stopped) {
          clearInterval(poll);
          clearTimeout(timer);
          r();
        }
      }, 5);
      timer.unref();
    }
  });
  // Requests in flight at the stop line finish but are not counted: the window is closed.
  const tEnd = process.hrtime.bigint();
  measuring = false;
  spec.onWindow?.('end');
  await Promise.all(workers);
  await pool.close();
  return { totalMs: total.slice(0, n), ttfbMs: ttfb.slice(0, n), ok, errors, firstError, elapsedS: Number(tEnd - tStart) / 1e9 };
}

/** Nearest-rank percentile of an ascending-sorted array (q in 0..1). */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  max: number;
}

export function summarize(values: Float64Array): LatencySummary {
  const s = values.slice().sort();
  let sum = 0;
  for (const v of s) sum += v;
  return {
    p50: percentile(s, 0.5),
    p90: percentile(s, 0.9),
    p99: percentile(s, 0.99),
    mean: s.length ? sum / s.length : Number.NaN,
    max: s.length ? s[s.length - 1]! : Number.NaN,
  };
}
