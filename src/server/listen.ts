// Start and stop: load the config, build the app, listen, drain on close.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { RuntimeRef } from '../runtime/runtime-ref.js';
import type { EventSink, LineWriter } from '../telemetry/events.js';
import { buildApp } from './app.js';

export interface GatewayOptions {
  configFile: string;
  logger: Logger;
  /** Where the one-line-per-request access log goes (default stdout). */
  accessLog?: LineWriter;
  host?: string;
  port?: number;
  sinks?: EventSink[];
  /** Watch the config file for changes (default: the config's server.watch). */
  watch?: boolean;
}

export interface Gateway {
  app: FastifyInstance;
  ref: RuntimeRef;
  url: string;
  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then closes everything. */
  close(graceMs?: number): Promise<void>;
}

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const ref = new RuntimeRef(opts.configFile, opts.logger);
  const status = await ref.reload('startup');
  if (!status.ok) {
    await ref.close();
    throw new Error(`cannot start: the config is invalid\n${status.errors.join('\n')}`);
  }
  const server = ref.current!.config.server;
  const app = await buildApp({ ref, logger: opts.logger, accessLog: opts.accessLog, sinks: opts.sinks });
  const host = opts.host ?? server.host;
  const port = opts.port ?? server.port;
  let address: string;
  try {
    address = await app.listen({ host, port });
  } catch (err) {
    await ref.close();
    throw err;
  }
  if (opts.watch ?? server.watch) ref.watch();
  let closing: Promise<void> | null = null;
  return {
    app,
    ref,
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
        await ref.close();
      })()),
  };
}
