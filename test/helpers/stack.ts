// startStack(): a mock upstream and a listening gateway on ephemeral ports, with a config written to a
// temp file the test may rewrite (hot reload). Real sockets, real clients.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import pino from 'pino';
import { startGateway, type Gateway } from '../../src/server/listen.js';
import type { LineWriter } from '../../src/telemetry/access-log.js';
import { MemorySink } from '../../src/telemetry/memory-sink.js';
import { startMockUpstream, type MockOptions, type MockUpstream } from '../../src/mock/server.js';

export interface Stack {
  mock: MockUpstream;
  gw: Gateway;
  sink: MemorySink;
  baseURL: string;
  configFile: string;
  client(opts?: { apiKey?: string; timeout?: number; defaultHeaders?: Record<string, string> }): OpenAI;
  writeConfig(yaml: string): Promise<void>;
  close(): Promise<void>;
}

/** A two-backend config over the mock: `strong` and `weak` on distinct paths so faults can target one. */
export const twoBackends = (mockUrl: string, extra = ''): string => `
version: 1
server: { watch: false, access_log: false, retry_base_ms: 5, retry_max_ms: 50 }
backends:
  - name: strong
    base_url: ${mockUrl}/strong/v1
    model: gpt-4-1106-preview
    api_key_env: TEST_STRONG_KEY
    price: { input_per_mtok: 10, output_per_mtok: 30 }
    timeout_ms: 2000
    stream_idle_timeout_ms: 1000
    max_retries: 2
  - name: weak
    base_url: ${mockUrl}/weak/v1
    model: mixtral-8x7b-instruct-v0.1
    price: { input_per_mtok: 0.24, output_per_mtok: 0.24 }
    timeout_ms: 2000
    stream_idle_timeout_ms: 1000
    max_retries: 1
policies:
  - name: auto
    candidates: [strong, weak]
    router: { type: fixed, backend: weak }
    fallbacks: [strong]
${extra}`;

export async function startStack(
  opts: { config?: (mockUrl: string) => string; watch?: boolean; mock?: MockOptions; accessLog?: LineWriter } = {},
): Promise<Stack> {
  process.env.TEST_STRONG_KEY = 'sk-strong-backend-key';
  const mock = await startMockUpstream({ ...opts.mock, port: 0 });
  const dir = await mkdtemp(join(tmpdir(), 'signalman-test-'));
  const configFile = join(dir, 'signalman.yaml');
  await writeFile(configFile, (opts.config ?? twoBackends)(mock.url));
  const sink = new MemorySink(10_000);
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  let gw: Gateway;
  try {
    gw = await startGateway({
      configFile,
      logger,
      host: '127.0.0.1',
      port: 0,
      sinks: [sink],
      watch: opts.watch ?? false,
      accessLog: opts.accessLog,
    });
  } catch (err) {
    await mock.close();
    throw err;
  }
  const baseURL = `${gw.url}/v1`;
  return {
    mock,
    gw,
    sink,
    baseURL,
    configFile,
    client: (o = {}) =>
      new OpenAI({
        baseURL,
        apiKey: o.apiKey ?? 'sk-client-key',
        maxRetries: 0,
        timeout: o.timeout ?? 10_000,
        defaultHeaders: o.defaultHeaders,
      }),
    writeConfig: (yaml) => writeFile(configFile, yaml),
    close: async () => {
      await gw.close(1000);
      await mock.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The mock's log entries for one path prefix (e.g. '/strong/'). */
export const callsTo = (mock: MockUpstream, prefix: string) => mock.requests().filter((r) => r.path.startsWith(prefix));

export const waitFor = async (pred: () => boolean, timeoutMs = 3000): Promise<void> => {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};
