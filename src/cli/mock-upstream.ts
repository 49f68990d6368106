// `signalman mock-upstream`: run the deterministic OpenAI-compatible mock until SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { MockOptions, startMockUpstream } from '../mock/server.js';

const USAGE = `usage: signalman mock-upstream [options]

  --host H             listen address (default 127.0.0.1)
  --port N             port, 0 = ephemeral (default 0)
  --latency-ms N       delay before response headers, every request (default 0)
  --ttft-ms N          streams: delay before the first chunk; plain: added to latency (default 0)
  --inter-token-ms N   streams: delay between chunks (default 0)
  --tokens N           answer length in tokens when a request sets no max_tokens (default 24)
  --dim N              embedding dimension when a request sets no dimensions (default 256)
  --log-size N         requests kept for GET /__mock/requests (default 1000)

Per-request faults: header x-mock-fault (JSON) or body field "mock"; see src/mock/faults.ts.`;

const FLAGS = {
  host: 'host',
  port: 'port',
  'latency-ms': 'latencyMs',
  'ttft-ms': 'ttftMs',
  'inter-token-ms': 'interTokenMs',
  tokens: 'completionTokens',
  dim: 'embeddingDim',
  'log-size': 'logSize',
} as const satisfies Record<string, keyof MockOptions>;

function toOptions(values: Record<string, string | boolean | undefined>): MockOptions {
  const raw: Record<string, string | number> = {};
  for (const [flag, key] of Object.entries(FLAGS)) {
    const v = values[flag];
    if (typeof v !== 'string') continue;
    if (key === 'host') {
      raw[key] = v;
      continue;
    }
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n)) throw new Error(`--${flag}: expected an integer, got '${v}'`);
    raw[key] = n;
  }
  const r = MockOptions.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const key = String(issue?.path[0] ?? '');
    const flag = Object.entries(FLAGS).find(([, k]) => k === key)?.[0] ?? key;
    throw new Error(`--${flag}: ${issue?.message ?? 'invalid value'}, got '${String(raw[key])}'`);
  }
  return r.data;
}

/** Starts the mock and resolves once it has closed after SIGINT/SIGTERM. */
export async function mockUpstreamCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      help: { type: 'boolean', short: 'h' },
      ...Object.fromEntries(Object.keys(FLAGS).map((f) => [f, { type: 'string' as const }])),
    },
  });
  if (values.help === true) {
    console.log(USAGE);
    return;
  }
  const mock = await startMockUpstream(toOptions(values));
  console.log(`mock-upstream listening on ${mock.url}`);
  await new Promise<void>((resolve, reject) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      mock.close().then(resolve, reject);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
