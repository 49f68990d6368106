// buildApp(): the Fastify app, no listen — tests get a fresh app each, the CLI listens elsewhere.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { RuntimeRef } from '../config/runtime-ref.js';
import { E, SignalmanError } from '../errors.js';
import { routeRequest } from '../routers/engine.js';
import { AccessLogSink, FanoutSink, type EventSink, type LineWriter } from '../telemetry/events.js';
import type { Endpoint } from '../upstream/forward.js';
import { createFastPath } from './fast-path.js';
import { handleForward, qualityBias, routeMeta, serverTiming, toSignalmanError, validateBody } from './pipeline.js';

export interface AppOptions {
  ref: RuntimeRef;
  logger: Logger;
  /** Where access lines go (default stdout). */
  accessLog?: LineWriter;
  /** Extra sinks (tests use a MemorySink). */
  sinks?: EventSink[];
  bodyLimit?: number;
}

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const { ref, logger } = opts;
  const bootId = randomBytes(3).toString('hex');
  let seq = 0;
  // Cheap, unique per process; never taken from the client, so logs cannot be spoofed.
  const nextId = () => `${bootId}-${(++seq).toString(36)}`;
  // Read per request, so a reload that changes them applies at once.
  const bodyLimit = () => opts.bodyLimit ?? ref.current?.config.server.body_limit_bytes ?? 4 * 1024 * 1024;
  const accessLogOn = () => ref.current?.config.server.access_log ?? true;
  let draining = false;
  const sink = new FanoutSink([new AccessLogSink(opts.accessLog ?? process.stdout, accessLogOn), ...(opts.sinks ?? [])]);
  const deps = { sink, routing: ref.routing };
  const app = Fastify({
    // The forwarding endpoints are answered by the fast path before Fastify sees them (fast-path.ts).
    serverFactory: (fastifyHandler) => {
      const server = createServer(createFastPath({ ref, deps, nextId, bodyLimit, isDraining: () => draining }, fastifyHandler));
      server.keepAliveTimeout = 72_000; // Fastify's default, longer than common client pools' idle timeouts
      return server;
    },
    loggerInstance: logger as unknown as FastifyBaseLogger,
    // Our own access line is written once per request by the pipeline's AccessLogSink.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: bodyLimit(), // the inject()-only routes; the listening server's fast path reads it per request
    genReqId: nextId,
    requestIdHeader: false,
    // We answer requests that arrive while draining ourselves, in OpenAI's shape (see onRequest below).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
  });

  // The API speaks JSON only: anything else is a clear 415 rather than a confusing schema error.
  app.removeContentTypeParser('text/plain');
  app.addHook('preClose', function startDraining(done) {
    draining = true;
    done();
  });
  app.addHook('onRequest', function requestIdHeader(req, reply, done) {
    reply.header('x-signalman-request-id', req.id);
    if (draining) {
      // A keep-alive client sent a new request while we drain: tell it to go elsewhere, and close.
      void reply.code(503).header('connection', 'close').send(E.shuttingDown('the gateway is shutting down; retry on another instance').toJSON());
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

  // Reached only through app.inject() (the listening server answers these on the fast path): same handler.
  const forwardRoute = (endpoint: Endpoint) => async function forwardHandler(req: FastifyRequest, reply: FastifyReply) {
    const pinned = ref.pin();
    if (!pinned) throw E.notReady('no configuration is loaded yet; see GET /readyz');
    reply.hijack();
    try {
      await handleForward(endpoint, pinned.runtime, { id: req.id, headers: req.headers, body: req.body, res: reply.raw, startedAt: performance.now() - reply.elapsedTime }, deps);
    } finally {
      pinned.release();
    }
  };
  app.post('/v1/chat/completions', forwardRoute('chat'));
  app.post('/v1/completions', forwardRoute('completions'));
  app.post('/v1/embeddings', forwardRoute('embeddings'));

  app.post('/v1/route', async function explainRoute(req, reply) {
    const pinned = ref.pin();
    if (!pinned) throw E.notReady('no configuration is loaded yet; see GET /readyz');
    try {
      const body = validateBody('chat', req.body);
      const model = body.model as string;
      const policy = pinned.runtime.policies.get(model);
      if (!policy) {
        throw E.modelNotFound(
          pinned.runtime.backends.has(model)
            ? `'${model}' is a backend, not a policy: requests to it are not routed`
            : `model '${model}' is not a policy of this gateway; see GET /v1/models`,
          'model',
        );
      }
      const t0 = performance.now();
      const decision = await routeRequest({
        policy, backends: pinned.runtime.backends, body, meta: routeMeta('chat', body), headers: req.headers, state: ref.routing,
        qualityBias: qualityBias(req.headers), dryRun: true,
      });
      return reply.send({ object: 'signalman.route', ...decision, totalMs: performance.now() - t0, generation: pinned.runtime.generation });
    } finally {
      pinned.release();
    }
  });

  app.get('/v1/models', async function listModels(req, reply) {
    const rt = ref.current;
    if (!rt) throw E.notReady('no configuration is loaded yet; see GET /readyz');
    return reply.type('application/json').send(rt.modelsJson);
  });
  app.get<{ Params: { id: string } }>('/v1/models/*', async function getModel(req, reply) {
    const rt = ref.current;
    if (!rt) throw E.notReady('no configuration is loaded yet; see GET /readyz');
    const id = (req.params as Record<string, string>)['*'] ?? '';
    const found = (JSON.parse(rt.modelsJson) as { data: Array<{ id: string }> }).data.find((m) => m.id === id);
    if (!found) throw E.modelNotFound(`model '${id}' is neither a backend nor a policy of this gateway`, 'model');
    return found;
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async function readyz(_req, reply) {
    const rt = ref.current;
    const detail = {
      ready: rt !== null,
      config: ref.file,
      generation: rt?.generation ?? 0,
      loaded_at: rt?.loadedAt.toISOString() ?? null,
      backends: rt ? [...rt.backends.keys()] : [],
      policies: rt ? [...rt.policies.keys()] : [],
      last_reload: ref.lastReload,
      reloads: ref.reloadCount,
    };
    return reply.code(rt ? 200 : 503).send(detail);
  });

  app.post('/admin/reload', async function adminReload(req, reply) {
    checkAdmin(req);
    const status = await ref.reload('admin');
    return reply.code(status.ok ? 200 : 422).send(status);
  });

  return app;

  function checkAdmin(req: FastifyRequest): void {
    const envName = ref.current?.config.server.admin_key_env ?? 'SIGNALMAN_ADMIN_KEY';
    const key = process.env[envName];
    if (key === undefined || key === '') {
      throw E.adminDisabled(`admin endpoints are disabled: set the environment variable ${envName} (server.admin_key_env) to enable them`);
    }
    const auth = req.headers.authorization ?? '';
    const given = Buffer.from(auth.startsWith('Bearer ') ? auth.slice(7) : '');
    const want = Buffer.from(key);
    if (given.length !== want.length || !timingSafeEqual(given, want)) {
      throw E.unauthorized('admin endpoints need `Authorization: Bearer <admin key>`');
    }
  }
}

/** Fastify's own errors (body parsing, limits) in OpenAI's shape. */
function fromFastifyError(err: FastifyError | SignalmanError): SignalmanError {
  if (err instanceof SignalmanError) return err;
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return E.bodyTooLarge(`request body is larger than the gateway's limit (server.body_limit_bytes)`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return E.unsupportedMediaType('send the body as JSON with content-type: application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return E.invalidJson('the request body is empty; send a JSON object');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return E.invalidRequest('content-length does not match the body');
  }
  if (err.statusCode === 400 && (err instanceof SyntaxError || /JSON/i.test(err.message))) {
    return E.invalidJson(`the request body is not valid JSON: ${err.message}`);
  }
  if (err.statusCode === 405) return E.methodNotAllowed(err.message);
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return new SignalmanError(err.code ?? 'invalid_request', err.statusCode, 'invalid_request_error', err.message);
  }
  return toSignalmanError(err);
}
