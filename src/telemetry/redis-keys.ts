// Every Redis key Signalman's telemetry writes, built in one place from one prefix (default `signalman:`).
// Writers (redis-sink.ts) and readers (redis-store.ts, report, export-feedback) both go through here, so a key
// name cannot drift between them.
//
//   {p}records              stream   capped log of every record: XADD {p}records * id <id> rec <json>, XTRIM MAXLEN ~ N per batch
//   {p}req:<id>             hash     one record by id: rec=<json>, policy, backend, outcome, ts, cost_usd; TTL record_ttl_s
//   {p}fb:<id>              hash     feedback on one request: field <source> = {"score","label","comment","ts"}; same TTL
//   {p}fbset                zset     ids that got feedback, score = last feedback ms: export lists it without SCAN
//   {p}totals:m:<yyyymmddHHMM>  hash totals of the requests that arrived in that UTC minute; TTL minute_ttl_s
//   {p}totals:d:<yyyymmdd>      hash totals of the requests that arrived in that UTC day; TTL day_ttl_s
//
// Totals fields are `<dim>|<name>|<metric>` (names never contain `|`: the config's name rule forbids it):
//   dim    all (name `*`), policy (name `-` when unrouted), backend (name `-` when none was tried),
//          route (name `<policy>><backend>`: which backend each policy chose, for routing shares)
//   metric requests, prompt_tokens, completion_tokens, cost_usd, counterfactual_cost_usd (floats, USD),
//          errors (outcome not ok/fallback_ok), outcome:<outcome> (one per OUTCOMES value)
// Buckets use the record's arrival time (ts), not the write time, so a record re-sent later lands in the
// same bucket, and the report's windows mean "requests that arrived then".
//
// Redis Cluster: the sink's Lua script touches the req hash, the stream and two totals hashes in one call,
// so they must hash to one slot. In cluster mode the prefix must therefore contain a hash tag, e.g.
// `{signalman}:` (RedisTelemetryOptions refuses a cluster URL without one). All telemetry then lives on one
// shard, which its write rate (one script per request) comfortably allows.

export const DEFAULT_KEY_PREFIX = 'signalman:';

/** The metrics of one totals field. Sums, except the outcome counts. */
export const TOTAL_METRICS = ['requests', 'prompt_tokens', 'completion_tokens', 'cost_usd', 'counterfactual_cost_usd', 'errors'] as const;
export type TotalMetric = (typeof TOTAL_METRICS)[number];
/** The name used for a null policy or backend in totals fields. */
export const NONE = '-';
/** Separates policy and backend in a `route` name. */
export const ROUTE_SEP = '>';

/** The key table, for the README and `signalman --help`-style docs. `{p}` is the prefix. */
export const KEY_SCHEME: ReadonlyArray<{ key: string; type: string; ttl: string; contents: string }> = [
  {
    key: '{p}records',
    type: 'stream',
    ttl: 'none (MAXLEN ~ stream_max_len)',
    contents: 'Every record: entry fields `id`, `rec` (record JSON). `XREVRANGE signalman:records + - COUNT 10`',
  },
  {
    key: '{p}req:<id>',
    type: 'string',
    ttl: 'record_ttl_s (1 d)',
    contents: 'The record JSON, by request id: `redis-cli GET signalman:req:<id>`',
  },
  {
    key: '{p}fb:<id>',
    type: 'hash',
    ttl: 'record_ttl_s (1 d)',
    contents: 'Feedback: field `<source>` = JSON `{score,label,comment,ts}`; one per id+source, later writes overwrite',
  },
  {
    key: '{p}fbset',
    type: 'zset',
    ttl: 'none (trimmed to record_ttl_s on write)',
    contents: 'Request ids with feedback, score = last feedback time (ms)',
  },
  {
    key: '{p}totals:m:<yyyymmddHHMM>',
    type: 'hash',
    ttl: 'minute_ttl_s (48 h)',
    contents: 'Totals of requests that arrived in that UTC minute, fields `<dim>|<name>|<metric>`',
  },
  {
    key: '{p}totals:d:<yyyymmdd>',
    type: 'hash',
    ttl: 'day_ttl_s (400 d)',
    contents: 'Totals of requests that arrived in that UTC day, same fields',
  },
];

/** KEY_SCHEME plus the totals field scheme as a markdown table, ready for the README. */
export function keySchemeMarkdown(prefix = DEFAULT_KEY_PREFIX): string {
  // A `|` inside a cell (the totals field scheme) must be escaped or it splits the cell.
  const cell = (s: string): string => s.replace(/\|/g, '\\|');
  const rows = KEY_SCHEME.map((k) => `| \`${k.key.replace('{p}', prefix)}\` | ${cell(k.type)} | ${cell(k.ttl)} | ${cell(k.contents)} |`);
  return [
    '| Key | Type | TTL | Contents |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
    'Totals fields are `<dim>|<name>|<metric>`: dim `all` (name `*`), `policy` (`-` = unrouted), `backend` (`-` = none),',
    '`route` (name `<policy>><backend>`); metric `requests`, `prompt_tokens`, `completion_tokens`, `cost_usd`,',
    '`counterfactual_cost_usd`, `errors` (outcome other than ok/fallback_ok), `outcome:<outcome>`.',
    `Example: \`redis-cli HGETALL ${prefix}totals:d:20261206\` → \`policy|default|cost_usd\` = \`1.2345\`.`,
  ].join('\n');
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
/** UTC `yyyymmdd` of a time in ms. */
export const dayBucket = (ms: number): string => {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}`;
};
/** UTC `yyyymmddHHMM` of a time in ms. */
export const minuteBucket = (ms: number): string => {
  const d = new Date(ms);
  return `${dayBucket(ms)}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}`;
};

export interface RedisKeys {
  readonly prefix: string;
  readonly records: string;
  readonly fbset: string;
  req(id: string): string;
  fb(id: string): string;
  totalsMinute(ms: number): string;
  totalsDay(ms: number): string;
}

export function redisKeys(prefix = DEFAULT_KEY_PREFIX): RedisKeys {
  return {
    prefix,
    records: `${prefix}records`,
    fbset: `${prefix}fbset`,
    req: (id) => `${prefix}req:${id}`,
    fb: (id) => `${prefix}fb:${id}`,
    totalsMinute: (ms) => `${prefix}totals:m:${minuteBucket(ms)}`,
    totalsDay: (ms) => `${prefix}totals:d:${dayBucket(ms)}`,
  };
}

/** True when the prefix has a hash tag as Redis reads it (first `{`, then the next `}`, non-empty between), so
 * every key built from it lands in one cluster slot whatever follows. */
export const hasHashTag = (prefix: string): boolean => {
  const open = prefix.indexOf('{');
  const close = open < 0 ? -1 : prefix.indexOf('}', open + 1);
  return close > open + 1;
};
