// Everything that writes a response to the client socket: OpenAI-shaped errors, JSON answers, forwarded
// bodies and streams, and the Server-Timing value every response carries.
import type { ServerResponse } from 'node:http';
import { E, SignalmanError } from '../errors.js';
import { ForwardError, type StreamOutcome } from '../upstream/forward.js';
import { firstInvalidEvent } from '../upstream/sse-check.js';
import { SseFramer } from './sse.js';

/** The Server-Timing value of every response: gateway overhead, routing, upstream (0 where there was none). */
export function serverTiming(totalMs: number, routeMs: number, upstreamMs: number): string {
  const gw = Math.max(0, totalMs - upstreamMs);
  return `gw;desc="gateway overhead";dur=${gw.toFixed(3)}, route;dur=${routeMs.toFixed(3)}, upstream;dur=${upstreamMs.toFixed(3)}`;
}

/** Headers on every response the gateway writes itself. */
const baseHeaders = (id: string, timing: string, length: number) => ({
  'content-type': 'application/json; charset=utf-8',
  'content-length': String(length),
  'x-signalman-request-id': id,
  'server-timing': timing,
});

/** A JSON answer of the gateway's own (not forwarded), written straight to the socket. */
export function sendJson(res: ServerResponse, id: string, status: number, value: unknown, timing: string): void {
  const body = JSON.stringify(value);
  res.writeHead(status, baseHeaders(id, timing, Buffer.byteLength(body)));
  res.end(body);
}

/** An OpenAI-shaped error response; errors show what the gateway cost too (`timing`). */
export function sendError(res: ServerResponse, id: string, e: SignalmanError, timing: string, extra: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify(e.toJSON());
  res.writeHead(e.status, { ...baseHeaders(id, timing, Buffer.byteLength(body)), ...e.headers, ...extra });
  res.end(body);
}

/**
 * A bug's answer: no exception text reaches a client (it can name internals, or echo what a hostile request
 * provoked); the request id in the response header finds the logged stack.
 */
export const internalError = (cause?: unknown): SignalmanError =>
  E.internal("internal error: the gateway logged it under this response's x-signalman-request-id", null, cause);

/** Any thrown value as the error the client sees; never a stack trace or an exception's own message. */
export function toSignalmanError(err: unknown): SignalmanError {
  if (err instanceof SignalmanError) return err;
  if (err instanceof ForwardError) return err.error;
  return internalError(err);
}

/** Whether `e` came from a bug (not from the client or an upstream): log it with its cause's stack. */
export const isBug = (e: SignalmanError): boolean => e.code === 'internal_error';

/** A complete upstream body: already bytes, written as they are. */
export function sendBuffered(res: ServerResponse, status: number, headers: Record<string, string>, body: Buffer): void {
  headers['content-length'] = String(body.length);
  res.writeHead(status, headers);
  res.end(body);
}

/** What pipeStream saw: whether the client went away, and the error the stream ended with. */
export interface StreamEnd {
  aborted: boolean;
  error: SignalmanError | null;
}

/**
 * Pipes an upstream SSE stream to the client at event granularity. A slow client pauses the upstream
 * socket (backpressure) instead of us buffering the completion; a failure after the first byte ends the
 * stream with one error event.
 */
export async function pipeStream(
  res: ServerResponse,
  headers: Record<string, string>,
  s: StreamOutcome,
  /** Sees (and may rewrite) each run of whole events before it is written: usage reading and stripping. */
  inspect: (events: Buffer) => Buffer = (b) => b,
): Promise<StreamEnd> {
  headers['cache-control'] = 'no-cache';
  res.writeHead(200, headers);
  const framer = new SseFramer();
  const { stream } = s;
  const resume = () => stream.resume();
  // An event whose data is not JSON ends the stream: the events before it go out, it and the rest never do.
  let broken: SignalmanError | null = null;
  let stop: ((err: Error) => void) | null = null;
  let checked = true; // forward() already checked the first chunk's whole events
  const send = (chunk: Buffer): boolean => {
    if (broken !== null) return false;
    let framed = framer.push(chunk);
    if (framed.length > 0 && !checked) {
      const bad = firstInvalidEvent(framed);
      if (bad !== -1) {
        broken = E.upstreamBadResponse(`backend '${s.backend.name}' streamed an event whose data is not valid JSON; the stream ends here`);
        framed = framed.subarray(0, bad);
      }
    }
    checked = false;
    const out = framed.length === 0 ? framed : inspect(framed);
    const flowing = out.length === 0 || res.destroyed || res.write(out);
    if (broken !== null) {
      stream.cancel(broken);
      stop?.(broken);
      return false;
    }
    if (flowing) return true;
    res.once('drain', resume);
    return false;
  };
  try {
    send(stream.first);
    if (broken === null) {
      await new Promise<void>((resolve, reject) => {
        stop = reject;
        stream.pipe({ data: send, end: resolve, error: reject });
      });
    }
    if (broken !== null) throw broken;
    const rest = framer.rest();
    if (rest !== null && rest.length > 0 && rest.toString().trim() !== '') {
      throw Object.assign(new Error('stream ended inside an event'), { code: 'UND_ERR_SOCKET' });
    }
    res.end();
    return { aborted: false, error: null };
  } catch (err) {
    res.removeListener('drain', resume);
    if (res.destroyed) return { aborted: true, error: null };
    // A SignalmanError is the gateway's own reason to stop (the shutdown deadline): the client reads it as is.
    const e =
      err instanceof SignalmanError
        ? err
        : (err as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT'
          ? E.upstreamTimeout(
              `backend '${s.backend.name}' went silent mid-stream for longer than stream_idle_timeout_ms (${s.backend.config.stream_idle_timeout_ms} ms)`,
            )
          : E.upstreamStreamFailed(`backend '${s.backend.name}' stream failed after it started: ${(err as Error).message}`);
    endStreamWithError(res, e);
    return { aborted: false, error: e };
  }
}

/**
 * Ends a stream that failed after it started: one OpenAI-shaped error event (the `openai` client turns
 * `data: {"error":…}` into an APIError), then a clean close. Never a stack trace.
 */
export function endStreamWithError(res: ServerResponse, err: SignalmanError): void {
  if (res.destroyed || res.writableEnded) return;
  res.end(`data: ${JSON.stringify(err.toJSON())}\n\n`);
}
