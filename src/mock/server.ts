// The OpenAI-compatible mock upstream on bare node:http. It is the "direct" baseline in latency
// benchmarks, so the hot path is: suffix match, read body, JSON.parse, build, one write. No logger.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { E, SignalmanError } from '../errors.js';
import { chatCompletion } from './chat.js';
import type { GenSettings, Reply } from './common.js';
import { completion } from './completions.js';
import { embeddings } from './embeddings.js';
import { Exchange } from './exchange.js';
import { FailCounter, type FaultDefaults, FaultSpecError, readFaultSpec, resolveFault } from './faults.js';
import { type MockRequestLog, RequestLog } from './log.js';
import { listModels, retrieveModel } from './models.js';

const ms = z.number().int().min(0).max(600_000);
export const MockOptions = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(0), // 0 = ephemeral
    latencyMs: ms.default(0),
    ttftMs: ms.default(0),
    interTokenMs: ms.default(0),
    completionTokens: z.number().int().min(1).max(100_000).default(24), // answer length without max_tokens
    embeddingDim: z.number().int().min(1).max(8192).default(256),
    logSize: z.number().int().min(0).max(1_000_000).default(1000), // 0 turns the request log off
  })
  .strict();
/** What callers pass (every field optional). */
export type MockOptions = z.input<typeof MockOptions>;

export type { MockOutcome, MockRequestLog } from './log.js';

export interface MockUpstream {
  /** http://host:port, no trailing slash. */
  url: string;
  port: number;
  requests(): MockRequestLog[];
  reset(): void;
  close(): Promise<void>;
}

type Build = (body: unknown, s: GenSettings) => Reply;
interface Route {
  suffix: string;
  method: 'GET' | 'POST';
  build: Build;
}
// Matched on the path suffix so one mock can play several providers (/weak/v1/…, /strong/v1/…).
// '/chat/completions' must come before '/completions', which is also its suffix.
const ROUTES: readonly Route[] = [
  { suffix: '/chat/completions', method: 'POST', build: chatCompletion },
  { suffix: '/completions', method: 'POST', build: completion },
  { suffix: '/embeddings', method: 'POST', build: embeddings },
  { suffix: '/models', method: 'GET', build: listModels },
];
const MODEL_BY_ID = /\/models\/([^/]+)$/;
const MAX_BODY_BYTES = 32 * 2 ** 20;

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(E.bodyTooLarge(`request body is larger than ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function parseJson(buf: Buffer): unknown {
  if (buf.length === 0) throw E.invalidJson('request body is empty: send a JSON object');
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw E.invalidJson(`request body is not valid JSON (${(err as Error).message})`);
  }
}

function errorBody(err: unknown): { status: number; body: string } {
  if (err instanceof SignalmanError) return { status: err.status, body: JSON.stringify(err.toJSON()) };
  if (err instanceof FaultSpecError) return { status: 400, body: JSON.stringify(E.invalidRequest(err.message, err.param).toJSON()) };
  return { status: 500, body: JSON.stringify(E.internal(`mock-upstream: ${(err as Error)?.message ?? String(err)}`).toJSON()) };
}

export async function startMockUpstream(opts: MockOptions = {}): Promise<MockUpstream> {
  const o = MockOptions.parse(opts);
  const settings: GenSettings = { completionTokens: o.completionTokens, embeddingDim: o.embeddingDim };
  const defaults: FaultDefaults = { latencyMs: o.latencyMs, ttftMs: o.ttftMs, interTokenMs: o.interTokenMs };
  const log = new RequestLog(o.logSize);
  const failCounter = new FailCounter();
  const reset = (): void => {
    log.clear();
    failCounter.clear();
  };

  async function handleApi(req: IncomingMessage, res: ServerResponse, path: string, route: Route | null): Promise<void> {
    const x = new Exchange(req, res, log.record(path, req.headers, Date.now()));
    try {
      const modelId = route === null ? MODEL_BY_ID.exec(path)?.[1] : undefined;
      if (route === null && modelId === undefined) {
        throw E.notFound(
          `mock-upstream: no route for ${req.method} ${path}; try /v1/chat/completions, /v1/completions, /v1/embeddings or /v1/models`,
        );
      }
      const method = route?.method ?? 'GET';
      if (req.method !== method) throw E.methodNotAllowed(`mock-upstream: ${path} expects ${method}, got ${req.method}`);
      const body = method === 'POST' ? parseJson(await readBody(req)) : null;
      const obj = body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : null;
      const model = typeof obj?.model === 'string' ? obj.model : null;
      if (x.entry !== null) {
        x.entry.body = body;
        x.entry.model = model;
      }
      const spec = readFaultSpec(req.headers['x-mock-fault'], obj?.mock);
      const reply = route !== null ? route.build(body, settings) : retrieveModel(decodeURIComponent(modelId!));
      await x.deliver(reply, resolveFault(spec, defaults, { path, model, body }, failCounter));
    } catch (err) {
      if (x.closed || res.headersSent) return;
      const { status, body } = errorBody(err);
      x.sendJson(status, body);
    }
  }

  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    // Control endpoints are not logged: reading the log must not change it.
    if (path === '/healthz') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    if (path === '/__mock/requests' && req.method === 'GET') {
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(log.list()));
    }
    if (path === '/__mock/reset' && req.method === 'POST') {
      reset();
      return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    }
    let route: Route | null = null;
    for (const r of ROUTES) {
      if (path.endsWith(r.suffix)) {
        route = r;
        break;
      }
    }
    void handleApi(req, res, path, route);
  }

  // keepAliveTimeout above typical client pool timeouts (undici: 4 s) so the client, not the server,
  // closes idle sockets; otherwise a request can race a server-side close and fail with ECONNRESET.
  const server = createServer({ keepAlive: true, noDelay: true }, onRequest);
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000; // must exceed keepAliveTimeout
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const hostForUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${hostForUrl}:${port}`,
    port,
    requests: () => log.list(),
    reset,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Stalled and keep-alive sockets would hold close() open forever.
        server.closeAllConnections();
      }),
  };
}
