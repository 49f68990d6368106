// The container without Docker: this machine has no engine, so the Dockerfile's runtime stage is replayed in
// a temporary folder — the files its COPY lines name, its RUN lines verbatim (`npm ci --omit=dev`), its ENV,
// then its exact CMD — and the gateway that starts must answer a chat request. If the runtime ever needs a
// dev dependency (or a file the image does not copy), this fails here instead of in a deploy.
// docker-compose.yml is validated with `docker-compose config -q` and its demo wiring (mock-upstream command,
// gateway environment, Redis) replayed the same way.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, symlink } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { freePort, waitFor } from '../helpers/redis.js';
import { copyArgs, envPairs, execForm, healthcheck, stages, type Stage } from './dockerfile.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
const all = stages(dockerfile);
const runtime = all.at(-1) as Stage;
const ops = (s: Stage, op: string) => s.instructions.filter((i) => i.op === op);
const one = (s: Stage, op: string) => {
  const found = ops(s, op);
  expect(found, `stage '${s.name}' should have exactly one ${op}`).toHaveLength(1);
  return (found[0] as { args: string }).args;
};

describe('Dockerfile', () => {
  it('builds in one stage and runs in a slim Node LTS stage, as a non-root user, with EXPOSE, HEALTHCHECK and an exec-form CMD', () => {
    expect(all.length).toBeGreaterThanOrEqual(2);
    expect(runtime.base).toMatch(/^node:(\d+)-[a-z]+-slim$/);
    const major = Number(/^node:(\d+)/.exec(runtime.base)?.[1]);
    expect(major % 2, 'an LTS line (even major)').toBe(0);
    expect(major).toBeGreaterThanOrEqual(22);

    const user = one(runtime, 'USER');
    expect(['root', '0']).not.toContain(user);
    expect(one(runtime, 'EXPOSE')).toBe(
      envPairs(
        ops(runtime, 'ENV')
          .map((i) => i.args)
          .join(' '),
      ).PORT,
    );

    // No shell between Docker and node: SIGTERM must reach the process that drains.
    const cmd = execForm(one(runtime, 'CMD'));
    expect(cmd?.[0]).toBe('node');
    const hc = healthcheck(one(runtime, 'HEALTHCHECK'));
    expect(execForm(hc.command)?.[0], 'the health check needs no binary the image lacks (curl, wget)').toBe('node');

    const runs = ops(runtime, 'RUN').map((i) => i.args);
    expect(runs.some((r) => /\bnpm ci\b.*--omit=dev/.test(r))).toBe(true);
    // The runtime copies built output from another stage, never the dev toolchain.
    const fromBuild = ops(runtime, 'COPY').filter((i) => copyArgs(i.args).from !== null);
    expect(fromBuild.length).toBeGreaterThan(0);
    for (const c of fromBuild) expect(copyArgs(c.args).sources.join(' ')).not.toMatch(/node_modules/);
  });

  it('.dockerignore is an allow-list: every COPY source is in, node_modules, dist and .git are out', async () => {
    const lines = (await readFile(join(ROOT, '.dockerignore'), 'utf8')).split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
    expect(lines[0]).toBe('*');
    const allowed = new Set(lines.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, '')));
    for (const s of all) {
      for (const c of ops(s, 'COPY')) {
        const { from, sources } = copyArgs(c.args);
        if (from !== null) continue;
        for (const src of sources)
          expect(allowed, `Dockerfile:${c.line} copies ${src}`).toContain(src.replace(/^\.\//, '').replace(/\/$/, ''));
      }
    }
    for (const never of ['node_modules', 'dist', '.git', 'test', 'bench']) expect(allowed).not.toContain(never);
  });
});

describe('docker-compose.yml', () => {
  it('passes `docker-compose config -q` and wires the demo: gateway, mock upstream, Redis, Prometheus, Grafana', async () => {
    await run('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], { cwd: ROOT });
    const compose = await composeFile();
    expect(Object.keys(compose.services).sort()).toEqual(['gateway', 'grafana', 'mock-upstream', 'prometheus', 'redis']);
    const gw = compose.services.gateway;
    // Scalable: no container_name, and no single fixed host port two replicas would fight over.
    expect(gw.container_name).toBeUndefined();
    for (const p of gw.ports ?? []) expect(String(p)).toMatch(/\d+-\d+:8080$/);
    expect(compose.services.redis.command?.join(' ')).toContain('--appendonly yes');
    // Every file the compose mounts exists.
    for (const svc of Object.values(compose.services)) {
      for (const v of svc.volumes ?? []) {
        const src = v.split(':')[0] as string;
        if (src.startsWith('./')) expect(existsSync(join(ROOT, src)), `${src} (mounted by docker-compose.yml)`).toBe(true);
      }
    }
  });
});

describe("the image's runtime stage, replayed on this machine", () => {
  let tmp: string;
  let app: string;
  let env: NodeJS.ProcessEnv;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'signalman-image-'));
    const build = await replayBuildStage(join(tmp, 'build'));
    app = join(tmp, 'app');
    // npm's cache, hard-linked: the stage's own `npm cache clean` then empties the copy, not this machine's.
    const cache = join(tmp, 'npm-cache');
    await run('cp', ['-al', join(homedir(), '.npm'), cache]).catch(() => mkdir(cache, { recursive: true }));
    env = { PATH: process.env.PATH, HOME: tmp, npm_config_cache: cache, npm_config_update_notifier: 'false' };
    for (const ins of runtime.instructions) {
      if (ins.op === 'ENV') Object.assign(env, envPairs(ins.args));
      else if (ins.op === 'WORKDIR') await mkdir(app, { recursive: true });
      else if (ins.op === 'COPY') {
        const { from, sources, dest } = copyArgs(ins.args);
        for (const src of sources) {
          const origin = from === null ? join(ROOT, src) : join(build, src.replace(/^\/app\//, ''));
          const target = dest.endsWith('/') ? join(app, dest, src.split('/').filter(Boolean).at(-1) as string) : join(app, dest);
          await cp(origin, target, { recursive: true });
        }
      } else if (ins.op === 'RUN') {
        await run('sh', ['-c', ins.args], { cwd: app, env, maxBuffer: 64 * 1024 * 1024 });
      }
    }
  }, 300_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('installs only production dependencies', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
    const installed = new Set(await readdir(join(app, 'node_modules')));
    for (const dev of ['typescript', 'vitest', 'openai', 'eslint', 'tsx']) {
      expect(Object.keys(pkg.devDependencies)).toContain(dev);
      expect(installed.has(dev), `${dev} (a dev dependency) is in the runtime image`).toBe(false);
    }
    expect(installed.has('fastify')).toBe(true);
  });

  it('starts with its exact CMD (the demo), answers a chat request, is healthy, and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const cmd = execForm(one(runtime, 'CMD')) as string[];
    // The only change to the image's environment: a free port instead of 8080, which may be taken here.
    const gw = start(cmd, { ...env, PORT: String(port) });
    await gw.listening;
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0 });
    const res = await client.chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: 'What is a tort?' }] });
    expect(res.choices[0]?.message.content).toBeTruthy();

    const hc = execForm(healthcheck(one(runtime, 'HEALTHCHECK')).command) as string[];
    await run(process.execPath, hc.slice(1), { env: { ...env, PORT: String(port) } }); // rejects on a non-zero exit

    gw.proc.kill('SIGTERM');
    expect(await gw.exited).toBe(0);
  }, 60_000);

  it("runs docker-compose.yml's demo: the mock-upstream service's command, the gateway's environment, records in Redis", async () => {
    const compose = await composeFile();
    const [mockPort, gwPort, redisPort] = [await freePort(), await freePort(), await freePort()];
    // The services' own commands, with this machine's free ports instead of the compose network's names.
    const redisCmd = compose.services.redis.command as string[];
    const redis = start(
      ['redis-server', ...redisCmd.slice(1), '--port', String(redisPort), '--bind', '127.0.0.1', '--dir', tmp],
      env,
      null,
    );
    const mockCmd = withPort(compose.services['mock-upstream'].command as string[], mockPort);
    const mock = start(mockCmd, env, /listening|http:\/\//);
    await mock.listening;
    const gwEnv: NodeJS.ProcessEnv = { ...env, PORT: String(gwPort) };
    for (const [k, v] of Object.entries(compose.services.gateway.environment ?? {})) gwEnv[k] = interpolate(String(v));
    gwEnv.SIGNALMAN_CONFIG = join(app, (gwEnv.SIGNALMAN_CONFIG as string).replace(/^\/app\//, ''));
    gwEnv.SIGNALMAN_MOCK_URL = (gwEnv.SIGNALMAN_MOCK_URL as string).replace('mock-upstream:8081', `127.0.0.1:${mockPort}`);
    gwEnv.REDIS_URL = (gwEnv.REDIS_URL as string).replace('redis:6379', `127.0.0.1:${redisPort}`);
    const gw = start(execForm(one(runtime, 'CMD')) as string[], gwEnv);
    await gw.listening;

    const client = new OpenAI({ baseURL: `http://127.0.0.1:${gwPort}/v1`, apiKey: 'unused', maxRetries: 0 });
    const { data, response } = await client.chat.completions
      .create({ model: 'expert', messages: [{ role: 'user', content: 'Is a verbal contract binding?' }] })
      .withResponse();
    expect(data.choices[0]?.message.content).toBeTruthy();
    const id = response.headers.get('x-signalman-request-id') as string;

    const r = new Redis(redisPort, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
    await r.connect();
    try {
      await waitFor(async () => (await r.exists(`signalman:req:${id}`)) === 1, 10_000, 'the record in Redis');
      expect(JSON.parse((await r.get(`signalman:req:${id}`)) as string)).toMatchObject({ id, policy: 'expert' });
    } finally {
      r.disconnect();
    }
    gw.proc.kill('SIGTERM');
    expect(await gw.exited).toBe(0);
    mock.proc.kill('SIGTERM');
    redis.proc.kill('SIGTERM');
  }, 60_000);

  /** Spawns a command of the image in the replayed /app; `listening` resolves on its first line matching `ready`. */
  function start(cmd: string[], childEnv: NodeJS.ProcessEnv, ready: RegExp | null = /signalman listening on/) {
    const [bin, ...args] = cmd as [string, ...string[]];
    const proc = spawn(bin === 'node' ? process.execPath : bin, args, { cwd: app, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(proc);
    let out = '';
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    const listening = new Promise<void>((res, rej) => {
      const onData = (b: Buffer) => {
        out += b.toString();
        if (ready !== null && ready.test(out)) res();
      };
      proc.stdout.on('data', onData);
      proc.stderr.on('data', onData);
      void exited.then((code) => rej(new Error(`${cmd.join(' ')} exited ${code} before it was ready:\n${out}`)));
      if (ready === null) res();
    });
    listening.catch(() => undefined);
    return { proc, listening, exited };
  }
});

/** The build stage on this machine: its COPY lines into `dir`, this checkout's node_modules standing in for its
 * `npm ci` (the same lockfile, dev dependencies included), then its other RUN lines (the TypeScript build). */
async function replayBuildStage(dir: string): Promise<string> {
  const names = new Set(ops(runtime, 'COPY').map((i) => copyArgs(i.args).from));
  const build = all.find((s) => names.has(s.name));
  if (!build) throw new Error('the runtime stage copies from no build stage');
  await mkdir(dir, { recursive: true });
  for (const ins of build.instructions) {
    if (ins.op === 'COPY') {
      const { sources, dest } = copyArgs(ins.args);
      for (const src of sources) await cp(join(ROOT, src), join(dir, dest.endsWith('/') ? src : dest), { recursive: true });
    } else if (ins.op === 'RUN') {
      if (/^npm ci\b/.test(ins.args)) await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
      else await run('sh', ['-c', ins.args], { cwd: dir, maxBuffer: 64 * 1024 * 1024 });
    }
  }
  return dir;
}

interface ComposeService {
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  container_name?: string;
}
async function composeFile(): Promise<{ services: Record<string, ComposeService> }> {
  return parse(await readFile(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, ComposeService> };
}

/** `${VAR:-default}` as compose reads it, with this test's environment empty of those variables. */
const interpolate = (v: string) => v.replace(/\$\{(\w+)(?::-([^}]*))?\}/g, (_m, _name: string, dflt: string | undefined) => dflt ?? '');

function withPort(cmd: string[], port: number): string[] {
  const i = cmd.indexOf('--port');
  expect(i, `${cmd.join(' ')} has --port`).toBeGreaterThan(0);
  return [...cmd.slice(0, i + 1), String(port), ...cmd.slice(i + 2)];
}
