// What the console (/ui) reads: recent decisions and a window's rate, routing share and spend. From Redis
// when the gateway writes records there (every replica on that prefix: the records stream and the
// per-minute totals), else from this process's in-memory ring (telemetry.memory_records). Read-only.
import type { RuntimeRef } from '../runtime/runtime-ref.js';
import { RequestRecord } from '../telemetry/record.js';
import { redisKeys } from '../telemetry/redis-keys.js';
import { emptyMetrics, emptyTotals, readTotals, type Totals, type TotalsMetrics } from '../telemetry/redis-store.js';
import type { Telemetry } from '../telemetry/telemetry.js';

/** The summary covers this much (15 minute buckets in Redis: 14 whole ones and the current one so far). */
const SUMMARY_WINDOW_MIN = 15;
/** The request rate is measured over this (in Redis: the previous whole minute and the current one so far). */
const RATE_WINDOW_S = 60;
export const DECISIONS_DEFAULT = 50;
export const DECISIONS_MAX = 200;

const MINUTE = 60_000;
/** The totals name of a null policy or backend (redis-keys.ts NONE). */
const NONE = '-';

export type Source = 'redis' | 'memory';

/** A record as the console shows it: everything but the client key id. Prompt text only when the policy records it. */
export type DecisionRow = Omit<RequestRecord, 'key_id'>;

export interface Decisions {
  object: 'signalman.console.decisions';
  source: Source;
  /** Why Redis was not used although configured (it failed), else null. */
  note: string | null;
  limit: number;
  /** Newest first. */
  data: DecisionRow[];
}

export interface Money {
  requests: number;
  errors: number;
  cost_usd: number;
  counterfactual_cost_usd: number;
  savings_usd: number;
  /** savings / counterfactual in %, null when the counterfactual is 0. */
  savings_pct: number | null;
}

export interface PolicySummary extends Money {
  /** null: requests not routed by a policy (a backend named directly, or refused before routing). */
  policy: string | null;
  /** In the running config (a policy removed by a reload can still have traffic in the window). */
  configured: boolean;
  description: string | null;
  router: string | null;
  candidates: string[];
  /** Where its requests went (the backend that answered, or the last one tried), most requests first. */
  routes: Array<{ backend: string | null; requests: number; share: number }>;
}

export interface Summary {
  object: 'signalman.console.summary';
  source: Source;
  /** Whose requests: every replica writing to the Redis prefix, or this process only. */
  scope: 'all_replicas' | 'this_replica';
  note: string | null;
  generation: number;
  /** ms since the epoch. `truncated`: the memory ring held fewer minutes than asked (it keeps `capacity` records). */
  window: { from: number; to: number; seconds: number; truncated: boolean; capacity: number | null };
  rate: { from: number; to: number; seconds: number; requests: number; per_second: number };
  total: Money;
  policies: PolicySummary[];
}

export class ConsoleData {
  constructor(
    private readonly ref: RuntimeRef,
    private readonly telemetry: Telemetry,
  ) {}

  async decisions(limit: number): Promise<Decisions> {
    const redis = this.telemetry.redis;
    let note: string | null = null;
    if (redis !== null) {
      try {
        const entries = await redis.client.xrevrange(redisKeys(redis.options.key_prefix).records, '+', '-', 'COUNT', limit);
        const data: DecisionRow[] = [];
        for (const [, fields] of entries) {
          const json = fieldOf(fields, 'rec');
          if (json === null) continue;
          const parsed = RequestRecord.safeParse(safeJson(json));
          // A record of another version that no longer parses is left out rather than failing the page.
          if (parsed.success) data.push(row(parsed.data));
        }
        return { object: 'signalman.console.decisions', source: 'redis', note: null, limit, data };
      } catch (err) {
        note = redisNote(err);
      }
    }
    const recent = this.telemetry.memory.records.slice(-limit).reverse().map(row);
    return { object: 'signalman.console.decisions', source: 'memory', note: note ?? this.noMemoryNote(), limit, data: recent };
  }

  async summary(now = Date.now()): Promise<Summary> {
    const redis = this.telemetry.redis;
    let note: string | null = null;
    if (redis !== null) {
      try {
        const prefix = redis.options.key_prefix;
        const minuteStart = Math.floor(now / MINUTE) * MINUTE;
        const from = minuteStart - (SUMMARY_WINDOW_MIN - 1) * MINUTE;
        const rateFrom = minuteStart - MINUTE;
        const to = new Date(now);
        const [window, rate] = await Promise.all([
          readTotals(redis.client, prefix, { from: new Date(from), to, granularity: 'minute' }),
          readTotals(redis.client, prefix, { from: new Date(rateFrom), to, granularity: 'minute' }),
        ]);
        return this.build('redis', null, now, { from, truncated: false, capacity: null }, window, rateFrom, rate.all.requests);
      } catch (err) {
        note = redisNote(err);
      }
    }
    const memory = this.telemetry.memory;
    const records = memory.records;
    // A full ring no longer holds the oldest requests of the window: the window starts at its oldest record.
    const oldest = records.length >= memory.capacity && records.length > 0 ? (records[0] as RequestRecord).ts : -Infinity;
    const from = Math.max(now - SUMMARY_WINDOW_MIN * MINUTE, oldest);
    const rateFrom = Math.max(now - RATE_WINDOW_S * 1000, oldest);
    const totals = emptyTotals('minute', new Date(from), new Date(now));
    let rateRequests = 0;
    for (const r of records) {
      if (r.ts < from || r.ts > now) continue;
      addRecord(totals, r);
      if (r.ts >= rateFrom) rateRequests++;
    }
    const truncated = oldest > now - SUMMARY_WINDOW_MIN * MINUTE;
    return this.build(
      'memory',
      note ?? this.noMemoryNote(),
      now,
      { from, truncated, capacity: memory.capacity },
      totals,
      rateFrom,
      rateRequests,
    );
  }

  private noMemoryNote(): string | null {
    return this.telemetry.memory.capacity === 0 ? 'telemetry.memory_records is 0 and there is no Redis: no records are kept to show' : null;
  }

  private build(
    source: Source,
    note: string | null,
    now: number,
    w: { from: number; truncated: boolean; capacity: number | null },
    t: Totals,
    rateFrom: number,
    rateRequests: number,
  ): Summary {
    const rt = this.ref.current;
    const configured = rt === null ? [] : [...rt.policies.values()];
    const names = new Set<string>([...configured.map((p) => p.name), ...Object.keys(t.policy)]);
    const policies: PolicySummary[] = [];
    for (const name of names) {
      const compiled = rt?.policies.get(name);
      const m = t.policy[name] ?? emptyMetrics();
      const routes = Object.entries(t.route[name] ?? {})
        .map(([backend, r]) => ({ backend: backend === NONE ? null : backend, requests: r.requests, share: 0 }))
        .filter((r) => r.requests > 0)
        .sort((a, b) => b.requests - a.requests || String(a.backend).localeCompare(String(b.backend)));
      const routed = routes.reduce((s, r) => s + r.requests, 0);
      for (const r of routes) r.share = routed > 0 ? r.requests / routed : 0;
      policies.push({
        policy: name === NONE ? null : name,
        configured: compiled !== undefined,
        description: compiled?.config.description ?? null,
        router: compiled?.config.router.type ?? null,
        candidates: compiled ? [...compiled.candidateNames] : [],
        ...money(m),
        routes,
      });
    }
    const rateSeconds = Math.max(1, (now - rateFrom) / 1000);
    return {
      object: 'signalman.console.summary',
      source,
      scope: source === 'redis' ? 'all_replicas' : 'this_replica',
      note,
      generation: rt?.generation ?? 0,
      window: { from: w.from, to: now, seconds: Math.round((now - w.from) / 1000), truncated: w.truncated, capacity: w.capacity },
      rate: { from: rateFrom, to: now, seconds: Math.round(rateSeconds), requests: rateRequests, per_second: rateRequests / rateSeconds },
      total: money(t.all),
      policies,
    };
  }
}

function money(m: TotalsMetrics): Money {
  const savings = m.counterfactual_cost_usd - m.cost_usd;
  return {
    requests: m.requests,
    errors: m.errors,
    cost_usd: m.cost_usd,
    counterfactual_cost_usd: m.counterfactual_cost_usd,
    savings_usd: savings,
    savings_pct: m.counterfactual_cost_usd > 0 ? (100 * savings) / m.counterfactual_cost_usd : null,
  };
}

/** Adds one record to totals the way the Redis sink's script does (same dims, same names for null). */
function addRecord(t: Totals, r: RequestRecord): void {
  const policy = r.policy ?? NONE;
  const backend = r.backend ?? NONE;
  const error = r.outcome === 'ok' || r.outcome === 'fallback_ok' ? 0 : 1;
  const targets = [t.all, (t.policy[policy] ??= emptyMetrics()), ((t.route[policy] ??= {})[backend] ??= emptyMetrics())];
  for (const m of targets) {
    m.requests++;
    m.errors += error;
    m.cost_usd += r.cost_usd;
    m.counterfactual_cost_usd += r.counterfactual_cost_usd;
    m.prompt_tokens += r.prompt_tokens ?? 0;
    m.completion_tokens += r.completion_tokens ?? 0;
    m.outcomes[r.outcome] = (m.outcomes[r.outcome] ?? 0) + 1;
  }
}

const row = ({ key_id: _keyId, ...rest }: RequestRecord): DecisionRow => rest;

function fieldOf(fields: string[], name: string): string | null {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1] as string;
  return null;
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
}

const redisNote = (err: unknown): string =>
  `Redis unavailable (${(err as Error)?.message ?? String(err)}): showing this replica's in-memory records`;
