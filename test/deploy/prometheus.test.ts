// The shipped monitoring (deploy/prometheus, deploy/grafana) against the real Prometheus: promtool checks
// the scrape config and the rules and runs the alert unit tests (every alert shown firing and cleared);
// then a real gateway over the mock upstream serves traffic that makes every series the dashboard reads
// exist (shadow, guard, faults → retries, fallbacks and errors, feedback, a failed and a good reload,
// Redis telemetry), a Prometheus on a config derived from the shipped one scrapes it every second, and
// every query of the dashboard must come back with data.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deletePrefix, REDIS_URL, uniquePrefix } from '../helpers/redis.js';
import { startStack, type Stack } from '../helpers/stack.js';
import {
  ALERTS_TEST_YML,
  ALERTS_YML,
  alertCoverage,
  alertNames,
  DASHBOARD_JSON,
  dashboardQueries,
  DEPLOY,
  deriveConfig,
  GATEWAY_JOB,
  PROMETHEUS_YML,
  promtool,
  ROOT,
  startPrometheus,
  substitute,
  type Prometheus,
} from './prom-helpers.js';

describe('promtool', () => {
  it('accepts the scrape config and the alert rules', () => {
    const config = promtool(['check', 'config', PROMETHEUS_YML]);
    expect(config.ok, config.out).toBe(true);
    const rules = promtool(['check', 'rules', ALERTS_YML]);
    expect(rules.ok, rules.out).toBe(true);
  });

  it('passes the alert unit tests, which show every alert firing and then cleared', async () => {
    const run = promtool(['test', 'rules', ALERTS_TEST_YML]);
    expect(run.ok, run.out).toBe(true);
    const names = alertNames(await readFile(ALERTS_YML, 'utf8'));
    expect(names.length).toBeGreaterThanOrEqual(7);
    const cov = alertCoverage(await readFile(ALERTS_TEST_YML, 'utf8'));
    const missing = names.filter((n) => !cov.get(n)?.fires || !cov.get(n)?.clears);
    expect(missing, 'alerts without a unit test showing them firing, then not firing at a later eval_time').toEqual([]);
    const unknown = [...cov.keys()].filter((n) => !names.includes(n));
    expect(unknown, 'unit tests of alerts alerts.yml does not define').toEqual([]);
  });
});

describe('Grafana provisioning', () => {
  it('provisions the datasource the dashboard refers to, and the folder the compose file mounts', async () => {
    const ds = parse(await readFile(join(DEPLOY, 'grafana/provisioning/datasources/prometheus.yml'), 'utf8')) as {
      datasources: Array<{ uid: string; type: string; url: string; isDefault: boolean }>;
    };
    expect(ds.datasources).toHaveLength(1);
    const [prometheus] = ds.datasources;
    expect(prometheus).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090', isDefault: true });
    const providers = parse(await readFile(join(DEPLOY, 'grafana/provisioning/dashboards/signalman.yml'), 'utf8')) as {
      providers: Array<{ type: string; options: { path: string } }>;
    };
    expect(providers.providers).toMatchObject([{ type: 'file', options: { path: '/var/lib/grafana/dashboards' } }]);

    const dashboard = JSON.parse(await readFile(DASHBOARD_JSON, 'utf8')) as { schemaVersion: number; uid: string };
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    // Every datasource reference (panels, targets, variables) is the provisioned one, by uid.
    const refs: Array<{ type?: string; uid?: string }> = [];
    JSON.stringify(dashboard, (key, value: unknown) => {
      if (key === 'datasource' && value !== null && typeof value === 'object') refs.push(value as { type?: string; uid?: string });
      return value;
    });
    const foreign = refs.filter((r) => r.type !== 'grafana' && (r.type !== 'prometheus' || r.uid !== prometheus!.uid));
    expect(refs.length).toBeGreaterThan(30);
    expect(foreign).toEqual([]);
  });
});

// ─── End to end ─────────────────────────────────────────────────────────────────────────────────

const P3 = join(ROOT, 'routers/p3-lexical-lr');
const prefix = uniquePrefix();

/**
 * auto (fixed weak, falls back to strong) is shadowed by premium (fixed strong: never agrees); expert
 * routes by the shipped P3 classifier behind its guard (out-of-domain prompts fall back to weak) and is
 * shadowed by auto (agrees on those); strict rejects out-of-domain prompts. weak cannot report stream
 * usage, so its streams' tokens are estimated. Records go to Redis too (flushes, written).
 */
const config = (url: string) => `
version: 1
server: { watch: false, access_log: false, retry_base_ms: 5, retry_max_ms: 20 }
backends:
  - { name: strong, base_url: "${url}/strong/v1", model: gpt-4-1106-preview, price: { input_per_mtok: 10, output_per_mtok: 30 }, max_retries: 2 }
  - name: weak
    base_url: "${url}/weak/v1"
    model: mixtral-8x7b-instruct-v0.1
    price: { input_per_mtok: 0.24, output_per_mtok: 0.24 }
    max_retries: 1
    stream_usage: false
policies:
  - name: auto
    candidates: [strong, weak]
    router: { type: fixed, backend: weak }
    fallbacks: [strong]
    shadow: premium
  - name: premium
    candidates: [strong, weak]
    router: { type: fixed, backend: strong }
  - name: expert
    candidates: [strong, weak]
    embedder: { type: lexical, dim: 4096 }
    router:
      type: rules
      classifier: { artifact: ${P3}, map: { law: strong, finance: strong, health: strong } }
      default: { prefer: weak }
    guard: { artifact: ${P3}, on_out_of_domain: fallback, fallback: weak }
    fallbacks: [weak]
    shadow: auto
  - name: strict
    candidates: [strong]
    embedder: { type: lexical, dim: 4096 }
    router: { type: fixed, backend: strong }
    guard: { artifact: ${P3}, on_out_of_domain: reject }
telemetry:
  redis: { url: ${REDIS_URL}, key_prefix: '${prefix}', flush_interval_ms: 20 }
`;

const LAW =
  'A defendant was charged with murder. At trial, the prosecution sought to introduce hearsay testimony from a witness. ' +
  'Should the court admit the evidence?\nA. Yes, as an excited utterance\nB. No, because it is hearsay\n' +
  'C. Yes, as a dying declaration\nD. No, because it violates the Confrontation Clause';
const OUT_OF_DOMAIN = 'What is the capital of Peru?';

/** Grafana's variables for a 1 s scrape interval and the "All" choice of $policy. */
const GRAFANA_VARS = {
  __rate_interval: '15s',
  __interval: '2s',
  __range: '5m',
  __range_s: '300',
  policy: '.*',
};

let stack: Stack;
let prom: Prometheus;
let redis: Redis;

const post = async (path: string, body: unknown): Promise<Response> => {
  const res = await fetch(`${stack.gw.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  await res.arrayBuffer(); // read to the end (streams included)
  return res;
};
const chat = (model: string, content: string, extra: Record<string, unknown> = {}) =>
  post('/v1/chat/completions', { model, messages: [{ role: 'user', content }], ...extra });

/** One round of traffic that touches every series the dashboard reads. */
async function round(i: number): Promise<void> {
  const expectStatus = async (what: string, p: Promise<Response>, want: number) => {
    const res = await p;
    if (res.status !== want) throw new Error(`${what}: HTTP ${res.status}, expected ${want}`);
    return res;
  };
  const ok = await expectStatus('auto', chat('auto', `what is the capital of peru ${i}`), 200);
  await expectStatus('auto stream', chat('auto', `tell me a story ${i}`, { stream: true }), 200);
  // weak fails twice (a retry), then strong answers (a fallback): fallback_ok.
  await expectStatus('fallback', chat('auto', `fallback ${i}`, { mock: { status: 503, only_paths: ['/weak/'] } }), 200);
  // strong fails once and answers its retry.
  await expectStatus('retry', chat('premium', `retry ${i}`, { mock: { status: 500, fail_times: 1, key: `${prefix}${i}` } }), 200);
  // every backend fails: upstream_error.
  await expectStatus('all fail', chat('auto', `doomed ${i}`, { mock: { status: 503 } }), 502);
  await expectStatus('expert in domain', chat('expert', LAW), 200);
  await expectStatus('expert out of domain', chat('expert', `${OUT_OF_DOMAIN} ${i}`), 200);
  // Counted as outcome rejected under policy "none": a rejecting guard leaves no policy or verdict on the record.
  await expectStatus('strict out of domain', chat('strict', OUT_OF_DOMAIN), 400);
  await expectStatus('unknown model', chat('no-such-model', 'hello'), 404);
  const id = ok.headers.get('x-signalman-request-id');
  await expectStatus('feedback score', post('/v1/feedback', { request_id: id, score: 0.7 }), 200);
  await expectStatus('feedback label', post('/v1/feedback', { request_id: id, label: 'good', source: 'reviewer' }), 200);
}

beforeAll(async () => {
  redis = new Redis(REDIS_URL);
  stack = await startStack({ config });
  const shipped = await readFile(PROMETHEUS_YML, 'utf8');
  const target = new URL(stack.gw.url).host;
  prom = await startPrometheus((self) => deriveConfig(shipped, target, self));
  // Scraped before any traffic; two rounds a few scrapes apart, so counters born in the first grow in the second.
  await until(async () => (await prom.query(`up{job="${GATEWAY_JOB}"} == 1`)).data?.result.length === 1, 10_000, 'the first scrape');
  await round(0);
  // A reload that fails (the error counter is born at 1), then a good one (generation 2).
  await stack.writeConfig('backends: [oops');
  expect((await stack.gw.ref.reload('test')).ok).toBe(false);
  await stack.writeConfig(config(stack.mock.url));
  expect((await stack.gw.ref.reload('test')).ok).toBe(true);
  await new Promise((r) => setTimeout(r, 1_500));
  await round(1);
}, 60_000);

afterAll(async () => {
  await prom?.close();
  await stack?.close();
  if (redis !== undefined) {
    await deletePrefix(redis, prefix);
    redis.disconnect();
  }
});

async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${prom?.log() ?? ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface Target {
  labels: Record<string, string>;
  health: string;
  lastError: string;
}
interface RuleGroup {
  name: string;
  file: string;
  rules: Array<{ name: string; type: string; health: string; lastError?: string; state?: string }>;
}

describe('a real Prometheus on the shipped config', () => {
  it('scrapes the gateway and itself', async () => {
    const { activeTargets } = await prom.api<{ activeTargets: Target[] }>('targets');
    const byJob = Object.fromEntries(activeTargets.map((t) => [t.labels.job, t]));
    expect(Object.keys(byJob).sort()).toEqual(['prometheus', GATEWAY_JOB].sort());
    for (const t of activeTargets) expect(t.health, `${t.labels.job}: ${t.lastError}`).toBe('up');
  });

  it('loads every rule group of alerts.yml and evaluates every rule without error', async () => {
    const shipped = alertNames(await readFile(ALERTS_YML, 'utf8'));
    await until(
      async () => {
        const { groups } = await prom.api<{ groups: RuleGroup[] }>('rules');
        return groups.flatMap((g) => g.rules).every((r) => r.health !== 'unknown');
      },
      10_000,
      'every rule evaluated once',
    );
    const { groups } = await prom.api<{ groups: RuleGroup[] }>('rules');
    expect(groups.map((g) => g.name).sort()).toEqual(['signalman-alerts', 'signalman-thresholds']);
    const rules = groups.flatMap((g) => g.rules);
    const bad = rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`);
    expect(bad).toEqual([]);
    expect(rules.filter((r) => r.type === 'alerting').map((r) => r.name)).toEqual(shipped);
    // The thresholds the alerts compare against are recorded.
    const budget = await prom.query('signalman:budget_usd_per_hour');
    expect(budget.data?.result).toHaveLength(1);
  });

  it('fires SignalmanConfigReloadFailed for the first failed reload (a counter series born at 1)', async () => {
    await until(
      async () => {
        const { alerts } = await prom.api<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>('alerts');
        return alerts.some((a) => a.labels.alertname === 'SignalmanConfigReloadFailed' && a.state === 'firing');
      },
      10_000,
      'SignalmanConfigReloadFailed firing',
    );
  });

  it('answers every query of the Grafana dashboard with data', async () => {
    const dashboard = JSON.parse(await readFile(DASHBOARD_JSON, 'utf8')) as Parameters<typeof dashboardQueries>[0];
    const queries = dashboardQueries(dashboard).map((q) => ({ ...q, expr: substitute(q.expr, GRAFANA_VARS) }));
    expect(queries.length).toBeGreaterThan(30);
    const failures = async () => {
      const out: string[] = [];
      for (const q of queries) {
        const r = await prom.query(q.expr);
        if (r.status !== 'success') out.push(`${q.where}: ${r.error}\n    ${q.expr}`);
        else if ((r.data?.result.length ?? 0) === 0) out.push(`${q.where}: no data\n    ${q.expr}`);
      }
      return out;
    };
    // rate() needs two samples of a series: give the last round's new series a few scrapes.
    let failed = await failures();
    const end = Date.now() + 10_000;
    while (failed.length > 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 500));
      failed = await failures();
    }
    expect(failed, `dashboard queries that failed or came back empty:\n${failed.join('\n')}`).toEqual([]);
  });
});
