// Start and stop: load the config, set up telemetry for the process, build the app, listen; on close,
// drain, flush telemetry, then release everything.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { OnlineLearning } from '../runtime/online-learning.js';
import { RuntimeRef } from '../runtime/runtime-ref.js';
import type { LineWriter } from '../telemetry/access-log.js';
import type { TelemetrySink } from '../telemetry/sink.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { buildApp } from './app.js';

export interface GatewayOptions {
  configFile: string;
  logger: Logger;
  /** Where the one-line-per-request access log goes (default stdout). */
  accessLog?: LineWriter;
  host?: string;
  port?: number;
  /** More telemetry sinks (tests). */
  sinks?: TelemetrySink[];
  /** Watch the config file for changes (default: the config's server.watch). */
  watch?: boolean;
  /** Environment read for REDIS_URL and the metrics token (default process.env). */
  env?: Readonly<Record<string, string | undefined>>;
}

export interface Gateway {
  app: FastifyInstance;
  ref: RuntimeRef;
  telemetry: Telemetry;
  url: string;
  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, flushes telemetry, then closes everything. */
  close(graceMs?: number): Promise<void>;
}

/** How long a closing gateway waits for buffered records to reach Redis. */
const FLUSH_MS = 2_000;

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const env = opts.env ?? process.env;
  const ref = new RuntimeRef(opts.configFile, opts.logger);
  const status = await ref.reload('startup');
  if (!status.ok) {
    await ref.close();
    throw new Error(`cannot start: the config is invalid\n${status.errors.join('\n')}`);
  }
  const config = ref.current!.config;
  const telemetry = new Telemetry({
    config: config.telemetry,
    env,
    logger: opts.logger,
    accessLog: opts.accessLog ?? process.stdout,
    accessLogOn: () => ref.current?.config.server.access_log ?? true,
    extraSinks: opts.sinks,
  });
  opts.logger.info(telemetry.describe());
  const metrics = telemetry.prometheus?.gateway;
  const known = (rt: NonNullable<RuntimeRef['current']>) => ({ policies: [...rt.policies.keys()], backends: [...rt.backends.keys()] });
  if (metrics !== undefined) {
    metrics.setKnown(known(ref.current!));
    metrics.configReloaded(true, ref.current!.generation);
    ref.onReload((s, rt) => {
      if (rt !== null) metrics.setKnown(known(rt));
      metrics.configReloaded(s.ok, s.generation);
    });
  }
  const tokenEnv = config.telemetry.metrics.bearer_token_env;
  const metricsToken = tokenEnv === undefined ? undefined : env[tokenEnv] || undefined;
  if (tokenEnv !== undefined && metricsToken === undefined) {
    opts.logger.warn(`telemetry.metrics.bearer_token_env names ${tokenEnv}, which is unset: /metrics is open`);
  }
  // Online learning shares telemetry's Redis connection (and prefix), so every replica on it learns alike.
  const learning = new OnlineLearning({ redis: telemetry.redisClient, prefix: telemetry.keyPrefix, logger: opts.logger });
  await learning.attach(ref.current!);
  ref.onPrepare((rt) => learning.attach(rt));
  const app = await buildApp({ ref, logger: opts.logger, telemetry, learning, metricsToken });
  const host = opts.host ?? config.server.host;
  const port = opts.port ?? config.server.port;
  let address: string;
  try {
    address = await app.listen({ host, port });
  } catch (err) {
    await learning.close();
    await telemetry.close();
    await ref.close();
    throw err;
  }
  if (opts.watch ?? config.server.watch) ref.watch();
  let closing: Promise<void> | null = null;
  return {
    app,
    ref,
    telemetry,
    url: address,
    close: (graceMs = 10_000) =>
      (closing ??= (async () => {
        const server = app.server;
        // Keep-alive connections that finish their last request during the drain are closed at once,
        // not after the keep-alive timeout; whatever is still open after the grace period is cut.
        const sweep = setInterval(() => server.closeIdleConnections(), 50);
        const deadline = setTimeout(() => server.closeAllConnections(), graceMs);
        try {
          await app.close(); // stops accepting, waits for in-flight requests
        } finally {
          clearInterval(sweep);
          clearTimeout(deadline);
        }
        await learning.close();
        await telemetry.flush(FLUSH_MS);
        await telemetry.close();
        await ref.close();
      })()),
  };
}
