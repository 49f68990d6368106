// buildApp(): the Fastify app, no listen — tests get a fresh app each, the CLI listens elsewhere.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { E, SignalmanError } from '../errors.js';
import type { RuntimeRef } from '../runtime/runtime-ref.js';
import type { Telemetry } from '../telemetry/telemetry.js';
import type { Endpoint } from '../upstream/forward.js';
import { registerConsole } from './console.js';
import { explainRoute } from './explain.js';
import { feedbackHandler, type FeedbackLearner } from './feedback.js';
import { createFrontDoor, type ApiHandler } from './front-door.js';
import { permit } from '../auth/keys.js';
import type { Limiter } from '../limits/limiter.js';
import type { Runtime } from '../runtime/compile.js';
import { Lifecycle } from './lifecycle.js';
import { forwardHandler, type EmbeddingKeeper } from './pipeline.js';
import { recordRefused } from './record-builder.js';
import { refuse } from './request-checks.js';
import { serverTiming, toSignalmanError } from './respond.js';

export interface AppOptions {
  ref: RuntimeRef;
  logger: Logger;
  telemetry: Telemetry;
  /** Online learning (kNN policies that opt in), or null. */
  learning: (EmbeddingKeeper & FeedbackLearner) | null;
  /** Answers `GET /metrics` only with this bearer token (telemetry.metrics.bearer_token_env), when set. */
  metricsToken?: string;
  bodyLimit?: number;
  /** Readiness, refusals and open requests during a shutdown (listen.ts drains with it); a fresh one by default. */
  lifecycle?: Lifecycle;
  /** Client-key limits and budgets; null or absent: keys are checked but nothing is counted. */
  limiter?: Limiter | null;
}

const FORWARDING: Readonly<Record<string, Endpoint>> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
};

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const { ref, logger } = opts;
  const bootId = randomBytes(3).toString('hex');
  let seq = 0;
  // Cheap, unique per process; never taken from the client, so logs cannot be spoofed.
  const nextId = () => `${bootId}-${(++seq).toString(36)}`;
  // Read per request, so a reload that changes them applies at once.
  const bodyLimit = () => opts.bodyLimit ?? ref.current?.config.server.body_limit_bytes ?? 4 * 1024 * 1024;
  const maxJsonDepth = () => ref.current?.config.server.max_json_depth ?? 128;
  const lifecycle = opts.lifecycle ?? new Lifecycle();
  const { telemetry } = opts;
  // A bug never shows its text to a client (respond.ts internalError); its stack goes to the log, by request id.
  const onBug = (err: unknown, reqId: string) => logger.error({ err, reqId }, 'internal error (a bug: please report it)');
  const deps = {
    stages: telemetry.stages,
    routing: ref.routing,
    learning: opts.learning,
    onBug,
    open: lifecycle,
    limiter: opts.limiter ?? null,
  };
  // The API's POST routes: answered by the front door before Fastify sees them (front-door.ts).
  const routes: Record<string, ApiHandler> = {
    '/v1/route': explainRoute(ref.routing),
    '/v1/feedback': feedbackHandler(telemetry, opts.learning),
  };
  for (const [path, endpoint] of Object.entries(FORWARDING)) routes[path] = forwardHandler(endpoint, deps);
  // Forwarding requests refused at the door are client requests too: they get a record.
  const onRefused = (path: string, id: string, startedAt: number, e: SignalmanError) => {
    const endpoint = FORWARDING[path];
    if (endpoint !== undefined) recordRefused(telemetry.stages, endpoint, id, startedAt, ref.current?.generation ?? 0, e);
  };
  const app = Fastify({
    serverFactory: (fastifyHandler) => {
      const server = createServer(
        createFrontDoor(
          { ref, routes, nextId, bodyLimit, maxJsonDepth, isDraining: () => lifecycle.refusing, onRefused, onBug },
          fastifyHandler,
        ),
      );
      server.keepAliveTimeout = 72_000; // Fastify's default, longer than common client pools' idle timeouts
      return server;
    },
    loggerInstance: logger as unknown as FastifyBaseLogger,
    // Our own access line is written once per request by the pipeline's AccessLogSink.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: nextId,
    requestIdHeader: false,
    // We answer requests that arrive while draining ourselves, in OpenAI's shape (see onRequest below).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
  });

  // The API speaks JSON only: anything else is a clear 415 rather than a confusing schema error.
  app.removeContentTypeParser('text/plain');
  app.addHook('preClose', function startDraining(done) {
    lifecycle.draining = true;
    lifecycle.refusing = true;
    done();
  });
  app.addHook('onRequest', function requestIdHeader(req, reply, done) {
    reply.header('x-signalman-request-id', req.id);
    if (lifecycle.refusing) {
      // A keep-alive client sent a new request while we drain: tell it to go elsewhere, and close.
      void reply.code(503).header('connection', 'close').send(refuse.draining().toJSON());
      return;
    }
    done();
  });

  // Every response says what the gateway cost, not only forwarded ones (which set their own, with upstream time).
  app.addHook('onSend', function serverTimingHeader(_req, reply, payload, done) {
    if (!reply.hasHeader('server-timing')) reply.header('server-timing', serverTiming(reply.elapsedTime, 0, 0));
    done(null, payload);
  });

  app.setErrorHandler((err: FastifyError | SignalmanError, req, reply) => {
    const e = fromFastifyError(err);
    if (e.status >= 500 && e.code === 'internal_error') req.log.error({ err, reqId: req.id }, 'unhandled error');
    void reply.code(e.status).header('x-signalman-request-id', req.id).send(e.toJSON());
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send(E.notFound(`no route ${req.method} ${req.url}; the OpenAI-compatible API is under /v1`).toJSON());
  });

  app.get('/v1/models', async function listModels(req, reply) {
    const rt = ref.current;
    if (!rt) throw refuse.notReady();
    if (rt.keys.open) return reply.type('application/json').send(rt.modelsJson);
    return { object: 'list', data: visibleModels(rt, req) };
  });
  app.get<{ Params: { id: string } }>('/v1/models/*', async function getModel(req) {
    const rt = ref.current;
    if (!rt) throw refuse.notReady();
    const id = (req.params as Record<string, string>)['*'] ?? '';
    const found = visibleModels(rt, req).find((m) => m.id === id);
    if (!found) throw E.modelNotFound(`model '${id}' is neither a backend nor a policy of this gateway`, 'model');
    return found;
  });

  const metrics = telemetry.prometheus;
  if (metrics !== null) {
    app.get('/metrics', async function scrape(req, reply) {
      if (opts.metricsToken !== undefined && !bearerMatches(req, opts.metricsToken)) {
        throw E.unauthorized('GET /metrics needs `Authorization: Bearer <token>` (telemetry.metrics.bearer_token_env)');
      }
      return reply.type(metrics.contentType).send(await metrics.metrics());
    });
  }

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async function readyz(_req, reply) {
    const rt = ref.current;
    const detail = {
      ready: rt !== null,
      config: ref.file,
      generation: rt?.generation ?? 0,
      loaded_at: rt?.loadedAt.toISOString() ?? null,
      backends: rt ? [...rt.backends.keys()] : [],
      breakers: rt ? breakerStates(rt) : {},
      policies: rt ? [...rt.policies.keys()] : [],
      last_reload: ref.lastReload,
      reloads: ref.reloadCount,
    };
    // Shutting down: load balancers stop sending here, while in-flight requests and streams finish.
    if (lifecycle.draining) return reply.code(503).send({ ...detail, ready: false, draining: true });
    return reply.code(rt ? 200 : 503).send(detail);
  });

  app.post('/admin/reload', async function adminReload(req, reply) {
    checkAdmin(req);
    const status = await ref.reload('admin');
    return reply.code(status.ok ? 200 : 422).send(status);
  });

  await registerConsole(app, { ref, telemetry }); // GET /ui: the built-in console (console.ts)

  return app;

  function checkAdmin(req: FastifyRequest): void {
    const envName = ref.current?.config.server.admin_key_env ?? 'SIGNALMAN_ADMIN_KEY';
    const key = process.env[envName];
    if (key === undefined || key === '') {
      throw E.adminDisabled(`admin endpoints are disabled: set the environment variable ${envName} (server.admin_key_env) to enable them`);
    }
    if (!bearerMatches(req, key)) throw E.unauthorized('admin endpoints need `Authorization: Bearer <admin key>`');
  }
}

/** The models a request may see: all on an open gateway; with keys, the ones its key may use (401 without one). */
function visibleModels(rt: Runtime, req: FastifyRequest): Array<{ id: string; owned_by: string }> {
  const all = (JSON.parse(rt.modelsJson) as { data: Array<{ id: string; owned_by: string }> }).data;
  if (rt.keys.open) return all;
  const key = rt.keys.authenticate(req.headers.authorization);
  if (key instanceof SignalmanError) throw key;
  return all.filter((m) => permit(key, m.id, m.owned_by === 'signalman-policy') === null);
}

/** `Authorization: Bearer <want>`, compared in constant time. */
function bearerMatches(req: FastifyRequest, want: string): boolean {
  const auth = req.headers.authorization ?? '';
  const given = Buffer.from(auth.startsWith('Bearer ') ? auth.slice(7) : '');
  const w = Buffer.from(want);
  return given.length === w.length && timingSafeEqual(given, w);
}

/** Fastify's own errors (body parsing, limits) in OpenAI's shape. */
function fromFastifyError(err: FastifyError | SignalmanError): SignalmanError {
  if (err instanceof SignalmanError) return err;
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return refuse.tooLarge();
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return refuse.notJson();
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return refuse.emptyBody();
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return E.invalidRequest('content-length does not match the body');
  }
  if (err.statusCode === 400 && (err instanceof SyntaxError || /JSON/i.test(err.message))) {
    return refuse.badJson(err.message);
  }
  if (err.statusCode === 405) return E.methodNotAllowed(err.message);
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return new SignalmanError(err.code ?? 'invalid_request', err.statusCode, 'invalid_request_error', err.message);
  }
  return toSignalmanError(err);
}

/** Circuit breaker state per backend (closed, half_open, open), for GET /readyz. */
function breakerStates(rt: NonNullable<RuntimeRef['current']>): Record<string, string> {
  const now = performance.now();
  const out: Record<string, string> = {};
  for (const [name, b] of rt.backends) out[name] = b.breaker.stateAt(now);
  return out;
}
