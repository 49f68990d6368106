// `signalman serve`: the gateway. Without --config it runs the embedded demo: configs/default.yaml
// routing among models of an in-process mock upstream, so it answers at once with no keys and no Redis.
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { SHUTDOWN_SLACK_MS, startGateway } from '../server/listen.js';
import { BatchedLineWriter } from '../telemetry/line-writer.js';
import { startMockUpstream, type MockUpstream } from '../mock/server.js';
import { packageRoot } from './paths.js';

const USAGE = `usage: signalman serve [--config FILE] [--host H] [--port N] [--log-level L]

  --config FILE    YAML config (env SIGNALMAN_CONFIG; default: the embedded demo, configs/default.yaml,
                   with an in-process mock upstream)
  --host H         listen address (env HOST; default from the config, 127.0.0.1)
  --port N         listen port (env PORT; default from the config, 8080)
  --log-level L    pino level (env LOG_LEVEL; default info)`;

export async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const level = values['log-level'] ?? process.env.LOG_LEVEL ?? 'info';
  // Batched, asynchronous writes: the request path never waits on stdout. The buffer is bounded: if stdout
  // stalls past 16 MiB, lines are dropped (and counted) rather than memory growing without limit.
  const destination = new BatchedLineWriter({ fd: 1, maxBufferedBytes: 16 * 1024 * 1024 });
  const logger = pino({ level, redact: ['req.headers.authorization', '*.api_key', '*.messages', '*.prompt'] }, destination);
  // The access line is built by the AccessLogSink from known fields and shares the batched destination,
  // so app and access lines never interleave mid-line.
  const portText = values.port ?? process.env.PORT;
  const port = portText === undefined ? undefined : Number(portText);
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port < 65536)) {
    console.error(`signalman serve: --port / PORT must be an integer 0-65535, got '${portText}'`);
    return 2;
  }

  let mock: MockUpstream | null = null;
  let configFile: string;
  // A container is configured by env (SIGNALMAN_CONFIG = a mounted file), a shell by the flag.
  const configArg = values.config ?? (process.env.SIGNALMAN_CONFIG || undefined);
  if (configArg !== undefined) {
    configFile = resolve(configArg);
  } else {
    mock = await startMockUpstream({ host: '127.0.0.1', port: Number(process.env.SIGNALMAN_MOCK_PORT ?? 0) });
    process.env.SIGNALMAN_MOCK_URL = mock.url;
    configFile = join(packageRoot(), 'configs', 'default.yaml');
    logger.info({ mock: mock.url }, 'demo mode: embedded mock upstream started');
  }

  let gw;
  try {
    gw = await startGateway({ configFile, logger, accessLog: destination, host: values.host ?? process.env.HOST, port });
  } catch (err) {
    console.error(`signalman serve: ${(err as Error).message}`);
    await mock?.close();
    await destination.end();
    return 1;
  }
  logger.info({ url: gw.url, config: configFile }, 'signalman listening');
  await destination.end(); // start-up lines first, in order: the next line goes straight to stdout
  console.log(`signalman listening on ${gw.url} (config ${configFile})`);

  // A bug in one request must not take the others down with it: log it loudly and keep serving.
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection (a bug: please report it)'));
  process.on('uncaughtException', (err) => logger.error({ err }, 'uncaught exception (a bug: please report it)'));

  // SIGTERM / SIGINT drain (server/lifecycle.ts) and exit 0. Exit 1 only when something failed: closing threw,
  // or the whole shutdown overran its deadline plus SHUTDOWN_SLACK_MS (then it is cut short). A second SIGINT
  // (Ctrl-C twice) exits at once with 130; a repeated SIGTERM is ignored, the drain already runs.
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      if (signal !== 'SIGINT') return;
      logger.warn({ signal }, 'shutdown: second SIGINT, exiting without finishing the drain');
      await Promise.race([destination.end(), new Promise((r) => setTimeout(r, 200))]);
      process.exit(130);
    }
    stopping = true;
    logger.info({ signal }, 'shutdown: signal received');
    const budgetMs = (gw.ref.current?.config.server.drain_timeout_ms ?? 25_000) + SHUTDOWN_SLACK_MS;
    const force = setTimeout(() => {
      logger.error({ budget_ms: budgetMs }, 'shutdown: overran its budget (drain_timeout_ms + slack), exiting now');
      void Promise.race([destination.end(), new Promise((r) => setTimeout(r, 200))]).then(() => process.exit(1));
    }, budgetMs);
    force.unref();
    let code = 0;
    try {
      await gw.close();
    } catch (err) {
      logger.error({ err }, 'shutdown: closing the gateway failed');
      code = 1;
    }
    await mock?.close();
    await destination.end();
    process.exit(code);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  return new Promise<number>(() => undefined); // runs until a signal
}
