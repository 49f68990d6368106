// GET /metrics behind a bearer token, config reloads counted by result, and metrics that can be off.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, twoBackends, type Stack } from '../helpers/stack.js';

const TOKEN = 'metrics-token-91f2';
let stack: Stack;
let mockUrl: string;
const withToken = (url: string) => `${twoBackends(url)}\ntelemetry: { metrics: { bearer_token_env: TEST_METRICS_TOKEN } }\n`;

beforeAll(async () => {
  process.env.TEST_METRICS_TOKEN = TOKEN;
  stack = await startStack({ config: withToken });
  mockUrl = stack.mock.url;
});
afterAll(() => stack.close());

const scrape = (auth?: string) => fetch(`${stack.gw.url}/metrics`, auth === undefined ? {} : { headers: { authorization: auth } });
const value = (text: string, series: string) =>
  Number(
    text
      .split('\n')
      .find((l) => l.startsWith(`${series} `))
      ?.slice(series.length + 1),
  );

describe('GET /metrics', () => {
  it('answers only with the bearer token, in OpenAI error shape otherwise', async () => {
    expect((await scrape()).status).toBe(401);
    const wrong = await scrape('Bearer nope');
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
    const ok = await scrape(`Bearer ${TOKEN}`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toContain('text/plain');
  });

  it('counts config reloads by result; a failed one keeps the generation and the counters', async () => {
    await stack.client().chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: 'count me' }] });
    const before = await (await scrape(`Bearer ${TOKEN}`)).text();
    expect(value(before, 'signalman_config_reloads_total{result="ok"}')).toBe(1);
    const requests = value(before, 'signalman_requests_total{policy="auto",backend="weak",outcome="ok",endpoint="chat"}');
    expect(requests).toBe(1);

    await stack.writeConfig('backends: [oops');
    expect((await stack.gw.ref.reload('test')).ok).toBe(false);
    await stack.writeConfig(withToken(mockUrl).replace('retry_base_ms: 5', 'retry_base_ms: 6'));
    expect((await stack.gw.ref.reload('test')).ok).toBe(true);
    const after = await (await scrape(`Bearer ${TOKEN}`)).text();
    expect(value(after, 'signalman_config_reloads_total{result="error"}')).toBe(1);
    expect(value(after, 'signalman_config_reloads_total{result="ok"}')).toBe(2);
    expect(value(after, 'signalman_config_generation')).toBe(2);
    // Telemetry lives for the process: a change to it is accepted and said to wait for a restart.
    await stack.writeConfig(withToken(mockUrl).replace('TEST_METRICS_TOKEN } }', 'TEST_METRICS_TOKEN }, memory_records: 5 }'));
    const changed = await stack.gw.ref.reload('test');
    expect(changed.ok).toBe(true);
    expect(changed.warnings).toContain('telemetry changed: it takes effect at the next restart');
    // A reload neither resets a counter nor forgets a series.
    expect(value(after, 'signalman_requests_total{policy="auto",backend="weak",outcome="ok",endpoint="chat"}')).toBe(requests);
  });
});

describe('metrics off', () => {
  it('has no /metrics route', async () => {
    const off = await startStack({ config: (url) => `${twoBackends(url)}\ntelemetry: { metrics: { enabled: false } }\n` });
    try {
      expect((await fetch(`${off.gw.url}/metrics`)).status).toBe(404);
    } finally {
      await off.close();
    }
  });
});
