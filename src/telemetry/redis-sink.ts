// Writes every finished request's record to Redis (stream, record by id, minute and day totals) from a
// bounded in-memory buffer, off the request path. The `finish` handler is one bounds check and one push;
// a timer writes batches, ONE script call per batch, only while the client is `ready`. Redis down, slow,
// restarting or a black hole never reaches the handler: with no offline queue and a command timeout, a
// failed batch simply goes back to the front of the buffer and is tried again once Redis is ready.
//
// Re-sending is safe: the script writes a record only if its key does not exist yet, and adds only the new
// records to the stream and the totals, so a batch whose reply was lost (timeout) but which Redis did apply
// is not counted twice when it is retried. The totals are summed here, per key and field over the batch,
// so a batch of 500 records costs a few dozen HINCRBYFLOATs and its script does no per-record arithmetic:
// a record is its key and its JSON (the stream entry's id is cut from the key), one SET NX and one XADD, and
// the stream is trimmed once per batch, not per XADD. Only a batch that meets records already written (a
// retry) has the script sum its new records again, from their JSON. Measured against the per-record sums in
// the script (bench/sinks.ts, same runs): redis-server ~12.5 -> ~9 µs of CPU per record, the sink's JS ~3 µs
// less. JSON arguments stay strings: passing them as Buffer slices measured cheaper to encode in isolation
// but dearer end to end (a fresh half-megabyte buffer per batch: page faults and external-memory GCs).
import type { z } from 'zod';
import { RedisTelemetryOptions } from '../config/schema.js';
import { Cluster, type Result } from 'ioredis';
import { createRedisClient, redact, parseRedisUrl, type RedisClient } from './redis-client.js';
import { dayBucket, hasHashTag, minuteBucket, NONE, redisKeys, ROUTE_SEP, type RedisKeys } from './redis-keys.js';
import type { RequestRecord } from './record.js';
import type { SinkStats, TelemetrySink } from './sink.js';
import type { Stages } from './stages.js';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** See BATCH_LUA: numkeys, keys, then the arguments it lists. Replies with the number of new records. */
    signalmanBatch(...args: string[]): Result<number, Context>;
  }
}

/** What the sink logs through: pino's logger fits. */
export interface SinkLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const MINUTE_MS = 60_000;

// KEYS: [1] the stream, [2 .. n+1] each record's key, then each totals hash the batch touches.
// ARGV: [1] n records, [2] stream max len, [3] record ttl, [4] m minutes, [5] where the id starts in a record's
// key (after `{prefix}req:`), then per record its JSON, then per minute (minute number = floor(ts / 60000), index of its minute hash, index of its day hash), then per
// totals hash to the end (its key index, ttl, f, then f pairs of field and increment: the batch's sums).
// The minutes are only read when some records were already there: their totals are then summed again, from
// the new records' JSON, as the increments above assume every record is new.
const BATCH_LUA = `
local n, maxlen, ttl, m, idAt = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local dups = nil
for i = 1, n do
  local json = ARGV[5 + i]
  -- One command both checks and writes: a record already there (a retried batch) is skipped.
  if redis.call('SET', KEYS[1 + i], json, 'NX', 'EX', ttl) then
    redis.call('XADD', KEYS[1], '*', 'id', string.sub(KEYS[1 + i], idAt), 'rec', json)
  else
    dups = dups or {}
    dups[i] = true
  end
end
redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', maxlen)
local first = 6 + n + 3 * m
if dups == nil then
  local t = first
  while t <= #ARGV do
    local key, f = KEYS[tonumber(ARGV[t])], tonumber(ARGV[t + 2])
    for j = 1, f do redis.call('HINCRBYFLOAT', key, ARGV[t + 1 + 2 * j], ARGV[t + 2 + 2 * j]) end
    redis.call('EXPIRE', key, ARGV[t + 1])
    t = t + 3 + 2 * f
  end
  return n
end
local ttls, buckets, sums = {}, {}, {}
local t = first
while t <= #ARGV do
  ttls[tonumber(ARGV[t])] = ARGV[t + 1]
  t = t + 3 + 2 * tonumber(ARGV[t + 2])
end
for j = 0, m - 1 do
  local d = 6 + n + 3 * j
  buckets[ARGV[d]] = {tonumber(ARGV[d + 1]), tonumber(ARGV[d + 2])}
end
local function add(k, field, v)
  if v == 0 then return end
  local h = sums[k]
  if h == nil then h = {}; sums[k] = h end
  h[field] = (h[field] or 0) + v
end
local function num(v)
  if type(v) == 'number' and v == v and v ~= math.huge and v ~= -math.huge then return v end
  return 0
end
local function name(v)
  if type(v) == 'string' then return v end
  return '${NONE}'
end
local new = 0
for i = 1, n do
  if not dups[i] then
    new = new + 1
    local r = cjson.decode(ARGV[5 + i])
    local p, b, o = name(r.policy), name(r.backend), r.outcome
    local err = 1
    if o == 'ok' or o == 'fallback_ok' then err = 0 end
    local pt, ct, cost, cf = num(r.prompt_tokens), num(r.completion_tokens), num(r.cost_usd), num(r.counterfactual_cost_usd)
    for _, k in ipairs(buckets[string.format('%d', math.floor(r.ts / ${MINUTE_MS}))]) do
      for _, dim in ipairs({'all|*|', 'policy|' .. p .. '|', 'backend|' .. b .. '|', 'route|' .. p .. '${ROUTE_SEP}' .. b .. '|'}) do
        add(k, dim .. 'requests', 1)
        add(k, dim .. 'outcome:' .. o, 1)
        add(k, dim .. 'errors', err)
        add(k, dim .. 'prompt_tokens', pt)
        add(k, dim .. 'completion_tokens', ct)
        add(k, dim .. 'cost_usd', cost)
        add(k, dim .. 'counterfactual_cost_usd', cf)
      end
    end
  end
end
for k, h in pairs(sums) do
  for field, v in pairs(h) do redis.call('HINCRBYFLOAT', KEYS[k], field, string.format('%.17g', v)) end
  redis.call('EXPIRE', KEYS[k], ttls[k])
end
return new
`;

/** Server replies worth retrying: the server is loading, busy or failing over, not refusing the command. */
const RETRYABLE_REPLY = /^(LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY|NOSCRIPT)/;
const isRetryable = (err: Error): boolean => err.name !== 'ReplyError' || RETRYABLE_REPLY.test(err.message);
/** How often the drop count is logged while drops happen. */
const DROP_LOG_MS = 10_000;

const noopLogger: SinkLogger = { info() {}, warn() {}, error() {} };

/** One (minute, policy, backend, outcome) of a batch: the records that add to the same totals fields. */
interface Group {
  minute: number;
  policy: string;
  backend: string;
  outcome: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  cost: number;
  counterfactual: number;
}

/** A figure the totals add: a non-finite one (never made by the pipeline) counts as 0, as the script reads its JSON null. */
const figure = (x: number | null): number => (x !== null && Number.isFinite(x) ? x : 0);

/**
 * What a buffered record keeps until its batch is written: its JSON (made on the request path, so a batch
 * does not stall the event loop stringifying hundreds at once) and the figures the totals need, not the
 * record's object graph (one flat string is little work for the garbage collector).
 */
interface Pending {
  id: string;
  json: string;
  ts: number;
  policy: string | null;
  backend: string | null;
  outcome: string;
  promptTokens: number;
  completionTokens: number;
  cost: number;
  counterfactual: number;
}

const pending = (r: RequestRecord): Pending => ({
  id: r.id,
  json: JSON.stringify(r),
  ts: r.ts,
  policy: r.policy,
  backend: r.backend,
  outcome: r.outcome,
  promptTokens: figure(r.prompt_tokens),
  completionTokens: figure(r.completion_tokens),
  cost: figure(r.cost_usd),
  counterfactual: figure(r.counterfactual_cost_usd),
});

/** The script's keys and arguments for one batch (see BATCH_LUA), the totals summed per hash and field. */
function batchArgs(keys: RedisKeys, o: RedisTelemetryOptions, batch: readonly Pending[]): string[] {
  const n = batch.length;
  const allKeys: string[] = [keys.records];
  const jsons: string[] = [];
  const groups = new Map<string, Group>();
  for (const r of batch) {
    allKeys.push(keys.req(r.id));
    jsons.push(r.json);
    const minute = Math.floor(r.ts / MINUTE_MS);
    const policy = r.policy ?? NONE;
    const backend = r.backend ?? NONE;
    const gk = `${minute}|${policy}|${backend}|${r.outcome}`;
    let g = groups.get(gk);
    if (g === undefined) {
      g = { minute, policy, backend, outcome: r.outcome, requests: 0, promptTokens: 0, completionTokens: 0, cost: 0, counterfactual: 0 };
      groups.set(gk, g);
    }
    g.requests++;
    g.promptTokens += r.promptTokens;
    g.completionTokens += r.completionTokens;
    g.cost += r.cost;
    g.counterfactual += r.counterfactual;
  }

  // Totals hashes get key indices after the records' keys; minutes map to their minute and day hashes.
  const hashIndex = new Map<string, number>();
  const hashTtl: number[] = [];
  const sums: Array<Map<string, number>> = [];
  const hash = (key: string, ttl: number): number => {
    let i = hashIndex.get(key);
    if (i === undefined) {
      i = hashTtl.length;
      hashIndex.set(key, i);
      hashTtl.push(ttl);
      sums.push(new Map());
    }
    return i;
  };
  const minutes = new Map<number, [number, number]>();
  for (const g of groups.values()) {
    let at = minutes.get(g.minute);
    if (at === undefined) {
      const ms = g.minute * MINUTE_MS;
      at = [
        hash(`${keys.prefix}totals:m:${minuteBucket(ms)}`, o.minute_ttl_s),
        hash(`${keys.prefix}totals:d:${dayBucket(ms)}`, o.day_ttl_s),
      ];
      minutes.set(g.minute, at);
    }
    const err = g.outcome === 'ok' || g.outcome === 'fallback_ok' ? 0 : g.requests;
    for (const h of at) {
      const fields = sums[h]!;
      const add = (field: string, v: number): void => {
        if (v !== 0) fields.set(field, (fields.get(field) ?? 0) + v);
      };
      for (const dim of ['all|*|', `policy|${g.policy}|`, `backend|${g.backend}|`, `route|${g.policy}${ROUTE_SEP}${g.backend}|`]) {
        add(`${dim}requests`, g.requests);
        add(`${dim}outcome:${g.outcome}`, g.requests);
        add(`${dim}errors`, err);
        add(`${dim}prompt_tokens`, g.promptTokens);
        add(`${dim}completion_tokens`, g.completionTokens);
        add(`${dim}cost_usd`, g.cost);
        add(`${dim}counterfactual_cost_usd`, g.counterfactual);
      }
    }
  }

  const firstHash = allKeys.length + 1; // KEYS index of the first totals hash
  allKeys.push(...hashIndex.keys());
  const args: string[] = [String(allKeys.length), ...allKeys, String(n), String(o.stream_max_len), String(o.record_ttl_s)];
  args.push(String(minutes.size), String(keys.req('').length + 1));
  for (const x of jsons) args.push(x);
  for (const [minute, [m, d]] of minutes) args.push(String(minute), String(firstHash + m), String(firstHash + d));
  sums.forEach((fields, i) => {
    args.push(String(firstHash + i), String(hashTtl[i]), String(fields.size));
    for (const [field, v] of fields) args.push(field, String(v));
  });
  return args;
}

export class RedisSink implements TelemetrySink {
  readonly name = 'redis';
  readonly options: RedisTelemetryOptions & { url: string };
  readonly client: RedisClient;
  private readonly keys: RedisKeys;
  private readonly log: SinkLogger;
  private buffer: Pending[] = [];
  /** Records in the pipeline being written: they count against the bound, since a failure puts them back. */
  private inFlight = 0;
  private draining: Promise<void> | null = null;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  /** null until the first connect succeeds or fails; logs only on a change. */
  private up: boolean | null = null;
  private droppedCount = 0;
  private droppedLogged = 0;
  private lastDropLog = 0;
  private lastErr: string | null = null;
  /** Consecutive failed batches, and when the next may start: a server that fails fast is not hammered. */
  private failures = 0;
  private retryAt = 0;
  /** Pipelines written, pipelines that failed, records newly written (re-sent duplicates not counted). */
  flushes = 0;
  flushErrors = 0;
  written = 0;
  /** Records Redis already had (a retried batch that had been applied). */
  duplicates = 0;

  /** `options` as in the config's telemetry.redis block, with the url resolved (REDIS_URL or the default). */
  constructor(options: z.input<typeof RedisTelemetryOptions> & { url: string }, logger: SinkLogger = noopLogger) {
    this.options = { ...RedisTelemetryOptions.parse(options), url: options.url };
    // Checked here as well as in the config: parseRedisUrl knows every form, the config only the schemes.
    if (parseRedisUrl(options.url).kind === 'cluster' && !hasHashTag(this.options.key_prefix)) {
      throw new Error(`a cluster url needs a hash tag in telemetry.redis.key_prefix, e.g. '{signalman}:'`);
    }
    this.log = logger;
    this.keys = redisKeys(this.options.key_prefix);
    const o = this.options;
    this.client = createRedisClient(o.url, {
      // Commands while not connected fail at once instead of queueing without bound.
      enableOfflineQueue: false,
      lazyConnect: true,
      // A black hole (accepts TCP, never answers) fails each command, and the ready check, after this.
      commandTimeout: o.command_timeout_ms,
      connectTimeout: Math.max(o.command_timeout_ms, 1_000),
      maxRetriesPerRequest: 1,
      // Keep reconnecting forever, backing off to 2 s: telemetry must come back by itself.
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
    });
    // No numberOfKeys: a batch declares as many keys as it touches (numkeys first).
    this.client.defineCommand('signalmanBatch', { lua: BATCH_LUA });
    this.client.on('ready', () => {
      if (this.up === false) this.log.info({ url: redact(o.url), buffered: this.buffer.length }, 'redis telemetry: connection restored');
      this.up = true;
    });
    // Without an 'error' listener ioredis prints every reconnect failure to the console.
    this.client.on('error', (err: Error) => {
      this.lastErr = err.message;
      this.markDown(err.message);
    });
    this.client.on('close', () => this.markDown(this.lastErr ?? 'connection closed'));
    this.client.connect().catch(() => {
      // Reported through 'error'; retryStrategy keeps trying.
    });
    this.timer = setInterval(() => this.tick(), o.flush_interval_ms);
    this.timer.unref();
  }

  /** The `finish` handler: O(1), never throws, never waits. Past the bound the NEW record is dropped:
   * it costs nothing on the request path (no shifting), and the outage's first records are kept. */
  private readonly onFinish = (rec: RequestRecord): void => {
    if (this.closed || this.buffer.length + this.inFlight >= this.options.buffer_max_records) {
      this.droppedCount++;
      return;
    }
    this.buffer.push(pending(rec));
  };

  attach(stages: Stages): void {
    stages.finish.subscribe(this.onFinish);
  }

  detach(stages: Stages): void {
    stages.finish.unsubscribe(this.onFinish);
  }

  /** Buffers a record as the `finish` stage would (tests, replays). */
  push(rec: RequestRecord): void {
    this.onFinish(rec);
  }

  stats(): SinkStats {
    return { buffered: this.buffer.length + this.inFlight, dropped: this.droppedCount, lastError: this.lastErr };
  }

  /** Cumulative writes, exported as signalman_telemetry_flushes_total / _written_records_total. */
  counters(): { flushes: number; written: number } {
    return { flushes: this.flushes, written: this.written };
  }

  async flush(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    // Never waits past the deadline, even on a batch stuck in a black hole (its timeout may be longer).
    const until = (p: Promise<void>, ms: number): Promise<void> =>
      new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(0, ms));
        void p.then(() => {
          clearTimeout(t);
          resolve();
        });
      });
    const pause = (): Promise<void> => until(new Promise<void>(() => {}), Math.min(deadline - Date.now(), 20));
    while (this.buffer.length + this.inFlight > 0 && Date.now() < deadline) {
      const running = this.startDrain();
      if (running === null) {
        await pause(); // not ready yet (connecting, reconnecting)
        continue;
      }
      await until(running, deadline - Date.now());
      // A batch failed (records back in the buffer): do not spin on a server that refuses them.
      if (this.lastErr !== null && Date.now() < deadline) await pause();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush(this.options.command_timeout_ms * 2);
    this.closed = true;
    clearInterval(this.timer);
    this.logDrops(true);
    try {
      if (this.client.status === 'ready') await this.client.quit();
      else this.client.disconnect();
    } catch {
      this.client.disconnect();
    }
  }

  private markDown(reason: string): void {
    if (this.closed || this.up === false) return;
    // `up === null`: the first connect failed, which is worth one line too.
    this.log.warn(
      { url: redact(this.options.url), reason, buffered: this.buffer.length },
      'redis telemetry: redis unavailable, buffering records',
    );
    this.up = false;
  }

  private tick(): void {
    this.startDrain();
    this.logDrops(false);
  }

  private logDrops(force: boolean): void {
    const now = Date.now();
    if (this.droppedCount === this.droppedLogged || (!force && now - this.lastDropLog < DROP_LOG_MS)) return;
    this.log.warn(
      { dropped: this.droppedCount - this.droppedLogged, dropped_total: this.droppedCount },
      'redis telemetry: records dropped',
    );
    this.droppedLogged = this.droppedCount;
    this.lastDropLog = now;
  }

  /**
   * Commands that timed out stay queued on the connection until it answers; a fresh connection drops
   * them, so a server that stopped answering cannot grow that queue batch after batch. `disconnect(true)`
   * ends the socket gracefully, which a peer that stopped reading never completes (the client would stay
   * 'ready' on an unwritable socket), so a standalone client's socket is destroyed: ioredis sees the close
   * and reconnects. A cluster gets `disconnect(true)`, which at least leaves the 'ready' state.
   */
  private resetConnection(): void {
    if (this.client instanceof Cluster) this.client.disconnect(true);
    else this.client.stream?.destroy();
  }

  /** Starts writing batches unless that is already happening, Redis is not ready, or a failed batch is
   * backing off; the running drain, or null. */
  private startDrain(): Promise<void> | null {
    if (this.draining !== null) return this.draining;
    if (this.buffer.length === 0 || this.client.status !== 'ready' || Date.now() < this.retryAt) return null;
    this.draining = (async () => {
      while (this.buffer.length > 0 && this.client.status === 'ready' && (await this.writeBatch()));
    })().finally(() => {
      this.draining = null;
    });
    return this.draining;
  }

  /** Writes one batch in one script call; false when it failed (a retryable failure puts it back in the buffer). */
  private async writeBatch(): Promise<boolean> {
    const batch = this.buffer.splice(0, this.options.batch_max);
    this.inFlight = batch.length;
    let failure: string | null = null;
    try {
      const written = await this.client.signalmanBatch(...batchArgs(this.keys, this.options, batch));
      this.written += written;
      this.duplicates += batch.length - written;
    } catch (err) {
      failure = (err as Error).message;
      if (isRetryable(err as Error)) {
        this.buffer = batch.concat(this.buffer);
        if (/timed out/i.test(failure)) this.resetConnection();
      } else {
        // Redis refused the batch (a bug, not an outage): retrying would loop forever.
        this.droppedCount += batch.length;
        this.log.error({ err: failure, records: batch.length }, 'redis telemetry: batch refused');
      }
    } finally {
      this.inFlight = 0;
    }
    this.lastErr = failure;
    if (failure !== null) {
      this.flushErrors++;
      this.failures++;
      this.retryAt = Date.now() + Math.min(100 * 2 ** Math.min(this.failures, 5), 2_000);
      return false;
    }
    this.failures = 0;
    this.flushes++;
    return true;
  }
}
