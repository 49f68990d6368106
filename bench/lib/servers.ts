// Server processes under test, each its own child process so its CPU and RSS can be read from /proc
// and so the load generator never shares an event loop with what it measures.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';

export interface ServerProc {
  name: string;
  pid: number;
  /** http://127.0.0.1:PORT */
  origin: string;
  /** Last lines of stderr/stdout, for error messages. */
  output(): string;
  stop(): Promise<void>;
}

export interface SpawnSpec {
  name: string;
  /** The executable; node (this process's) by default. */
  command?: string;
  args: string[];
  port: number;
  /** GET path answering 200 once the server is ready, or a probe for a server that does not speak HTTP. */
  readyPath: string | (() => Promise<boolean>);
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

const live = new Set<ChildProcess>();
// A crashed or interrupted bench must not leave servers holding ports.
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const c of live) c.kill('SIGKILL');
    process.exit(130);
  });
}

export async function spawnServer(spec: SpawnSpec): Promise<ServerProc> {
  const child = spawn(spec.command ?? process.execPath, spec.args, {
    env: { ...process.env, ...spec.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  // A missing executable is an 'error' event (ENOENT) then an 'exit'; keep its message for the caller.
  let spawnError: string | null = null;
  child.once('error', (err) => {
    spawnError = err.message;
  });
  let tail = '';
  const keep = (b: Buffer) => {
    tail = (tail + b.toString('utf8')).slice(-4000);
  };
  // Always drain the pipes: a full pipe would block the server's writes (access logs) and skew it.
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited: string | null = null;
  // 'exit' is the usual signal; a spawn that failed emits only 'error' then 'close'.
  const exitP = new Promise<void>((r) => {
    const done = (code: number | null, sig: NodeJS.Signals | null) => {
      if (exited !== null) return;
      exited = spawnError !== null ? `could not start (${spawnError})` : `exited with ${sig ?? `code ${code}`}`;
      live.delete(child);
      r();
    };
    child.once('exit', done);
    child.once('close', done);
  });
  const origin = `http://127.0.0.1:${spec.port}`;
  const proc: ServerProc = {
    name: spec.name,
    pid: child.pid ?? -1,
    origin,
    output: () => tail.trim(),
    stop: async () => {
      if (exited !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exitP;
      clearTimeout(t);
    },
  };
  const deadline = Date.now() + (spec.readyTimeoutMs ?? 20_000);
  const ready = spec.readyPath;
  for (;;) {
    if (exited !== null) throw new Error(`${spec.name} ${exited} before it was ready:\n${proc.output()}`);
    try {
      if (typeof ready === 'function') {
        if (await ready()) return proc;
      } else {
        const res = await request(origin + ready, { headersTimeout: 1000, bodyTimeout: 1000 });
        await res.body.dump();
        if (res.statusCode === 200) return proc;
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await proc.stop();
      const where = typeof ready === 'function' ? `port ${spec.port}` : origin + ready;
      throw new Error(`${spec.name} was not ready on ${where} within ${spec.readyTimeoutMs ?? 20_000} ms:\n${proc.output()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const root = resolve(import.meta.dirname, '..', '..', '..'); // dist/bench/lib -> repo root
const mainJs = join(root, 'dist', 'src', 'cli', 'main.js');
const portkeyJs = join(root, 'node_modules', '@portkey-ai', 'gateway', 'build', 'start-server.js');

/** Extra node flags for the gateway under test, e.g. GATEWAY_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof'. */
function gatewayNodeArgs(): string[] {
  const raw = process.env.GATEWAY_NODE_ARGS?.trim();
  return raw ? raw.split(/\s+/) : [];
}

export async function startMock(): Promise<ServerProc> {
  const port = await freePort();
  // --log-size 0: the request log keeps bodies for tests; the baseline must not pay for it.
  return spawnServer({
    name: 'mock-upstream',
    args: [mainJs, 'mock-upstream', '--port', String(port), '--log-size', '0'],
    port,
    readyPath: '/healthz',
  });
}

/** The backend name clients send as `model` for pass-through. */
export const SIGNALMAN_BACKEND = 'mock';

/** What the Signalman under test records: everything on (with its own Redis) or everything off. */
export type SignalmanTelemetry = { on: true; redisUrl: string; keyPrefix: string } | { on: false };

/** One client key (secret from env) whose requests-per-minute limit is counted in a Redis of the bench's. */
export interface BenchKey {
  secret: string;
  redisUrl: string;
  keyPrefix: string;
}

export async function startSignalman(
  mockOrigin: string,
  opts: { name: string; telemetry: SignalmanTelemetry; key?: BenchKey },
): Promise<ServerProc> {
  const t = opts.telemetry;
  const k = opts.key;
  return startGateway({
    name: opts.name,
    config: (port) =>
      [
        '# Generated by bench/lib/servers.ts: pass-through to the mock upstream, no policies.',
        `# Telemetry ${t.on ? 'on: access log, metrics, memory records (default), Redis sink' : 'off: no access log, metrics, memory records or Redis'}.`,
        'version: 1',
        `server: { host: 127.0.0.1, port: ${port}, access_log: ${t.on}, watch: false }`,
        'backends:',
        `  - name: ${SIGNALMAN_BACKEND}`,
        `    base_url: ${mockOrigin}/v1`,
        '    model: gpt-4o-mini',
        '    max_connections: 256',
        t.on
          ? `telemetry: { redis: { url: '${t.redisUrl}', key_prefix: '${t.keyPrefix}' } }`
          : 'telemetry: { metrics: { enabled: false }, memory_records: 0 }',
        // A limit far above what the bench sends: every request is checked and counted in Redis, none refused.
        ...(k === undefined
          ? []
          : [
              'keys:',
              '  - { id: bench, secret_env: BENCH_CLIENT_KEY, backends: ["*"], limits: { requests_per_minute: 100000000 } }',
              `limits: { redis_url: '${k.redisUrl}', key_prefix: '${k.keyPrefix}' }`,
            ]),
        '',
      ].join('\n'),
    // REDIS_URL in the bench's environment would turn the Redis sink on: "off" must not inherit it, and
    // "on" names its own Redis in the config (which wins over REDIS_URL).
    env: { REDIS_URL: '', ...(k === undefined ? {} : { BENCH_CLIENT_KEY: k.secret }) },
  });
}

/**
 * `signalman serve` on a free port with a generated config: `config(port)` returns the YAML text, which
 * is written to `dir` (a fresh temp dir by default; give the artifacts' dir when the config names
 * artifact folders by relative path).
 */
export async function startGateway(opts: {
  name: string;
  config: (port: number) => string;
  dir?: string;
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}): Promise<ServerProc> {
  const port = await freePort();
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'signalman-bench-'));
  const file = join(dir, `${opts.name}-${port}.yaml`);
  writeFileSync(file, opts.config(port));
  return spawnServer({
    name: opts.name,
    args: [...gatewayNodeArgs(), mainJs, 'serve', '--config', file, '--port', String(port), '--host', '127.0.0.1'],
    port,
    readyPath: '/healthz',
    ...(opts.env === undefined ? {} : { env: opts.env }),
    ...(opts.readyTimeoutMs === undefined ? {} : { readyTimeoutMs: opts.readyTimeoutMs }),
  });
}

/** The bare node:http + undici pass-through proxy (bench/lib/bare-proxy.ts): a floor for any Node gateway. */
export async function startBareProxy(upstreamOrigin: string): Promise<ServerProc> {
  const port = await freePort();
  return spawnServer({
    name: 'bare-proxy',
    args: [join(dirname(fileURLToPath(import.meta.url)), 'bare-proxy.js'), String(port), upstreamOrigin],
    port,
    readyPath: '/healthz',
  });
}

export async function startPortkey(): Promise<ServerProc> {
  const port = await freePort();
  return spawnServer({
    name: 'portkey',
    args: [portkeyJs, '--headless', `--port=${port}`],
    port,
    readyPath: '/', // "AI Gateway says hey!"
  });
}

/**
 * A throw-away redis-server of the bench's own on a free port: nothing saved to disk, killed with the
 * rest. `url` is redis://127.0.0.1:PORT (`origin` is the same address, for messages).
 */
export async function startRedis(): Promise<ServerProc & { port: number; url: string }> {
  const port = await freePort();
  let proc: ServerProc;
  try {
    proc = await spawnServer({
      name: 'redis-server',
      command: process.env.REDIS_SERVER ?? 'redis-server',
      args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      port,
      readyPath: async () => (await redisCommand(port, ['PING'])) === 'PONG',
    });
  } catch (err) {
    const msg = (err as Error).message;
    if (/ENOENT/.test(msg)) {
      throw new Error(
        `redis-server is not on PATH (set REDIS_SERVER=/path/to/redis-server, or install it: apt-get install redis-server); telemetry-on needs its own Redis`,
        { cause: err },
      );
    }
    throw err;
  }
  const url = `redis://127.0.0.1:${port}`;
  return { ...proc, origin: url, port, url };
}

/**
 * One Redis command over a fresh connection (RESP; enough for PING, XLEN, DBSIZE): the bench reads its
 * own Redis without a client library's reconnect loop. Rejects on an error reply or after `timeoutMs`.
 */
export function redisCommand(port: number, args: readonly string[], timeoutMs = 2000): Promise<string | number | null> {
  return new Promise((res, rej) => {
    const sock = connect(port, '127.0.0.1');
    let buf = '';
    const finish = (err: Error | null, v?: string | number | null) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) rej(err);
      else res(v ?? null);
    };
    const timer = setTimeout(() => finish(new Error(`redis ${args[0]}: no answer within ${timeoutMs} ms`)), timeoutMs);
    sock.once('error', (err) => finish(err));
    sock.on('data', (b: Buffer) => {
      buf += b.toString('utf8');
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return;
      const head = buf.slice(1, eol);
      switch (buf[0]) {
        case '+':
          return finish(null, head);
        case '-':
          return finish(new Error(`redis ${args[0]}: ${head}`));
        case ':':
          return finish(null, Number(head));
        case '$': {
          const n = Number(head);
          if (n < 0) return finish(null, null);
          if (buf.length < eol + 2 + n + 2) return; // the rest of the bulk string is on its way
          return finish(null, buf.slice(eol + 2, eol + 2 + n));
        }
        default:
          return finish(new Error(`redis ${args[0]}: unexpected reply ${JSON.stringify(buf.slice(0, 40))}`));
      }
    });
    sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  });
}
