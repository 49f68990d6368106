// The CLI as an operator runs it: the demo server answers with no keys and no Redis, validate-config
// reports file:line problems with a non-zero exit.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');
const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawn(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });

function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = cli(args);
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

/** Resolves with the first capture of `re` in the process's stdout. */
function waitLine(p: ReturnType<typeof cli>, re: RegExp, what: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`no ${what} line; got: ${buf}`)), 20_000);
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = re.exec(buf);
      if (m) {
        clearTimeout(t);
        resolve(m[1] as string);
      }
    });
  });
}

describe('signalman CLI', () => {
  it("configs/examples/secure.yaml in the README's two commands: one key, 30 requests a minute", async () => {
    const mock = cli(['mock-upstream', '--port', '0']);
    let gw: ReturnType<typeof cli> | null = null;
    try {
      const mockUrl = await waitLine(mock, /mock-upstream listening on (http:\/\/[\d.:]+)/, 'mock listening');
      gw = cli(['serve', '--config', 'configs/examples/secure.yaml', '--port', '0'], {
        SIGNALMAN_MOCK_URL: mockUrl,
        SIGNALMAN_CLIENT_KEY: 'sk-my-team-key',
        REDIS_URL: '',
      });
      const url = await waitLine(gw, /signalman listening on (http:\/\/[\d.:]+)/, 'listening');
      const client = (apiKey: string) => new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 });
      const ask = (apiKey: string) =>
        client(apiKey)
          .chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: 'What is a tort?' }] })
          .then(
            () => 200,
            (e: { status: number }) => e.status,
          );
      expect(await ask('sk-not-mine')).toBe(401);
      const statuses = [];
      for (let i = 0; i < 31; i++) statuses.push(await ask('sk-my-team-key'));
      expect(statuses.slice(0, 30).every((s) => s === 200)).toBe(true);
      expect(statuses[30]).toBe(429);
    } finally {
      gw?.kill('SIGKILL');
      mock.kill('SIGKILL');
    }
  }, 60_000);

  it('serve with no config runs the demo: virtual model auto over the embedded mock upstream', async () => {
    const p = cli(['serve', '--port', '0'], { SIGNALMAN_ADMIN_KEY: '', OPENAI_API_KEY: '' });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let buf = '';
        const t = setTimeout(() => reject(new Error(`no listening line; got: ${buf}`)), 20_000);
        p.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          const m = /signalman listening on (http:\/\/[\d.:]+)/.exec(buf);
          if (m) {
            clearTimeout(t);
            resolve(m[1] as string);
          }
        });
      });
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'anything', maxRetries: 0 });
      const { data, response } = await client.chat.completions
        .create({ model: 'auto', messages: [{ role: 'user', content: 'Hello from the README' }] })
        .withResponse();
      expect(data.choices[0]?.message.content).toBeTruthy();
      expect(response.headers.get('x-signalman-policy')).toBe('auto');
      const exited = new Promise<number | null>((resolve) => p.on('close', resolve));
      p.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      p.kill('SIGKILL');
    }
  });

  it("route: each policy decides the chat prompts file as the running demo's POST /v1/route does", async () => {
    const dry = await run(['route', '--config', 'configs/default.yaml', '--prompts', 'docs/chat-prompts.jsonl', '--json']);
    expect(dry.err).toBe('');
    expect(dry.code).toBe(0);
    const lines = dry.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { policy: string; backend: string; reason: string; guard: { score: number } | null });
    const prompts = (await readFile(join(root, 'docs/chat-prompts.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { prompt?: string; messages?: unknown[] });
    const policies = ['auto', 'auto-open', 'expert'];
    expect(lines).toHaveLength(prompts.length * policies.length);

    const p = cli(['serve', '--port', '0'], { SIGNALMAN_ADMIN_KEY: '', OPENAI_API_KEY: '', REDIS_URL: '' });
    try {
      const url = await waitLine(p, /signalman listening on (http:\/\/[\d.:]+)/, 'listening');
      for (const [i, row] of prompts.entries()) {
        for (const [j, policy] of policies.entries()) {
          const messages = row.messages ?? [{ role: 'user', content: row.prompt }];
          const res = await fetch(`${url}/v1/route`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: policy, messages }),
          });
          const d = (await res.json()) as { chosen: string; reason: string; guard: { score: number } | null };
          const cliSays = lines[i * policies.length + j]!;
          expect(cliSays.policy).toBe(policy);
          expect({ backend: cliSays.backend, reason: cliSays.reason }).toEqual({ backend: d.chosen, reason: d.reason });
          if (d.guard !== null) expect(cliSays.guard?.score).toBeCloseTo(d.guard.score, 6);
        }
      }
    } finally {
      p.kill('SIGKILL');
    }

    const dir = await mkdtemp(join(tmpdir(), 'signalman-cli-'));
    const bad = join(dir, 'prompts.jsonl');
    await writeFile(bad, '{"prompt":"fine"}\n{"label":"no text"}\n');
    const res = await run(['route', '--config', 'configs/default.yaml', '--prompts', bad]);
    expect(res.code).toBe(1);
    expect(res.err).toContain(`${bad}:2: line: needs exactly one of "prompt" or "messages"`);
  });

  it('validate-config: exit 0 for a good file, 1 with file:line for a bad one', async () => {
    const good = await run(['validate-config', 'configs/default.yaml']);
    expect(good.code).toBe(0);
    expect(good.out).toContain('configs/default.yaml: ok');
    const dir = await mkdtemp(join(tmpdir(), 'signalman-cli-'));
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'backends:\n  - name: a\n    base_url: not-a-url\n    model: m\n');
    const res = await run(['validate-config', bad]);
    expect(res.code).toBe(1);
    expect(res.err).toContain(`${bad}:3:15: backends[0].base_url:`);
  });

  it('unknown commands exit 2 with the command list', async () => {
    const res = await run(['frobnicate']);
    expect(res.code).toBe(2);
    expect(res.err).toContain('validate-config');
  });
});
