// The three forwarding endpoints are served straight from Node's request event, ahead of Fastify.
// Measured on a 2-core VM at c=16: a minimal node:http + undici proxy spent ~105 µs of CPU per request,
// the same through a Fastify route ~165 µs. For a gateway whose selling point is its overhead, that
// difference is the budget. Everything else (models, route, health, admin, 404s) stays on Fastify.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RuntimeRef } from '../config/runtime-ref.js';
import { E, type SignalmanError } from '../errors.js';
import type { Endpoint } from '../upstream/forward.js';
import { handleForward, sendError, serverTiming, type PipelineDeps } from './pipeline.js';

/** Errors found before routing: the whole time so far is the gateway's. */
const sendEarlyError = (res: ServerResponse, id: string, startedAt: number, e: SignalmanError, extra?: Record<string, string>) =>
  sendError(res, id, e, serverTiming(performance.now() - startedAt, 0, 0), extra);

const ROUTES: Readonly<Record<string, Endpoint>> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
};

export interface FastPathOptions {
  ref: RuntimeRef;
  deps: PipelineDeps;
  nextId: () => string;
  /** Read per request: server.body_limit_bytes applies on reload. */
  bodyLimit: () => number;
  isDraining: () => boolean;
}

/** Returns a request listener that answers forwarding requests and hands everything else to `next`. */
export function createFastPath(o: FastPathOptions, next: (req: IncomingMessage, res: ServerResponse) => void) {
  return function signalmanRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const endpoint = ROUTES[q === -1 ? url : url.slice(0, q)];
    if (endpoint === undefined || req.method !== 'POST') {
      next(req, res);
      return;
    }
    const startedAt = performance.now();
    const id = o.nextId();
    if (o.isDraining()) {
      sendEarlyError(res, id, startedAt, E.shuttingDown('the gateway is shutting down; retry on another instance'), { connection: 'close' });
      return;
    }
    const type = req.headers['content-type'];
    if (type === undefined || !type.toLowerCase().includes('application/json')) {
      drainThen(req, () => sendEarlyError(res, id, startedAt, E.unsupportedMediaType('send the body as JSON with content-type: application/json')));
      return;
    }
    readBody(req, o.bodyLimit(), (e, raw) => {
      if (e === null) return serve(o, endpoint, id, raw as Buffer, req, res, startedAt);
      // The client may still be sending a body we refuse: answer, then close rather than read it all.
      sendEarlyError(res, id, startedAt, e, { connection: 'close' });
      res.once('finish', () => req.destroy());
    });
  };
}

function serve(o: FastPathOptions, endpoint: Endpoint, id: string, raw: Buffer, req: IncomingMessage, res: ServerResponse, startedAt: number): void {
  if (raw.length === 0) return sendEarlyError(res, id, startedAt, E.invalidJson('the request body is empty; send a JSON object'));
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    return sendEarlyError(res, id, startedAt, E.invalidJson(`the request body is not valid JSON: ${(err as Error).message}`));
  }
  const pinned = o.ref.pin();
  if (!pinned) return sendEarlyError(res, id, startedAt, E.notReady('no configuration is loaded yet; see GET /readyz'));
  // handleForward answers every outcome itself; a rejection here is a bug, still answered in OpenAI's shape.
  handleForward(endpoint, pinned.runtime, { id, headers: req.headers, body, res, startedAt }, o.deps).then(pinned.release, (err: unknown) => {
    pinned.release();
    sendEarlyError(res, id, startedAt, E.internal(`internal error: ${(err as Error)?.message ?? String(err)}`));
  });
}

/** Reads the whole body, then calls `done` once. Callbacks, not a Promise: this runs for every request. */
function readBody(req: IncomingMessage, limit: number, done: (e: SignalmanError | null, raw: Buffer | null) => void): void {
  const tooLarge = () => E.bodyTooLarge(`request body is larger than the gateway's limit (server.body_limit_bytes = ${limit})`);
  if (Number(req.headers['content-length']) > limit) return done(tooLarge(), null);
  const chunks: Buffer[] = [];
  let size = 0;
  let settled = false;
  const finish = (e: SignalmanError | null, raw: Buffer | null) => {
    if (settled) return;
    settled = true;
    done(e, raw);
  };
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size > limit) {
      req.removeAllListeners('data');
      finish(tooLarge(), null);
      return;
    }
    chunks.push(c);
  });
  req.once('end', () => finish(null, chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size)));
  req.once('error', () => finish(E.invalidRequest('the request body could not be read'), null));
}

function drainThen(req: IncomingMessage, then: () => void): void {
  req.resume();
  req.once('end', then);
}
