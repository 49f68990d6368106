// Every client request leaves one record — in memory, in the real Redis (by id, in the stream, in the
// totals) and in /metrics — whatever became of it: plain, streamed with and without include_usage,
// failed, aborted, refused. Tokens and cost must match what the mock upstream reported.
import { execFileSync } from 'node:child_process';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RequestRecord } from '../../src/telemetry/record.js';
import { deletePrefix, REDIS_URL, uniquePrefix, waitFor } from '../helpers/redis.js';
import { callsTo, startStack, twoBackends, type Stack } from '../helpers/stack.js';

const prefix = uniquePrefix();
let stack: Stack;
let client: OpenAI;
let redis: Redis;
const accessLines: string[] = [];

// strong: $10 / $30 per M tokens; weak: $0.24 / $0.24; `nousage` is weak's twin that cannot report stream usage.
const config = (url: string) =>
  twoBackends(url)
    .replace('access_log: false', 'access_log: true')
    .replace(
      'policies:',
      `  - name: nousage
    base_url: ${url}/nousage/v1
    model: m
    price: { input_per_mtok: 1, output_per_mtok: 2 }
    stream_usage: false
policies:`,
    )
    .replace('    fallbacks: [strong]', '    fallbacks: [strong]\n    record_prompts: { max_chars: 20 }\n    shadow: cheap') +
  `
  - name: cheap
    candidates: [weak, strong]
    router: { type: fixed, backend: strong }
telemetry:
  redis: { url: ${REDIS_URL}, key_prefix: '${prefix}', flush_interval_ms: 20 }
`;

beforeAll(async () => {
  redis = new Redis(REDIS_URL);
  stack = await startStack({ config, accessLog: { write: (l: string) => accessLines.push(l) } });
  client = stack.client();
});
afterAll(async () => {
  await stack.close();
  await deletePrefix(redis, prefix);
  redis.disconnect();
});

const msg = (content: string) => [{ role: 'user' as const, content }];
const recordOf = async (id: string | null): Promise<RequestRecord> => {
  expect(id).toBeTruthy();
  await waitFor(() => stack.sink.records.some((r) => r.id === id));
  return stack.sink.records.find((r) => r.id === id)!;
};
const inRedis = async (id: string): Promise<RequestRecord> => {
  await waitFor(async () => (await redis.exists(`${prefix}req:${id}`)) === 1, 5_000, `record ${id} in Redis`);
  return JSON.parse((await redis.get(`${prefix}req:${id}`)) as string) as RequestRecord;
};

describe('request records', () => {
  it('a plain routed request: tokens from usage, cost at the price, counterfactual at the dearest candidate', async () => {
    const { data, response } = await client.chat.completions
      .create({ model: 'auto', messages: msg('what is the capital of peru') })
      .withResponse();
    const rec = await recordOf(response.headers.get('x-signalman-request-id'));
    expect(rec).toMatchObject({
      endpoint: 'chat',
      model: 'auto',
      policy: 'auto',
      chosen: 'weak',
      backend: 'weak',
      reason: 'fixed',
      router: 'fixed',
      status: 200,
      outcome: 'ok',
      stream: false,
      tokens_estimated: false,
      prompt_tokens: data.usage!.prompt_tokens,
      completion_tokens: data.usage!.completion_tokens,
      error: null,
      prompt: 'what is the capital ',
    });
    const pt = data.usage!.prompt_tokens;
    const ct = data.usage!.completion_tokens;
    expect(rec.cost_usd).toBeCloseTo((pt * 0.24 + ct * 0.24) / 1e6, 12);
    expect(rec.counterfactual_cost_usd).toBeCloseTo((pt * 10 + ct * 30) / 1e6, 12);
    expect(rec.ttft_ms).toBeGreaterThan(0);
    expect(rec.total_ms).toBeGreaterThanOrEqual(rec.ttft_ms!);
    expect(rec.attempts).toEqual([{ backend: 'weak', status: 200, error: null, ms: expect.any(Number) }]);
    // Durations to the microsecond, not the clock's noise digits.
    for (const ms of [rec.total_ms, rec.ttft_ms!, rec.upstream_ms, rec.route_ms, rec.attempts[0]!.ms]) {
      expect(Math.round(ms * 1000) / 1000).toBe(ms);
    }
    // The shadow policy would have chosen strong: recorded, never acted on.
    await waitFor(() => stack.sink.records.find((r) => r.id === rec.id)?.shadow != null);
    expect(rec.shadow).toMatchObject({ policy: 'cheap', chosen: 'strong', agree: false, error: null });
    expect(rec.shadow!.cost_usd).toBeCloseTo(rec.counterfactual_cost_usd, 12);
    // The same record in Redis, findable by id, and in the stream.
    const stored = await inRedis(rec.id);
    expect(stored).toMatchObject({ id: rec.id, outcome: 'ok', cost_usd: rec.cost_usd, prompt_tokens: pt, shadow: { chosen: 'strong' } });
    const entries = await redis.xrange(`${prefix}records`, '-', '+');
    expect(entries.some(([, fields]) => fields[1] === rec.id)).toBe(true);
  });

  it('a stream whose client did not ask for usage: usage asked upstream, stripped for the client, recorded', async () => {
    const before = callsTo(stack.mock, '/weak/').length;
    const stream = await client.chat.completions.create({ model: 'weak', messages: msg('stream me please'), stream: true }).withResponse();
    const chunks = [];
    for await (const c of stream.data) chunks.push(c);
    expect(chunks.length).toBeGreaterThan(2);
    expect(chunks.every((c) => c.choices.length > 0)).toBe(true); // no usage-only chunk reached the client
    expect(chunks.some((c) => c.usage != null)).toBe(false);
    const sent = callsTo(stack.mock, '/weak/').slice(before)[0]!.body as { stream_options?: { include_usage?: boolean } };
    expect(sent.stream_options?.include_usage).toBe(true);
    const rec = await recordOf(stream.response.headers.get('x-signalman-request-id'));
    expect(rec).toMatchObject({ stream: true, policy: null, backend: 'weak', outcome: 'ok', tokens_estimated: false });
    expect(rec.completion_tokens).toBeGreaterThan(0);
    expect(rec.counterfactual_cost_usd).toBe(rec.cost_usd); // not routed: nothing to compare against
  });

  it('a stream whose client asked for usage gets it, and the record has the same figures', async () => {
    const stream = await client.chat.completions
      .create({ model: 'weak', messages: msg('count my tokens'), stream: true, stream_options: { include_usage: true } })
      .withResponse();
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const c of stream.data) if (c.usage) usage = c.usage;
    expect(usage).toBeTruthy();
    const rec = await recordOf(stream.response.headers.get('x-signalman-request-id'));
    expect(rec).toMatchObject({
      prompt_tokens: usage!.prompt_tokens,
      completion_tokens: usage!.completion_tokens,
      tokens_estimated: false,
    });
  });

  it('a backend with stream_usage off: the client stream is untouched and the tokens are estimated', async () => {
    const before = callsTo(stack.mock, '/nousage/').length;
    const stream = await client.chat.completions.create({ model: 'nousage', messages: msg('no usage here'), stream: true }).withResponse();
    let n = 0;
    for await (const _ of stream.data) n++;
    const sent = callsTo(stack.mock, '/nousage/').slice(before)[0]!.body as { stream_options?: unknown };
    expect(sent.stream_options).toBeUndefined();
    const rec = await recordOf(stream.response.headers.get('x-signalman-request-id'));
    expect(rec.tokens_estimated).toBe(true);
    expect(rec.prompt_tokens).toBe(Math.ceil('no usage here'.length / 4));
    expect(rec.completion_tokens).toBe(Math.max(0, n - 2)); // n chunks = role + deltas + finish
    expect(rec.cost_usd).toBeCloseTo((rec.prompt_tokens! * 1 + rec.completion_tokens! * 2) / 1e6, 12);
  });

  it('fallback, upstream failure, client abort and refusals each get their outcome', async () => {
    const fb = await client.chat.completions
      // @ts-expect-error: fault injection — every call to the weak backend fails
      .create({ model: 'auto', messages: msg('fall back'), mock: { status: 500, only_paths: ['/weak/'] } })
      .withResponse();
    const fbRec = await recordOf(fb.response.headers.get('x-signalman-request-id'));
    expect(fbRec).toMatchObject({ outcome: 'fallback_ok', chosen: 'weak', backend: 'strong', status: 200 });
    expect(fbRec.attempts.map((a) => [a.backend, a.status, a.error])).toEqual([
      ['weak', 500, 'status'],
      ['weak', 500, 'status'],
      ['strong', 200, null],
    ]);

    // @ts-expect-error: fault injection — every call fails
    const failed = await client.chat.completions
      .create({ model: 'weak', messages: msg('fail'), mock: { status: 503 } })
      .catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(OpenAI.APIError);
    const failedRec = await recordOf((failed as InstanceType<typeof OpenAI.APIError>).headers?.get('x-signalman-request-id') ?? null);
    expect(failedRec).toMatchObject({
      outcome: 'upstream_error',
      status: 502,
      error: 'upstream_unavailable',
      cost_usd: 0,
      prompt_tokens: null,
    });

    const bad = await fetch(`${stack.gw.url}/v1/chat/completions`, {
      method: 'POST',
      body: '{"model":',
      headers: { 'content-type': 'application/json' },
    });
    const badRec = await recordOf(bad.headers.get('x-signalman-request-id'));
    expect(badRec).toMatchObject({ outcome: 'invalid_request', status: 400, error: 'invalid_json', model: '' });

    const unknown = await client.chat.completions
      .create({ model: 'gpt-9', messages: msg('x') })
      .catch((e: InstanceType<typeof OpenAI.APIError>) => e);
    const unknownRec = await recordOf(unknown.headers?.get('x-signalman-request-id') ?? null);
    expect(unknownRec).toMatchObject({ outcome: 'invalid_request', status: 404, error: 'model_not_found', model: 'gpt-9' });

    const ac = new AbortController();
    const pending = client.chat.completions
      // @ts-expect-error: a slow upstream, so the client gives up first
      .create({ model: 'weak', messages: msg('slow'), mock: { latency_ms: 1000 } }, { signal: ac.signal })
      .catch(() => null);
    await waitFor(() => callsTo(stack.mock, '/weak/').some((r) => JSON.stringify(r.body).includes('"slow"')));
    ac.abort();
    await pending;
    await waitFor(() => stack.sink.records.some((r) => r.outcome === 'client_abort' && r.model === 'weak'));
  });

  it('per-minute and per-day totals add up to the records, by policy and by backend', async () => {
    await waitFor(async () => (await redis.xlen(`${prefix}records`)) >= stack.sink.records.length, 5_000, 'every record in Redis');
    const recs = stack.sink.records;
    const day = new Date(recs[0]!.ts).toISOString().slice(0, 10).replaceAll('-', '');
    const totals = await redis.hgetall(`${prefix}totals:d:${day}`);
    expect(Number(totals['all|*|requests'])).toBe(recs.length);
    const auto = recs.filter((r) => r.policy === 'auto');
    expect(Number(totals['policy|auto|requests'])).toBe(auto.length);
    const spend = auto.reduce((s, r) => s + r.cost_usd, 0);
    expect(Number(totals['policy|auto|cost_usd'])).toBeCloseTo(spend, 12);
    const weakTokens = recs.filter((r) => r.backend === 'weak').reduce((s, r) => s + (r.prompt_tokens ?? 0), 0);
    expect(Number(totals['backend|weak|prompt_tokens'])).toBe(weakTokens);
    expect(Number(totals['all|*|outcome:fallback_ok'])).toBe(recs.filter((r) => r.outcome === 'fallback_ok').length);
    expect(await redis.ttl(`${prefix}totals:d:${day}`)).toBeGreaterThan(0);
  });
});

describe('GET /metrics', () => {
  const scrape = async () => (await fetch(`${stack.gw.url}/metrics`)).text();
  const value = (text: string, series: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  };

  it('counts the traffic it saw, and promtool finds nothing wrong with it', async () => {
    const text0 = await scrape();
    const before = value(text0, 'signalman_requests_total{policy="auto",backend="weak",outcome="ok",endpoint="chat"}');
    for (let i = 0; i < 3; i++) await client.chat.completions.create({ model: 'auto', messages: msg(`metrics ${i}`) });
    await waitFor(() => stack.sink.records.filter((r) => r.prompt?.startsWith('metrics')).length === 3);
    const text = await scrape();
    expect(value(text, 'signalman_requests_total{policy="auto",backend="weak",outcome="ok",endpoint="chat"}')).toBe(before + 3);
    expect(value(text, 'signalman_routing_decisions_total{policy="auto",backend="weak",reason="fixed"}')).toBeGreaterThanOrEqual(3);
    expect(value(text, 'signalman_config_reloads_total{result="ok"}')).toBe(1);
    expect(text).toContain('signalman_request_duration_seconds_bucket{le="0.0005",policy="auto",backend="weak",stream="false"}');
    expect(text).toMatch(/signalman_telemetry_buffered_records\{sink="redis"\} \d+/);
    expect(text).toMatch(/signalman_process_cpu_seconds_total \d/);
    expect(value(text, 'signalman_cost_usd_total{policy="auto",backend="weak"}')).toBeGreaterThan(0);
    // Every attempt the pipeline started has ended (aborted and failed ones included).
    for (const b of ['weak', 'strong', 'nousage']) expect(value(text, `signalman_inflight_requests{backend="${b}"}`), b).toBe(0);
    const out = execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(out.trim()).toBe('');
  });

  it('keeps its series count flat whatever model names and headers clients send', async () => {
    const series = (t: string) =>
      t.split('\n').filter((l) => l.startsWith('signalman_') && !l.startsWith('signalman_process_') && !l.startsWith('signalman_nodejs_'))
        .length;
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => client.chat.completions.create({ model: `warm-${i}`, messages: msg('x') }).catch(() => null)),
    );
    await new Promise((r) => setTimeout(r, 50));
    const flat = series(await scrape());
    const names = Array.from({ length: 300 }, () => Math.random().toString(36).slice(2));
    for (let i = 0; i < names.length; i += 30) {
      await Promise.all(
        names.slice(i, i + 30).map((n) =>
          fetch(`${stack.gw.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', [`x-${n}`]: n, 'x-signalman-conversation-id': n },
            body: JSON.stringify({ model: n, messages: msg(n) }),
          }).then((r) => r.arrayBuffer()),
        ),
      );
    }
    const after = await scrape();
    expect(series(after)).toBe(flat);
    expect(after).not.toContain(names[0]!);
  });
});

describe('POST /v1/feedback', () => {
  const post = (body: unknown) =>
    fetch(`${stack.gw.url}/v1/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('attaches a score to a request, once per source, and says 404 / 400 otherwise', async () => {
    const { response } = await client.chat.completions.create({ model: 'auto', messages: msg('rate me') }).withResponse();
    const id = response.headers.get('x-signalman-request-id')!;
    await recordOf(id);
    const first = await post({ request_id: id, score: 0.8, comment: 'fine' });
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ object: 'signalman.feedback', request_id: id, source: 'default', status: 'created' });
    expect((await (await post({ request_id: id, score: 0.9 })).json()).status).toBe('updated');
    expect((await (await post({ request_id: id, label: 'bad', source: 'reviewer' })).json()).status).toBe('created');
    const stored = await redis.hgetall(`${prefix}fb:${id}`);
    expect(Object.keys(stored).sort()).toEqual(['default', 'reviewer']);
    expect(JSON.parse(stored.default!)).toMatchObject({ score: 0.9, comment: null });
    expect(await redis.zscore(`${prefix}fbset`, id)).not.toBeNull();

    const unknown = await post({ request_id: 'nope-1', score: 1 });
    expect(unknown.status).toBe(404);
    expect((await unknown.json()).error).toMatchObject({ code: 'not_found', param: 'request_id' });
    for (const [body, param] of [
      [{ request_id: id, score: 2 }, 'score'],
      [{ request_id: id }, 'score'],
      [{ request_id: id, score: 1, label: 'good' }, 'score'],
      [{ request_id: id, label: 'meh' }, 'label'],
      [{ score: 1 }, 'request_id'],
      [{ request_id: id, score: 1, source: 'no spaces' }, 'source'],
      [{ request_id: id, score: 1, extra: true }, 'extra'],
    ] as const) {
      const res = await post(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect((await res.json()).error.param, JSON.stringify(body)).toBe(param);
    }
    const text = await (await fetch(`${stack.gw.url}/metrics`)).text();
    expect(text).toMatch(/signalman_feedback_total\{policy="auto",kind="score"\} 2/);
    expect(text).toMatch(/signalman_feedback_total\{policy="auto",kind="label"\} 1/);
  });
});

describe('signalman report', () => {
  it('prints spend and savings per policy from the Redis totals, as a table and as JSON', async () => {
    await waitFor(async () => (await redis.xlen(`${prefix}records`)) >= stack.sink.records.length, 5_000, 'every record in Redis');
    const { reportCommand } = await import('../../src/cli/report.js');
    const out: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((s: string) => out.push(s) > 0) as typeof process.stdout.write;
    try {
      expect(await reportCommand(['--redis', REDIS_URL, '--prefix', prefix, '--hours', '1', '--json'])).toBe(0);
      expect(await reportCommand(['--redis', REDIS_URL, '--prefix', prefix, '--hours', '1'])).toBe(0);
    } finally {
      process.stdout.write = write;
    }
    const report = JSON.parse(out[0]!) as {
      total: { requests: number; spend_usd: number };
      policies: Array<{ name: string; savings_usd: number }>;
    };
    const recs = stack.sink.records;
    expect(report.total.requests).toBe(recs.length);
    expect(report.total.spend_usd).toBeCloseTo(
      recs.reduce((s, r) => s + r.cost_usd, 0),
      10,
    );
    const auto = recs.filter((r) => r.policy === 'auto');
    const savings = auto.reduce((s, r) => s + r.counterfactual_cost_usd - r.cost_usd, 0);
    expect(report.policies.find((p) => p.name === 'auto')?.savings_usd).toBeCloseTo(savings, 10);
    expect(out[1]).toContain('auto');
    expect(await reportCommand(['--hours', 'x'])).toBe(2);
  });
});

describe('secrets and prompt text', () => {
  it('never appear in access lines, metrics or Redis keys; prompts reach a record only where a policy opts in', async () => {
    const secretPrompt = 'my-private-prompt-7f3a9';
    const { response } = await stack
      .client({ apiKey: 'sk-client-secret-5521' })
      .chat.completions.create({ model: 'weak', messages: msg(secretPrompt) })
      .withResponse();
    const id = response.headers.get('x-signalman-request-id')!;
    await inRedis(id);
    const secrets = ['sk-client-secret-5521', 'sk-strong-backend-key', 'Bearer ', secretPrompt];
    const metrics = await (await fetch(`${stack.gw.url}/metrics`)).text();
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    const stored = JSON.stringify(await Promise.all(keys.filter((k) => k.includes(':req:')).map((k) => redis.get(k))));
    expect(accessLines.length).toBeGreaterThan(10);
    for (const secret of secrets) {
      expect(accessLines.join(''), secret).not.toContain(secret);
      expect(metrics, secret).not.toContain(secret);
      expect(keys.join('\n'), secret).not.toContain(secret);
      expect(stored, secret).not.toContain(secret);
    }
    // `auto` opted in (record_prompts, 20 characters): its prompts are in its records, cut.
    expect(stored).toContain('what is the capital ');
    expect(stored).not.toContain('what is the capital of peru');
  });
});
