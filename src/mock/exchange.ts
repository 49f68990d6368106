// One request/response pair: abortable waits, outcome bookkeeping, and delivery of a computed Reply
// under the resolved fault (delays, status, stall, cut, destroy).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { OpenAIErrorBody } from '../errors.js';
import type { Reply } from './common.js';
import type { ResolvedFault } from './faults.js';
import type { MockRequestLog } from './log.js';

const JSON_HEADERS = { 'content-type': 'application/json' } as const;
const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } as const;

const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  408: 'timeout_error',
  429: 'rate_limit_error',
  504: 'timeout_error',
};
function errorType(status: number): string {
  return ERROR_TYPES[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
}

export class Exchange {
  closed = false;
  private wake: (() => void) | null = null;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly entry: MockRequestLog | null,
  ) {
    res.once('close', this.onClose);
  }

  // 'close' fires both after a normal finish and when the client goes away first.
  private readonly onClose = (): void => {
    this.closed = true;
    if (this.entry !== null && this.entry.outcome === 'pending') {
      this.entry.outcome = this.res.writableFinished ? 'completed' : 'aborted';
    }
    this.wake?.();
  };

  /** Resolves true after `ms`, or false as soon as the client disconnects. */
  wait(ms: number): Promise<boolean> {
    if (ms <= 0 || this.closed) return Promise.resolve(!this.closed);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve(!this.closed);
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve(false);
      };
    });
  }

  markFault(): void {
    if (this.entry !== null) this.entry.outcome = 'fault';
  }

  sendJson(status: number, body: string, headers: Record<string, string> = JSON_HEADERS): void {
    this.res.writeHead(status, headers);
    this.res.end(body);
  }

  sendError(status: number, body: OpenAIErrorBody): void {
    this.sendJson(status, JSON.stringify(body));
  }

  /** Drop the connection without a response (or mid-response). */
  destroy(): void {
    this.markFault();
    this.req.socket.destroy();
  }

  /** Send `reply`, honouring delays and the failure of the resolved fault. */
  async deliver(reply: Reply, f: ResolvedFault): Promise<void> {
    const failure = f.failure;
    if (failure?.kind === 'destroy') return this.destroy();
    const plainDelay = reply.kind === 'json' ? f.ttftMs : 0;
    if (!(await this.wait(f.latencyMs + plainDelay))) return;
    if (failure?.kind === 'status') {
      this.markFault();
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (failure.retryAfterS !== null) headers['retry-after'] = String(failure.retryAfterS);
      const body: OpenAIErrorBody = {
        error: {
          message: `mock-upstream: injected fault, HTTP ${failure.status}`,
          type: errorType(failure.status),
          param: null,
          code: failure.status === 429 ? 'rate_limit_exceeded' : 'injected_fault',
        },
      };
      return this.sendJson(failure.status, JSON.stringify(body), headers);
    }
    if (failure?.kind === 'corrupt') {
      this.markFault();
      if (reply.kind === 'json') return this.sendJson(200, corrupted(reply.body, failure.how));
      const events = reply.events.slice();
      const at = Math.min(failure.afterChunks, events.length - 1);
      const data = (events[at] as string).slice('data: '.length, -2);
      events[at] = `data: ${corrupted(data, failure.how)}\n\n`;
      return this.stream(events, { ...f, failure: null });
    }
    if (reply.kind === 'json') {
      // A plain answer has no chunks: "stall after N chunks" holds it, "cut after N" drops it after headers.
      if (failure !== null) {
        if (failure.kind === 'cut_after') {
          this.res.writeHead(200, JSON_HEADERS);
          this.res.flushHeaders();
          return this.cutAfterFlush();
        }
        return; // stall: hold until the client goes away ('aborted' in the log)
      }
      return this.sendJson(200, reply.body);
    }
    return this.stream(reply.events, f);
  }

  private async stream(events: string[], f: ResolvedFault): Promise<void> {
    const res = this.res;
    const failure = f.failure;
    // Lean path (the benchmark baseline): nothing to wait for, one write.
    if (failure === null && f.ttftMs === 0 && f.interTokenMs === 0) {
      res.writeHead(200, SSE_HEADERS);
      res.end(events.join(''));
      return;
    }
    res.writeHead(200, SSE_HEADERS);
    res.flushHeaders();
    if (failure?.kind === 'stall') return;
    const limit =
      failure?.kind === 'stall_after' || failure?.kind === 'cut_after' ? Math.min(failure.chunks, events.length) : events.length;
    if (!(await this.wait(f.ttftMs))) return;
    let last: Promise<void> = Promise.resolve();
    for (let i = 0; i < limit; i++) {
      if (i > 0 && f.interTokenMs > 0 && !(await this.wait(f.interTokenMs))) return;
      if (this.closed) return;
      const chunk = events[i]!;
      last = new Promise((resolve) => res.write(chunk, () => resolve()));
    }
    if (failure?.kind === 'stall_after') return;
    if (failure?.kind === 'cut_after') {
      await last; // let the chunks reach the kernel, then cut: no terminating chunk, no [DONE]
      return this.destroy();
    }
    res.end();
  }

  private cutAfterFlush(): void {
    // flushHeaders has no callback; the header write is handed to the socket synchronously, so one
    // turn of the event loop is enough before dropping the connection.
    setImmediate(() => this.destroy());
  }
}

/** A JSON text made invalid: cut in half (a truncated answer) or replaced by what a broken proxy might send. */
function corrupted(json: string, how: 'truncated' | 'garbage'): string {
  return how === 'truncated' ? json.slice(0, Math.max(1, Math.floor(json.length / 2))) : '<html><body>502 Bad Gateway</body></html>';
}
