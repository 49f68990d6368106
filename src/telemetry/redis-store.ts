// The read side of Redis telemetry, and feedback writes: what `/v1/feedback`, `export-feedback` and
// `report` use. Every function takes the client and the key prefix, so it works on whatever connection
// the caller made with createRedisClient. Key names come from redis-keys.ts.
import { z } from 'zod';
import { RequestRecord } from './record.js';
import type { RedisClient } from './redis-client.js';
import { dayBucket, minuteBucket, redisKeys, ROUTE_SEP, TOTAL_METRICS, type TotalMetric } from './redis-keys.js';

const DEFAULT_TTL_S = 86_400;
const PAGE = 500;

/** The record of request `id`, or null when there is none (never written, or expired). Throws when the
 * stored JSON no longer matches the schema: a silent null would hide a schema drift. */
export async function getRecord(client: RedisClient, prefix: string, id: string): Promise<RequestRecord | null> {
  const json = await client.get(redisKeys(prefix).req(id));
  return json === null ? null : RequestRecord.parse(JSON.parse(json));
}

export interface FeedbackInput {
  score?: number;
  label?: string;
  comment?: string;
}
export const StoredFeedback = z.object({
  score: z.number().nullable(),
  label: z.string().nullable(),
  comment: z.string().nullable(),
  /** When it was given, ms since the epoch. */
  ts: z.number(),
});
export type StoredFeedback = z.infer<typeof StoredFeedback>;

/**
 * Stores one source's feedback on request `id`. One value per id + source: a second call from the same
 * source replaces the first ('updated'), so a client retrying never duplicates. The feedback hash lives as
 * long as records do (`ttlS`, record_ttl_s), and the id is indexed in fbset by time for export.
 */
export async function putFeedback(
  client: RedisClient,
  prefix: string,
  id: string,
  source: string,
  fb: FeedbackInput,
  opts: { ttlS?: number; now?: number } = {},
): Promise<'created' | 'updated'> {
  const k = redisKeys(prefix);
  const ts = opts.now ?? Date.now();
  const ttl = opts.ttlS ?? DEFAULT_TTL_S;
  const value: StoredFeedback = { score: fb.score ?? null, label: fb.label ?? null, comment: fb.comment ?? null, ts };
  const res = await client
    .multi()
    .hset(k.fb(id), source, JSON.stringify(value))
    .expire(k.fb(id), ttl)
    .zadd(k.fbset, ts, id)
    // The index would otherwise keep ids whose feedback has expired.
    .zremrangebyscore(k.fbset, '-inf', `(${ts - ttl * 1000}`)
    .exec();
  if (res === null) throw new Error('feedback transaction aborted');
  const [err, added] = res[0] ?? [new Error('no reply'), null];
  if (err !== null) throw err;
  return added === 1 ? 'created' : 'updated';
}

export interface FeedbackRow {
  id: string;
  /** null when the record is gone (expired) or was never written (feedback on an unknown id). */
  record: RequestRecord | null;
  feedback: Array<StoredFeedback & { source: string }>;
}

/** Every request that got feedback between `since` and `until` (by its latest feedback time), oldest first. */
export async function listFeedback(
  client: RedisClient,
  prefix: string,
  range: { since?: Date; until?: Date } = {},
): Promise<FeedbackRow[]> {
  const k = redisKeys(prefix);
  const min = range.since === undefined ? '-inf' : String(range.since.getTime());
  const max = range.until === undefined ? '+inf' : String(range.until.getTime());
  const rows: FeedbackRow[] = [];
  for (let offset = 0; ; offset += PAGE) {
    const ids = await client.zrangebyscore(k.fbset, min, max, 'LIMIT', offset, PAGE);
    if (ids.length === 0) break;
    const p = client.pipeline();
    for (const id of ids) p.get(k.req(id)).hgetall(k.fb(id));
    const replies = (await p.exec()) ?? [];
    ids.forEach((id, i) => {
      const [recErr, rec] = replies[2 * i] ?? [new Error('no reply'), null];
      const [fbErr, fb] = replies[2 * i + 1] ?? [new Error('no reply'), null];
      if (recErr !== null) throw recErr;
      if (fbErr !== null) throw fbErr;
      const feedback = Object.entries(fb as Record<string, string>).map(([source, v]) => ({
        source,
        ...StoredFeedback.parse(JSON.parse(v)),
      }));
      if (feedback.length === 0) return; // expired between the two reads
      rows.push({ id, record: typeof rec === 'string' ? RequestRecord.parse(JSON.parse(rec)) : null, feedback });
    });
    if (ids.length < PAGE) break;
  }
  return rows;
}

export interface TotalsMetrics extends Record<TotalMetric, number> {
  /** Requests per outcome (only outcomes that occurred). */
  outcomes: Record<string, number>;
}
export type Granularity = 'minute' | 'day';
export interface Totals {
  granularity: Granularity;
  from: Date;
  to: Date;
  /** Buckets read, and how many of them had data. */
  buckets: number;
  bucketsWithData: number;
  all: TotalsMetrics;
  policy: Record<string, TotalsMetrics>;
  backend: Record<string, TotalsMetrics>;
  /** policy → backend → metrics: what each policy sent where. */
  route: Record<string, Record<string, TotalsMetrics>>;
}

export const emptyMetrics = (): TotalsMetrics => ({
  requests: 0,
  prompt_tokens: 0,
  completion_tokens: 0,
  cost_usd: 0,
  counterfactual_cost_usd: 0,
  errors: 0,
  outcomes: {},
});

export function emptyTotals(granularity: Granularity, from: Date, to: Date): Totals {
  return { granularity, from, to, buckets: 0, bucketsWithData: 0, all: emptyMetrics(), policy: {}, backend: {}, route: {} };
}

const METRICS = new Set<string>(TOTAL_METRICS);

/** Adds one totals hash (HGETALL of a bucket) into `t`. Unknown fields are ignored (newer writers). */
export function addTotalsHash(t: Totals, hash: Record<string, string>): void {
  const at = (table: Record<string, TotalsMetrics>, name: string): TotalsMetrics => (table[name] ??= emptyMetrics());
  for (const [field, raw] of Object.entries(hash)) {
    const first = field.indexOf('|');
    const last = field.lastIndexOf('|');
    if (first < 0 || last === first) continue;
    const dim = field.slice(0, first);
    const name = field.slice(first + 1, last);
    const metric = field.slice(last + 1);
    let m: TotalsMetrics;
    if (dim === 'all') m = t.all;
    else if (dim === 'policy') m = at(t.policy, name);
    else if (dim === 'backend') m = at(t.backend, name);
    else if (dim === 'route') {
      const sep = name.indexOf(ROUTE_SEP);
      if (sep < 0) continue;
      m = at((t.route[name.slice(0, sep)] ??= {}), name.slice(sep + 1));
    } else continue;
    const v = Number(raw);
    if (metric.startsWith('outcome:')) {
      const o = metric.slice('outcome:'.length);
      m.outcomes[o] = (m.outcomes[o] ?? 0) + v;
    } else if (METRICS.has(metric)) m[metric as TotalMetric] += v;
  }
}

/** The bucket start times (ms) overlapping [from, to): UTC minutes or days. */
export function bucketStarts(from: Date, to: Date, granularity: Granularity): number[] {
  const step = granularity === 'minute' ? 60_000 : 86_400_000;
  const out: number[] = [];
  for (let t = Math.floor(from.getTime() / step) * step; t < to.getTime(); t += step) out.push(t);
  return out;
}

/**
 * Sums the totals of every bucket overlapping [from, to). Buckets are whole UTC minutes or days, so the
 * window is widened to their edges (a day report from 10:00 counts that whole day).
 */
export async function readTotals(
  client: RedisClient,
  prefix: string,
  q: { from: Date; to: Date; granularity: Granularity },
): Promise<Totals> {
  const k = redisKeys(prefix);
  const starts = bucketStarts(q.from, q.to, q.granularity);
  const t = emptyTotals(q.granularity, q.from, q.to);
  t.buckets = starts.length;
  for (let i = 0; i < starts.length; i += PAGE) {
    const p = client.pipeline();
    for (const s of starts.slice(i, i + PAGE)) p.hgetall(q.granularity === 'minute' ? k.totalsMinute(s) : k.totalsDay(s));
    for (const [err, hash] of (await p.exec()) ?? []) {
      if (err !== null) throw err;
      const h = hash as Record<string, string>;
      if (Object.keys(h).length === 0) continue;
      t.bucketsWithData++;
      addTotalsHash(t, h);
    }
  }
  return t;
}

/** The bucket key names of a window, for humans (`redis-cli HGETALL …`). */
export const bucketNames = (from: Date, to: Date, granularity: Granularity): string[] =>
  bucketStarts(from, to, granularity).map((s) => (granularity === 'minute' ? minuteBucket(s) : dayBucket(s)));
