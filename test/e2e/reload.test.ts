// Hot reload: in-flight requests finish on the config they started with, nothing fails during swaps,
// and a bad edit keeps the last good config serving while /readyz says what is wrong.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, twoBackends, waitFor, type Stack } from '../helpers/stack.js';

const ADMIN = 'test-admin-key';
let stack: Stack;
beforeAll(async () => {
  process.env.SIGNALMAN_ADMIN_KEY = ADMIN;
  stack = await startStack({ watch: true });
});
afterAll(() => stack.close());

const msg = [{ role: 'user' as const, content: 'reload me' }];
const preferring = (backend: string) =>
  twoBackends(stack.mock.url).replace('router: { type: fixed, backend: weak }', `router: { type: fixed, backend: ${backend} }`);
const reload = (key = ADMIN) => fetch(`${stack.gw.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${key}` } });
const ready = async () => (await (await fetch(`${stack.gw.url}/readyz`)).json()) as Record<string, any>;

describe('hot reload', () => {
  it('guards /admin/reload with the admin key', async () => {
    const res = await reload('wrong-key');
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
  });

  it('swaps configs under load, plain and streamed, with zero failed requests; in-flight requests and open streams finish on their config', async () => {
    const client = stack.client();
    // A slow request started on the old config (prefers weak) must still be answered by weak.
    const slow = client.chat.completions
      // @ts-expect-error: fault injection
      .create({ model: 'auto', messages: msg, mock: { latency_ms: 400 } })
      .withResponse();
    const generation = () => stack.gw.ref.current?.generation ?? 0;
    /** One stream, read to its end: every token the upstream's usage counts arrived, and it finished. */
    const streamed = async (interTokenMs: number) => {
      const { data, response } = await client.chat.completions
        // @ts-expect-error: fault injection — a paced stream that stays open across reloads
        .create({
          model: 'auto',
          messages: msg,
          stream: true,
          stream_options: { include_usage: true },
          mock: { inter_token_ms: interTokenMs },
        })
        .withResponse();
      const openedAt = generation();
      let tokens = 0;
      let finish: string | null = null;
      let usage: number | null = null;
      for await (const chunk of data) {
        if (chunk.choices[0]?.delta.content) tokens++;
        finish = chunk.choices[0]?.finish_reason ?? finish;
        if (chunk.usage) usage = chunk.usage.completion_tokens;
      }
      if (finish === null || usage === null || tokens !== usage)
        throw new Error(`incomplete stream: ${tokens} tokens of ${usage}, finish ${finish}`);
      return { model: response.headers.get('x-signalman-model'), reloadsSpanned: generation() - openedAt };
    };
    // A stream opened on the old config stays open through every reload below, and ends on weak.
    const longStream = streamed(100);
    let stop = false;
    const results = { ok: 0, failed: 0, streams: 0, byBackend: new Map<string, number>(), errors: [] as string[] };
    const worker = async () => {
      while (!stop) {
        try {
          const { response } = await client.chat.completions.create({ model: 'auto', messages: msg }).withResponse();
          const b = response.headers.get('x-signalman-model') ?? '?';
          results.byBackend.set(b, (results.byBackend.get(b) ?? 0) + 1);
          results.ok++;
        } catch (e) {
          results.failed++;
          results.errors.push(String(e));
        }
      }
    };
    const streamWorker = async () => {
      while (!stop) {
        try {
          await streamed(10);
          results.streams++;
        } catch (e) {
          results.failed++;
          results.errors.push(String(e));
        }
      }
    };
    const workers = [...Array.from({ length: 6 }, worker), ...Array.from({ length: 3 }, streamWorker)];
    // Alternate the preferred backend through both reload paths: file watch and the admin endpoint.
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 60));
      await stack.writeConfig(preferring(i % 2 === 0 ? 'strong' : 'weak'));
      if (i % 2 === 1) expect((await reload()).status).toBe(200);
      else
        await waitFor(
          () =>
            stack.gw.ref.current?.config.policies[0]?.router.type === 'fixed' &&
            (stack.gw.ref.current.config.policies[0].router as { backend?: string }).backend === 'strong',
        );
    }
    await stack.writeConfig(preferring('strong'));
    expect((await reload()).status).toBe(200);
    await new Promise((r) => setTimeout(r, 100));
    stop = true;
    await Promise.all(workers);
    const { response } = await slow;
    expect(response.headers.get('x-signalman-model')).toBe('weak');
    const long = await longStream;
    expect(long.model).toBe('weak');
    expect(long.reloadsSpanned).toBeGreaterThanOrEqual(4);
    expect(results.errors).toEqual([]);
    expect(results.failed).toBe(0);
    expect(results.ok).toBeGreaterThan(50);
    expect(results.streams).toBeGreaterThan(3);
    expect(results.byBackend.get('strong')).toBeGreaterThan(0);
    expect(results.byBackend.get('weak')).toBeGreaterThan(0);
    expect((await ready()).generation).toBeGreaterThanOrEqual(5);
    // Now serving the last config written.
    const { response: last } = await client.chat.completions.create({ model: 'auto', messages: msg }).withResponse();
    expect(last.headers.get('x-signalman-model')).toBe('strong');
  });

  it('keeps the last good config when an edit is bad, and reports file, line and reason', async () => {
    // Let the file watcher's debounced reload of the previous test's last write land first.
    await new Promise((r) => setTimeout(r, 400));
    const before = (await ready()).generation as number;
    const bad = preferring('strong').replace('timeout_ms: 2000', 'timeout_ms: soon');
    await stack.writeConfig(bad);
    const res = await reload();
    expect(res.status).toBe(422);
    const status = (await res.json()) as { ok: boolean; errors: string[] };
    expect(status.ok).toBe(false);
    const line = bad.split('\n').findIndex((l) => l.includes('timeout_ms: soon')) + 1;
    expect(status.errors[0]).toContain(`${stack.configFile}:${line}:`);
    expect(status.errors[0]).toMatch(/timeout_ms/);

    const r = await ready();
    expect(r.ready).toBe(true);
    expect(r.generation).toBe(before);
    expect(r.last_reload.ok).toBe(false);
    expect(r.last_reload.errors[0]).toContain(`:${line}:`);

    const { response } = await stack.client().chat.completions.create({ model: 'auto', messages: msg }).withResponse();
    expect(response.status).toBe(200);
    expect(response.headers.get('x-signalman-model')).toBe('strong');

    // A YAML syntax error and a broken reference are reported the same way; the old config keeps serving.
    await stack.writeConfig(preferring('strong').replace('fallbacks: [strong]', 'fallbacks: [nowhere]'));
    const ref = (await (await reload()).json()) as { errors: string[] };
    expect(ref.errors[0]).toMatch(/fallback 'nowhere', which is not a declared backend/);
    await stack.writeConfig('backends: [\n  { name: x');
    const syn = (await (await reload()).json()) as { errors: string[] };
    expect(syn.errors[0]).toMatch(/YAML syntax/);
    expect((await stack.client().chat.completions.create({ model: 'auto', messages: msg })).choices).toHaveLength(1);

    // Fixing the file recovers.
    await stack.writeConfig(preferring('weak'));
    expect((await reload()).status).toBe(200);
    expect((await ready()).last_reload.ok).toBe(true);
  });
});

describe('server settings on reload', () => {
  it('access_log and body_limit_bytes apply at once; host, port and watch changes are accepted and flagged for a restart', async () => {
    const lines: string[] = [];
    const own = await startStack({ accessLog: { write: (l: string) => lines.push(l) } });
    try {
      const adminReload = async () =>
        (await fetch(`${own.gw.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } })).json() as Promise<
          Record<string, any>
        >;
      const big = 'x'.repeat(4000);
      const client = own.client();
      await client.chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: big }] });
      expect(lines).toHaveLength(0); // the stack's config says access_log: false

      await own.writeConfig(
        twoBackends(own.mock.url).replace(
          'server: { watch: false, access_log: false,',
          'server: { watch: false, access_log: true, body_limit_bytes: 2048, port: 9999,',
        ),
      );
      const status = await adminReload();
      expect(status.ok).toBe(true);
      expect(status.warnings).toEqual(['server.port changed (8080 -> 9999): it takes effect at the next restart']);
      expect(((await (await fetch(`${own.gw.url}/readyz`)).json()) as Record<string, any>).last_reload.warnings).toEqual(status.warnings);

      await client.chat.completions.create({ model: 'auto', messages: msg });
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0] as string)).toMatchObject({ msg: 'request', model: 'auto', status: 200 });
      const tooBig = await client.chat.completions
        .create({ model: 'auto', messages: [{ role: 'user', content: big }] })
        .catch((e: unknown) => e);
      expect((tooBig as { status?: number }).status).toBe(413);
    } finally {
      await own.close();
    }
  });
});
