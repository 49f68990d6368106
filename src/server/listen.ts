// Start and stop: load the config, set up telemetry for the process, build the app, listen; on close,
// drain, flush telemetry, then release everything.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { OnlineLearning } from '../runtime/online-learning.js';
import { RuntimeRef } from '../runtime/runtime-ref.js';
import type { LineWriter } from '../telemetry/access-log.js';
import { registerLimitMetrics } from '../telemetry/limit-metrics.js';
import { registerResilienceMetrics } from '../telemetry/resilience-metrics.js';
import type { TelemetrySink } from '../telemetry/sink.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { Limiter } from '../limits/limiter.js';
import { buildApp } from './app.js';
import { CUT_GRACE_MS, drain, Lifecycle } from './lifecycle.js';

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
  lifecycle: Lifecycle;
  /**
   * Drains (lifecycle.ts): readiness off, new requests served for `delayMs`, then the listener closes and
   * in-flight requests and streams run on until `timeoutMs` after the call; then flushes telemetry and closes
   * everything. Defaults: server.drain_timeout_ms and server.drain_delay_ms of the current config.
   */
  close(timeoutMs?: number, delayMs?: number): Promise<void>;
}

/** How long a closing gateway waits for buffered records to reach Redis. */
const FLUSH_MS = 2_000;

/** The most a close() can take past its drain deadline (cut grace, telemetry flush, closing the rest). */
export const SHUTDOWN_SLACK_MS = CUT_GRACE_MS + FLUSH_MS + 2_000;

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
  const known = (rt: NonNullable<RuntimeRef['current']>) => ({
    policies: [...rt.policies.keys()],
    backends: [...rt.backends.keys()],
    keys: rt.config.keys.map((k) => k.id),
  });
  if (metrics !== undefined) {
    metrics.setKnown(known(ref.current!));
    metrics.watchScoring(() => ref.current?.scoring?.stats() ?? null);
    registerResilienceMetrics(metrics.registry, () => ref.current); // breakers, retry budget, pool queues
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
  const lifecycle = new Lifecycle();
  // Client-key limits count in telemetry's Redis (own fast-failing connection, same prefix) when there is one.
  const redisOpts = telemetry.redis?.options;
  const limitsUrl = config.limits.redis_url ?? redisOpts?.url;
  const limitsPrefix = config.limits.key_prefix ?? redisOpts?.key_prefix ?? 'signalman:';
  const limiter = new Limiter({
    config: config.limits,
    redis: limitsUrl === undefined ? null : { url: limitsUrl, prefix: limitsPrefix },
    logger: opts.logger,
  });
  if (metrics !== undefined) registerLimitMetrics(metrics.registry, limiter.stats);
  if (config.keys.length > 0) opts.logger.info(limiter.describe());
  else if (!isLoopback(opts.host ?? config.server.host)) {
    opts.logger.warn(
      `NO CLIENT KEYS: anyone who reaches ${opts.host ?? config.server.host} can spend through this gateway. Add \`keys:\` to the config (see configs/examples/secure.yaml), or listen on 127.0.0.1.`,
    );
  }
  const app = await buildApp({ ref, logger: opts.logger, telemetry, learning, metricsToken, lifecycle, limiter });
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
    lifecycle,
    close: (timeoutMs, delayMs) =>
      (closing ??= (async () => {
        const server = ref.current?.config.server;
        const summary = await drain(lifecycle, {
          server: app.server,
          closeListener: () => app.close(),
          timeoutMs: timeoutMs ?? server?.drain_timeout_ms ?? 25_000,
          delayMs: delayMs ?? server?.drain_delay_ms ?? 0,
          log: opts.logger,
        });
        await learning.close();
        await limiter.close();
        const redis = telemetry.redis;
        const writtenBefore = redis?.counters().written ?? 0;
        await telemetry.flush(FLUSH_MS);
        await telemetry.close();
        // Records still buffered after the flush never reach Redis (it was down or too slow): said here, in numbers.
        const records =
          redis === null
            ? {}
            : {
                records_flushed: redis.counters().written - writtenBefore,
                records_lost: redis.stats().buffered,
                records_dropped_total: redis.stats().dropped,
              };
        // Warn when anyone was cut short or a record is lost: a deadline too short, a client not reading, Redis down.
        const clean = summary.cut_at_deadline === 0 && summary.connections_forced === 0 && (redis?.stats().buffered ?? 0) === 0;
        opts.logger[clean ? 'info' : 'warn']({ ...summary, ...records }, 'shutdown: drained');
        await ref.close();
      })()),
  };
}

/** 127.0.0.0/8, ::1 and localhost: the addresses only this machine can reach. */
const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || /^127\./.test(host);
