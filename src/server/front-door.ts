// The one front door for API requests with a JSON body: served straight from Node's request event,
// ahead of Fastify. Measured on a 2-core VM at c=16: a minimal node:http + undici proxy spent ~105 µs of
// CPU per request, the same through a Fastify route ~165 µs. For a gateway whose selling point is its
// overhead, that difference is the budget. Everything else (models, health, admin, 404s) stays on Fastify.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { ClientKey } from '../auth/keys.js';
import { SignalmanError } from '../errors.js';
import type { Runtime } from '../runtime/compile.js';
import type { RuntimeRef } from '../runtime/runtime-ref.js';
import { isJson, parseJson, readBody, refuse } from './request-checks.js';
import { internalError, sendError, serverTiming } from './respond.js';

/** One API request whose JSON body has been read and parsed (not yet validated). */
export interface ApiRequest {
  id: string;
  headers: IncomingHttpHeaders;
  body: unknown;
  res: ServerResponse;
  /** performance.now() when the request arrived. */
  startedAt: number;
  /** The client key that authenticated it; null while the config has no `keys:` (open API). */
  key: ClientKey | null;
}

/** Answers every outcome itself (errors included); a rejection is a bug, still answered as a 500. */
export type ApiHandler = (req: ApiRequest, runtime: Runtime) => Promise<void>;

export interface FrontDoorOptions {
  ref: RuntimeRef;
  /** POST path -> handler. */
  routes: Readonly<Record<string, ApiHandler>>;
  nextId: () => string;
  /** Read per request: server.body_limit_bytes applies on reload. */
  bodyLimit: () => number;
  isDraining: () => boolean;
  /** Read per request: server.max_json_depth. */
  maxJsonDepth: () => number;
  /** Told of every request refused before its handler ran (telemetry records them too). */
  onRefused?: (path: string, id: string, startedAt: number, e: SignalmanError) => void;
  /** Told of a handler's unexpected failure (a bug), with its stack: the client only sees 'internal error'. */
  onBug: (err: unknown, id: string) => void;
}

/** Errors found before a handler runs: the whole time so far is the gateway's. */
const sendEarlyError = (res: ServerResponse, id: string, startedAt: number, e: SignalmanError, extra?: Record<string, string>) =>
  sendError(res, id, e, serverTiming(performance.now() - startedAt, 0, 0), extra);

/** Returns a request listener that answers the API's POST routes and hands everything else to `next`. */
export function createFrontDoor(o: FrontDoorOptions, next: (req: IncomingMessage, res: ServerResponse) => void) {
  return function signalmanRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const handler = req.method === 'POST' ? o.routes[path] : undefined;
    if (handler === undefined) {
      next(req, res);
      return;
    }
    const startedAt = performance.now();
    const id = o.nextId();
    if (o.isDraining()) {
      refused(o, path, res, id, startedAt, refuse.draining(), { connection: 'close' });
      return;
    }
    if (!isJson(req.headers['content-type'])) {
      drainThen(req, () => refused(o, path, res, id, startedAt, refuse.notJson()));
      return;
    }
    readBody(req, o.bodyLimit(), (e, raw, drained) => {
      if (e !== null) {
        // readBody drained what it could: answer and close. If the client is still sending past the drain
        // bounds, the socket is destroyed (it may see a reset instead of the answer; nothing better exists).
        refused(o, path, res, id, startedAt, e, { connection: 'close' });
        if (!drained) res.once('finish', () => req.destroy());
        return;
      }
      const pinned = o.ref.pin();
      if (!pinned) return refused(o, path, res, id, startedAt, refuse.notReady());
      // Who is asking comes first (as with OpenAI): a caller without a valid key learns nothing about its body.
      let key: ClientKey | null = null;
      if (!pinned.runtime.keys.open) {
        const found = pinned.runtime.keys.authenticate(req.headers.authorization);
        if (found instanceof SignalmanError) {
          pinned.release();
          return refused(o, path, res, id, startedAt, found);
        }
        key = found;
      }
      const parsed = parseJson(raw as Buffer, o.maxJsonDepth());
      if (parsed.error !== null) {
        pinned.release();
        return refused(o, path, res, id, startedAt, parsed.error);
      }
      handler({ id, headers: req.headers, body: parsed.body, res, startedAt, key }, pinned.runtime).then(pinned.release, (err: unknown) => {
        pinned.release();
        o.onBug(err, id);
        sendEarlyError(res, id, startedAt, internalError());
      });
    });
  };
}

/** Answers a request refused before its handler ran, and tells whoever records them. */
function refused(
  o: FrontDoorOptions,
  path: string,
  res: ServerResponse,
  id: string,
  startedAt: number,
  e: SignalmanError,
  extra?: Record<string, string>,
): void {
  sendEarlyError(res, id, startedAt, e, extra);
  o.onRefused?.(path, id, startedAt, e);
}

function drainThen(req: IncomingMessage, then: () => void): void {
  req.resume();
  req.once('end', then);
}
