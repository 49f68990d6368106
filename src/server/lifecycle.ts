// Shutting down without failing anyone. On SIGTERM: /readyz turns 503 at once; new requests are still served
// for server.drain_delay_ms (load balancers notice readiness first); then the listener closes, idle
// keep-alive sockets are closed and a request arriving on a kept-alive socket gets 503 shutting_down with
// `connection: close`; in-flight requests and open streams run on until server.drain_timeout_ms after the
// signal, when each open stream gets one `shutting_down` SSE error event and a clean end, and a request not
// yet answered gets a 503. Whatever still holds a socket CUT_GRACE_MS later is closed by force.
import type { Server, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { E, type SignalmanError } from '../errors.js';
import type { Cancellation } from '../upstream/cancel.js';

/** After the deadline: how long requests told to stop get to write their last bytes before sockets are closed. */
export const CUT_GRACE_MS = 1_000;

/**
 * The process's serving state, shared by the app (readiness, refusals) and the pipeline (open requests).
 * Per request on the hot path: one Map set and one delete, no closure.
 */
export class Lifecycle {
  /** From the signal on: /readyz answers 503. */
  draining = false;
  /** Once the listener closes: requests on kept-alive sockets are answered 503 shutting_down. */
  refusing = false;
  /** Forwarding requests being served, by response; their cancellation ends them at the deadline. */
  private readonly open = new Map<ServerResponse, Cancellation>();
  /** Forwarding requests ended since start (any outcome). */
  private ended = 0;
  /** Set at the deadline: a request whose handler starts later (its body was still arriving) ends at once. */
  private cut: SignalmanError | null = null;

  add(res: ServerResponse, cancel: Cancellation): void {
    this.open.set(res, cancel);
    if (this.cut !== null) cancel.cancel(this.cut);
  }

  delete(res: ServerResponse): void {
    this.open.delete(res);
    this.ended++;
  }

  /** Open forwarding requests: streams are those whose headers went out and whose body has not ended. */
  counts(): { requests: number; streams: number } {
    let streams = 0;
    for (const res of this.open.keys()) if (res.headersSent && !res.writableEnded) streams++;
    return { requests: this.open.size - streams, streams };
  }

  get endedCount(): number {
    return this.ended;
  }

  /** Ends every open request with `shutting_down` (pipeline.ts answers it: an SSE error event, or a 503). */
  cancelAll(message: string): number {
    const e = (this.cut = E.shuttingDown(message));
    let n = 0;
    for (const cancel of this.open.values()) {
      if (cancel.aborted) continue;
      cancel.cancel(e);
      n++;
    }
    return n;
  }
}

export interface DrainOptions {
  server: Server;
  /** Stops accepting and resolves once every connection is closed (Fastify's app.close()). */
  closeListener: () => Promise<void>;
  timeoutMs: number;
  delayMs: number;
  log: Logger;
}

export interface DrainSummary {
  /** Forwarding requests that ended on their own during the drain (served during the delay included). */
  finished: number;
  /** Requests and streams ended with `shutting_down` at the deadline. */
  cut_at_deadline: number;
  /** Connections still open CUT_GRACE_MS after the deadline, closed by force. */
  connections_forced: number;
  drain_ms: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

/** Whether `p` settles within `ms`; the timer does not outlive the answer. */
function settledWithin(p: Promise<void>, ms: number): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const t = setTimeout(() => resolve(false), Math.max(0, ms));
    p.then(
      () => {
        clearTimeout(t);
        resolve(true);
      },
      (err: unknown) => {
        clearTimeout(t);
        reject(err);
      },
    );
  });
}

/** Runs the drain; resolves once every connection is closed. */
export async function drain(state: Lifecycle, o: DrainOptions): Promise<DrainSummary> {
  const t0 = performance.now();
  state.draining = true;
  const endedBefore = state.endedCount;
  const delayMs = Math.min(o.delayMs, o.timeoutMs);
  o.log.info({ ...state.counts(), drain_timeout_ms: o.timeoutMs, drain_delay_ms: delayMs }, 'shutdown: draining (readyz 503)');
  if (delayMs > 0) await sleep(delayMs);
  state.refusing = true;
  // Keep-alive sockets that finish their last request during the drain are closed at once, not after the
  // keep-alive timeout (the listener's close does it once, for the sockets idle at that moment).
  const sweep = setInterval(() => o.server.closeIdleConnections(), 50);
  let cut = 0;
  let forced = 0;
  let finished: number;
  try {
    const closed = o.closeListener();
    if (delayMs > 0) o.log.info(state.counts(), 'shutdown: listener closed');
    const inTime = await settledWithin(closed, t0 + o.timeoutMs - performance.now());
    finished = state.endedCount - endedBefore;
    if (!inTime) {
      cut = state.cancelAll(
        `the gateway is shutting down: this request was still open ${o.timeoutMs} ms after the signal (server.drain_timeout_ms)`,
      );
      if (!(await settledWithin(closed, CUT_GRACE_MS))) {
        forced = await new Promise<number>((r) => o.server.getConnections((err, n) => r(err ? 0 : n)));
        o.server.closeAllConnections();
      }
      await closed;
    }
  } finally {
    clearInterval(sweep);
  }
  return { finished, cut_at_deadline: cut, connections_forced: forced, drain_ms: Math.round(performance.now() - t0) };
}
