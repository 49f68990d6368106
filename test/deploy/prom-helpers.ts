// Helpers for test/deploy/prometheus.test.ts: promtool, a real Prometheus server on a temp config derived
// from the shipped deploy/prometheus/prometheus.yml, the queries of the shipped Grafana dashboard with
// Grafana's variables substituted, and which alerts the promtool unit tests show firing and cleared.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { freePort } from '../helpers/redis.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const DEPLOY = join(ROOT, 'deploy');
export const PROMETHEUS_YML = join(DEPLOY, 'prometheus/prometheus.yml');
export const ALERTS_YML = join(DEPLOY, 'prometheus/alerts.yml');
export const ALERTS_TEST_YML = join(DEPLOY, 'prometheus/alerts.test.yml');
export const DASHBOARD_JSON = join(DEPLOY, 'grafana/dashboards/signalman.json');

/** The job of the shipped scrape config that scrapes the gateway replicas. */
export const GATEWAY_JOB = 'signalman';

/** Runs promtool; `ok` is its exit status 0, `out` stdout and stderr together (for assertion messages). */
export function promtool(args: string[]): { ok: boolean; out: string } {
  const r = spawnSync('promtool', args, { encoding: 'utf8', cwd: ROOT, timeout: 60_000 });
  if (r.error) throw new Error(`cannot run promtool (apt-get install -y --no-install-recommends prometheus): ${r.error.message}`);
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

// ─── Scrape config ──────────────────────────────────────────────────────────────────────────────

type ScrapeConfig = Record<string, unknown> & { job_name: string; static_configs?: Array<{ targets: string[] }> };
type PromConfig = Record<string, unknown> & {
  global?: Record<string, unknown>;
  rule_files?: string[];
  scrape_configs: ScrapeConfig[];
};

/**
 * The shipped config, for a test: the gateway job keeps every setting (path, scheme, timeouts) but its DNS
 * service discovery becomes one static target; Prometheus scrapes itself at `self`; the rule files are the
 * shipped ones (absolute: the temp config lives elsewhere); everything is scraped and evaluated every second.
 */
export function deriveConfig(shipped: string, gateway: string, self: string): string {
  const cfg = parse(shipped) as PromConfig;
  cfg.global = { ...cfg.global, scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' };
  cfg.rule_files = (cfg.rule_files ?? []).map((f) => resolve(join(DEPLOY, 'prometheus'), f));
  const gw = cfg.scrape_configs.find((j) => j.job_name === GATEWAY_JOB);
  if (gw === undefined) throw new Error(`the shipped prometheus.yml has no job '${GATEWAY_JOB}'`);
  for (const job of cfg.scrape_configs) {
    delete job.scrape_interval;
    delete job.scrape_timeout;
  }
  delete gw.dns_sd_configs;
  gw.static_configs = [{ targets: [gateway] }];
  const prom = cfg.scrape_configs.find((j) => j.job_name === 'prometheus');
  if (prom !== undefined) prom.static_configs = [{ targets: [self] }];
  return stringify(cfg);
}

// ─── A Prometheus server ────────────────────────────────────────────────────────────────────────

export interface Prometheus {
  url: string;
  /** GET /api/v1/<path>; throws unless the API says status success. */
  api<T = unknown>(path: string): Promise<T>;
  /** Instant query now: the API's whole answer (status, data or error). */
  query(expr: string): Promise<{ status: string; error?: string; data?: { resultType: string; result: unknown[] } }>;
  log(): string;
  close(): Promise<void>;
}

export async function startPrometheus(config: (self: string) => string): Promise<Prometheus> {
  const dir = await mkdtemp(join(tmpdir(), 'signalman-prometheus-'));
  const port = await freePort();
  const self = `127.0.0.1:${port}`;
  const file = join(dir, 'prometheus.yml');
  await writeFile(file, config(self));
  let log = '';
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${file}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=${self}`,
      '--storage.tsdb.retention.time=1h',
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', (b: Buffer) => (log += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (log += b.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let spawnError: Error | null = null;
  child.once('error', (err) => (spawnError = err));
  const url = `http://${self}`;
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const end = Date.now() + 20_000;
    for (;;) {
      if (spawnError !== null) throw new Error(`cannot run prometheus: ${(spawnError as Error).message}`);
      if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}:\n${log}`);
      const ready = await fetch(`${url}/-/ready`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) break;
      if (Date.now() > end) throw new Error(`prometheus not ready in 20 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await close();
    throw err;
  }
  const query: Prometheus['query'] = async (expr) => {
    const res = await fetch(`${url}/api/v1/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ query: expr }),
    });
    return (await res.json()) as Awaited<ReturnType<Prometheus['query']>>;
  };
  return {
    url,
    query,
    api: async <T>(path: string) => {
      const body = (await (await fetch(`${url}/api/v1/${path}`)).json()) as { status: string; data: T; error?: string };
      if (body.status !== 'success') throw new Error(`GET /api/v1/${path}: ${body.error ?? body.status}`);
      return body.data;
    },
    log: () => log,
    close,
  };
}

// ─── The Grafana dashboard ──────────────────────────────────────────────────────────────────────

interface Panel {
  title?: string;
  type?: string;
  targets?: Array<{ expr?: string; refId?: string }>;
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating?: { list: Array<{ name: string; type: string; query?: string | { query?: string } }> };
}

export interface DashboardQuery {
  where: string;
  expr: string;
}

/** Every PromQL query of the dashboard: panel targets (rows and collapsed rows included) and query variables. */
export function dashboardQueries(dashboard: Dashboard): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  const walk = (panels: Panel[], row: string) => {
    for (const p of panels) {
      const where = `${row}${p.title ?? `(${p.type ?? 'panel'})`}`;
      for (const t of p.targets ?? [])
        if (t.expr !== undefined && t.expr.trim() !== '') out.push({ where: `${where} [${t.refId}]`, expr: t.expr });
      if (p.panels !== undefined) walk(p.panels, `${where} / `);
    }
  };
  walk(dashboard.panels, '');
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
    out.push({ where: `variable $${v.name}`, expr: variableQuery(q) });
  }
  return out;
}

/** Grafana's label_values(metric, label) as the PromQL it stands for (one series per value); other forms unchanged. */
function variableQuery(q: string): string {
  const m = /^\s*label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$/.exec(q);
  return m === null ? q : `count by (${m[2]}) (${m[1]})`;
}

/**
 * Grafana's variables as Grafana would substitute them for a 1 s scrape interval: $__rate_interval at
 * least 4 scrapes, $policy as its "All" value (a regex matching every policy), both $x and ${x} forms.
 */
export function substitute(expr: string, vars: Record<string, string>): string {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)/g, (whole, a?: string, b?: string, c?: string) => {
    const name = a ?? b ?? c ?? '';
    const v = vars[name];
    if (v === undefined) throw new Error(`no value for Grafana variable ${whole} in: ${expr}`);
    return v;
  });
}

// ─── Alert coverage of the promtool unit tests ──────────────────────────────────────────────────

/** Alert names of a rules file. */
export function alertNames(rulesYaml: string): string[] {
  const doc = parse(rulesYaml) as { groups: Array<{ rules: Array<{ alert?: string }> }> };
  return doc.groups.flatMap((g) => g.rules.flatMap((r) => (r.alert === undefined ? [] : [r.alert])));
}

/** Go-style duration ('1h30m', '90s') in seconds. */
function seconds(d: string): number {
  const unit: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
  let total = 0;
  for (const [, n, u] of d.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)/g)) total += Number(n) * unit[u as string]!;
  return total;
}

/**
 * Per alert name: does a unit test show it firing, and, in the same test, not firing at a later time
 * (cleared once its condition went away)?
 */
export function alertCoverage(testYaml: string): Map<string, { fires: boolean; clears: boolean }> {
  const doc = parse(testYaml) as {
    tests: Array<{ alert_rule_test?: Array<{ eval_time: string; alertname: string; exp_alerts?: unknown[] | null }> }>;
  };
  const cov = new Map<string, { fires: boolean; clears: boolean }>();
  for (const t of doc.tests) {
    const cases = t.alert_rule_test ?? [];
    for (const name of new Set(cases.map((c) => c.alertname))) {
      const mine = cases.filter((c) => c.alertname === name);
      const firing = mine.filter((c) => (c.exp_alerts ?? []).length > 0).map((c) => seconds(c.eval_time));
      const quiet = mine.filter((c) => (c.exp_alerts ?? []).length === 0).map((c) => seconds(c.eval_time));
      const prev = cov.get(name) ?? { fires: false, clears: false };
      cov.set(name, {
        fires: prev.fires || firing.length > 0,
        clears: prev.clears || (firing.length > 0 && quiet.some((q) => q > Math.min(...firing))),
      });
    }
  }
  return cov;
}
