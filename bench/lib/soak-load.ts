// The soak bench's load: a closed loop of `concurrency` workers on an undici Pool (one keep-alive
// connection each) sending a seeded mix of plain and streamed chat completions to the routed policy, a
// known share of them carrying a fault for the mock upstream in the body's `mock` field (the gateway
// forwards unknown body fields untouched). Every response is read to its end and checked (a stream must
// end with `data: [DONE]` and carry no error event); every request is kept as one Sample.
import { Pool } from 'undici';
import { RELOAD_KEYWORD, SOAK_POLICY, STRONG_KEYWORD, WEAK_MODEL } from './soak-config.js';
import { seededRandom } from '../../src/util/random.js';

export type Mode = 'plain' | 'stream';

/**
 * The fault a request carries. Recoverable (the client must get a 200): `retry` = the first attempt
 * answers 500, the retry on the same backend succeeds; `fallback` = the chosen backend (weak) answers 500
 * to every attempt, the fallback (strong) answers. Injected failures (the client may see an error):
 * `fail` = every attempt on every backend answers 500; `cut` (streams) = the stream is cut after 3 chunks.
 */
export type FaultKind = 'none' | 'retry' | 'fallback' | 'fail' | 'cut';
export const FAULT_KINDS: readonly FaultKind[] = ['none', 'retry', 'fallback', 'fail', 'cut'];
/** Faults the client is allowed to see as a failed request. */
export const INJECTED_FAILURES: ReadonlySet<FaultKind> = new Set(['fail', 'cut']);

/** What the prompt routes to: `strong` (keyword rule in both configs), `reload` (weak, then strong after the reload), `default` (weak). */
export type Topic = 'strong' | 'reload' | 'default';

export interface Sample {
  /** ms since the load started, when the request was sent and when its response ended (or failed). */
  start: number;
  end: number;
  /** ms from sending to the first body chunk. */
  ttfb: number;
  mode: Mode;
  fault: FaultKind;
  topic: Topic;
  ok: boolean;
  /** Why it failed, e.g. `HTTP 502 upstream_unavailable`, `stream error event upstream_stream_failed`. */
  error: string | null;
  status: number | null;
  /** x-signalman-model: the backend that answered. */
  backend: string | null;
  /** x-signalman-request-id: the id of the gateway's record. */
  id: string | null;
}

export interface SoakLoadSpec {
  origin: string;
  concurrency: number;
  durationMs: number;
  /** Share of requests streamed, 0..1. */
  streamShare: number;
  /** Share of requests carrying a fault, 0..1 (40 % retry, 40 % fallback, 20 % fail or cut). */
  faultShare: number;
  /** Distinct prompts cycled through; 0 = every request's prompt is new. */
  prompts: number;
  seed: number;
}

export interface SoakLoad {
  /** performance.now() when the load started: Sample times are relative to it. */
  t0: number;
  samples: Sample[];
  /** ms since the load started. */
  elapsed(): number;
  /** Resolves once the duration is over and every request in flight has ended. */
  done: Promise<void>;
}

const WORDS = ['latency', 'budget', 'router', 'summary', 'pipeline', 'cache', 'window', 'token', 'river', 'garden', 'engine', 'ledger'];

function topicOf(p: number): Topic {
  const r = p % 8;
  return r < 2 ? 'strong' : r === 2 ? 'reload' : 'default';
}

function promptText(p: number): string {
  const topic = topicOf(p);
  const w = (k: number) => WORDS[(p * 7 + k * 13) % WORDS.length]!;
  const subject =
    topic === 'strong'
      ? `the ${STRONG_KEYWORD} about the ${w(1)}`
      : topic === 'reload'
        ? `the ${RELOAD_KEYWORD} for the ${w(1)}`
        : `the ${w(1)}`;
  return `Soak prompt ${p}: explain ${subject} and the ${w(2)} ${w(3)} in one short sentence.`;
}

/** Picks the next request of the mix: its mode, fault, prompt and body. */
export function makeMix(spec: Pick<SoakLoadSpec, 'streamShare' | 'faultShare' | 'prompts' | 'seed'>) {
  const next = seededRandom(spec.seed);
  let n = 0;
  return (): { mode: Mode; fault: FaultKind; topic: Topic; body: string } => {
    const i = n++;
    const mode: Mode = next() < spec.streamShare ? 'stream' : 'plain';
    const u = next();
    let fault: FaultKind = 'none';
    if (u < spec.faultShare) {
      const v = u / spec.faultShare;
      fault = v < 0.4 ? 'retry' : v < 0.8 ? 'fallback' : mode === 'stream' && i % 2 === 0 ? 'cut' : 'fail';
    }
    let p = spec.prompts > 0 ? Math.floor(next() * spec.prompts) : i;
    // A fallback fault fails the weak backend: its prompt must be one that routes to weak in both configs.
    if (fault === 'fallback' && topicOf(p) !== 'default') p = p - (p % 8) + 3;
    const mock =
      fault === 'retry'
        ? { status: 500, fail_times: 1, key: `soak-${i}` }
        : fault === 'fallback'
          ? { status: 500, only_models: [WEAK_MODEL] }
          : fault === 'fail'
            ? { status: 500 }
            : fault === 'cut'
              ? { cut_after_chunks: 3 }
              : undefined;
    const body = JSON.stringify({
      model: SOAK_POLICY,
      messages: [{ role: 'user', content: promptText(p) }],
      ...(mode === 'stream' ? { stream: true } : {}),
      ...(mock === undefined ? {} : { mock }),
    });
    return { mode, fault, topic: topicOf(p), body };
  };
}

const HEADERS = { 'content-type': 'application/json', authorization: 'Bearer soak' };

function errorCode(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: { code?: unknown; type?: unknown } };
    return String(j.error?.code ?? j.error?.type ?? 'no error code');
  } catch {
    return 'non-JSON body';
  }
}

/** Why a 200 answer is broken, or null when it is whole. */
function checkBody(mode: Mode, text: string): string | null {
  if (mode === 'stream') {
    const at = text.indexOf('data: {"error"');
    if (at >= 0) {
      const eol = text.indexOf('\n', at);
      return `stream error event ${errorCode(text.slice(at + 6, eol < 0 ? undefined : eol))}`;
    }
    if (!text.trimEnd().endsWith('data: [DONE]')) return 'stream ended without [DONE]';
    if (!text.includes('chat.completion.chunk')) return 'stream without chunks';
    return null;
  }
  try {
    const j = JSON.parse(text) as { object?: unknown; choices?: Array<{ message?: { content?: unknown } }> };
    if (j.object !== 'chat.completion' || typeof j.choices?.[0]?.message?.content !== 'string')
      return 'plain body is not a chat completion';
    return null;
  } catch {
    return 'plain body is not JSON';
  }
}

const header = (v: string | string[] | undefined): string | null => (Array.isArray(v) ? (v[0] ?? null) : (v ?? null));

/** Sends one request of the mix on `pool` and reads its answer to the end. */
export async function sendOne(
  pool: Pool,
  t0: number,
  req: { mode: Mode; fault: FaultKind; topic: Topic; body: string },
  timeoutMs = 30_000,
): Promise<Sample> {
  const start = performance.now();
  const s: Sample = {
    start: start - t0,
    end: 0,
    ttfb: 0,
    mode: req.mode,
    fault: req.fault,
    topic: req.topic,
    ok: false,
    error: null,
    status: null,
    backend: null,
    id: null,
  };
  let first = 0;
  try {
    const res = await pool.request({
      method: 'POST',
      path: '/v1/chat/completions',
      headers: HEADERS,
      body: req.body,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    s.status = res.statusCode;
    s.id = header(res.headers['x-signalman-request-id']);
    s.backend = header(res.headers['x-signalman-model']);
    let text = '';
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (first === 0) first = performance.now();
      text += chunk.toString('utf8');
    }
    s.error = res.statusCode !== 200 ? `HTTP ${res.statusCode} ${errorCode(text)}` : checkBody(req.mode, text);
  } catch (err) {
    const e = err as Error & { code?: string };
    s.error = `transport ${e.code ?? e.name}: ${e.message}`.slice(0, 160);
  }
  const end = performance.now();
  s.end = end - t0;
  s.ttfb = (first === 0 ? end : first) - start;
  s.ok = s.error === null;
  return s;
}

export function startSoakLoad(spec: SoakLoadSpec): SoakLoad {
  const pool = new Pool(spec.origin, { connections: spec.concurrency, pipelining: 1, keepAliveTimeout: 60_000 });
  const next = makeMix(spec);
  const t0 = performance.now();
  const samples: Sample[] = [];
  let stopped = false;
  const worker = async (): Promise<void> => {
    while (!stopped) samples.push(await sendOne(pool, t0, next()));
  };
  const timer = setTimeout(() => {
    stopped = true;
  }, spec.durationMs);
  const done = Promise.all(Array.from({ length: spec.concurrency }, worker)).then(async () => {
    clearTimeout(timer);
    await pool.close();
  });
  return { t0, samples, elapsed: () => performance.now() - t0, done };
}
