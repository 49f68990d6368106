// Spend and savings per policy and backend over a window, from the Redis totals (readTotals). Pure: the
// numbers come in as Totals, so the report is testable without Redis and the CLI only formats it.
import type { Granularity, Totals, TotalsMetrics } from './redis-store.js';

/** Minute buckets live 48 h (minute_ttl_s): shorter windows use them, longer ones whole UTC days. */
export const MINUTE_WINDOW_MAX_MS = 48 * 3_600_000;
export const chooseGranularity = (from: Date, to: Date): Granularity =>
  to.getTime() - from.getTime() <= MINUTE_WINDOW_MAX_MS ? 'minute' : 'day';

export interface ReportRow {
  /** Policy or backend name; for a route row `<policy> → <backend>`. */
  name: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  spend_usd: number;
  /** What the policies' most expensive candidates would have cost for the same tokens. */
  counterfactual_usd: number;
  savings_usd: number;
  /** savings / counterfactual, null when the counterfactual is 0. */
  savings_pct: number | null;
  /** Requests that did not end ok/fallback_ok, over requests; null with no requests. */
  error_rate: number | null;
  /** Share of requests: of all requests for policy and backend rows, of the policy's for route rows. */
  share: number | null;
}

export interface Report {
  window: { from: Date; to: Date; granularity: Granularity };
  total: ReportRow;
  policies: ReportRow[];
  backends: ReportRow[];
  /** Per policy, the backends it chose (share within the policy). */
  routes: Array<ReportRow & { policy: string; backend: string }>;
}

function row(name: string, m: TotalsMetrics, of: number): ReportRow {
  const savings = m.counterfactual_cost_usd - m.cost_usd;
  return {
    name,
    requests: m.requests,
    prompt_tokens: m.prompt_tokens,
    completion_tokens: m.completion_tokens,
    spend_usd: m.cost_usd,
    counterfactual_usd: m.counterfactual_cost_usd,
    savings_usd: savings,
    savings_pct: m.counterfactual_cost_usd > 0 ? (100 * savings) / m.counterfactual_cost_usd : null,
    error_rate: m.requests > 0 ? m.errors / m.requests : null,
    share: of > 0 ? m.requests / of : null,
  };
}

const byRequests = (a: ReportRow, b: ReportRow): number => b.requests - a.requests || a.name.localeCompare(b.name);

export function buildReport(totals: Totals, window: { from: Date; to: Date }): Report {
  const all = totals.all.requests;
  const routes: Report['routes'] = [];
  for (const [policy, backends] of Object.entries(totals.route)) {
    const ofPolicy = Object.values(backends).reduce((s, m) => s + m.requests, 0);
    for (const [backend, m] of Object.entries(backends)) routes.push({ ...row(`${policy} → ${backend}`, m, ofPolicy), policy, backend });
  }
  routes.sort((a, b) => a.policy.localeCompare(b.policy) || byRequests(a, b));
  return {
    window: { from: window.from, to: window.to, granularity: totals.granularity },
    total: row('all', totals.all, all),
    policies: Object.entries(totals.policy)
      .map(([n, m]) => row(n, m, all))
      .sort(byRequests),
    backends: Object.entries(totals.backend)
      .map(([n, m]) => row(n, m, all))
      .sort(byRequests),
    routes,
  };
}

/** Dollars with the digits that matter: cheap models cost fractions of a cent per request. */
const usd = (x: number): string => {
  const a = Math.abs(x);
  if (a === 0 || a >= 100) return `$${x.toFixed(2)}`;
  return a >= 0.01 ? `$${x.toFixed(4)}` : `$${x.toPrecision(3)}`;
};
const pct = (x: number | null): string => (x === null ? '-' : `${x.toFixed(1)}%`);
const int = (x: number): string => Math.round(x).toLocaleString('en-US');

/** The report as aligned text tables: policies, the backends each policy chose, backends, and the total. */
export function formatReportTable(r: Report): string {
  const head = ['name', 'requests', 'share', 'prompt_tok', 'compl_tok', 'spend', 'counterfactual', 'savings', 'savings%', 'errors'];
  const cells = (x: ReportRow): string[] => [
    x.name,
    int(x.requests),
    pct(x.share === null ? null : 100 * x.share),
    int(x.prompt_tokens),
    int(x.completion_tokens),
    usd(x.spend_usd),
    usd(x.counterfactual_usd),
    usd(x.savings_usd),
    pct(x.savings_pct),
    pct(x.error_rate === null ? null : 100 * x.error_rate),
  ];
  const sections: Array<[string, ReportRow[]]> = [
    ['policy', r.policies],
    ['policy → backend (share within policy)', r.routes],
    ['backend', r.backends],
    ['total', [r.total]],
  ];
  const all = [head, ...sections.flatMap(([, rows]) => rows.map(cells))];
  const widths = head.map((_, i) => Math.max(...all.map((c) => (c[i] ?? '').length)));
  // Names left-aligned, numbers right-aligned.
  const line = (c: string[]): string => c.map((s, i) => (i === 0 ? s.padEnd(widths[i] ?? 0) : s.padStart(widths[i] ?? 0))).join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  const out = [`window ${r.window.from.toISOString()} .. ${r.window.to.toISOString()} (${r.window.granularity} buckets, UTC)`];
  for (const [title, rows] of sections) {
    if (rows.length === 0) continue;
    out.push('', `[${title}]`, line(head), rule, ...rows.map((x) => line(cells(x))));
  }
  return out.join('\n');
}
