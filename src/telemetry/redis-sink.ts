// Writes every finished request's record to Redis (stream, record-by-id hash, minute and day totals) from a
// bounded in-memory buffer, off the request path. The `finish` handler is one bounds check and one push;
// a timer writes batches, ONE script call per batch, only while the client is `ready`. Redis down, slow,
// restarting or a black hole never reaches the handler: with no offline queue and a command timeout, a
// failed batch simply goes back to the front of the buffer and is tried again once Redis is ready.
//
// Re-sending is safe: the script writes a record only if its hash does not exist yet, and adds only the new
// records to the stream and the totals, so a batch whose reply was lost (timeout) but which Redis did apply
// is not counted twice when it is retried. The totals are summed inside the script, per distinct field, so
// a batch of 500 records costs a few dozen HINCRBYFLOATs rather than tens of thousands (measured: the
// per-record script cost redis-server ~42 µs of CPU per request on the bench).
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
    signalmanBatch(...args: Array<string | number>): Result<number, Context>;
  }
}

/** What the sink logs through: pino's logger fits. */
export interface SinkLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

// KEYS: [1] the stream, [2 .. n+1] each record's key, then each totals hash the batch touches.
// ARGV: [1] n records, [2] groups g, [3] stream max len, [4] record ttl, then per record
//   (id, json, group, prompt tokens, completion tokens, cost, counterfactual),
// then per group (minute key index, day key index, policy, backend, outcome, is error), then per totals key
// its ttl. A group is one (minute, policy, backend, outcome): the records that add to the same fields.
const R = 7;
const G = 6;
const BATCH_LUA = `
local n, g, maxlen, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local acc = {}
local new = 0
for i = 0, n - 1 do
  local a = 5 + i * ${R}
  local key = KEYS[2 + i]
  -- One command both checks and writes: a record already there (a retried batch) is skipped.
  if redis.call('SET', key, ARGV[a + 1], 'NX', 'EX', ttl) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'id', ARGV[a], 'rec', ARGV[a + 1])
    local grp = tonumber(ARGV[a + 2])
    local s = acc[grp]
    if s == nil then s = {0, 0, 0, 0, 0}; acc[grp] = s end
    s[1] = s[1] + 1
    s[2] = s[2] + tonumber(ARGV[a + 3])
    s[3] = s[3] + tonumber(ARGV[a + 4])
    s[4] = s[4] + tonumber(ARGV[a + 5])
    s[5] = s[5] + tonumber(ARGV[a + 6])
    new = new + 1
  end
end
local sums = {}
local function add(k, field, v)
  if v == 0 then return end
  local h = sums[k]
  if h == nil then h = {}; sums[k] = h end
  h[field] = (h[field] or 0) + v
end
local base = 5 + n * ${R}
for grp, s in pairs(acc) do
  local d = base + (grp - 1) * ${G}
  local p, b, o, err = ARGV[d + 2], ARGV[d + 3], ARGV[d + 4], tonumber(ARGV[d + 5])
  for _, k in ipairs({tonumber(ARGV[d]), tonumber(ARGV[d + 1])}) do
    for _, dim in ipairs({'all|*|', 'policy|' .. p .. '|', 'backend|' .. b .. '|', 'route|' .. p .. '${ROUTE_SEP}' .. b .. '|'}) do
      add(k, dim .. 'requests', s[1])
      add(k, dim .. 'outcome:' .. o, s[1])
      add(k, dim .. 'errors', err * s[1])
      add(k, dim .. 'prompt_tokens', s[2])
      add(k, dim .. 'completion_tokens', s[3])
      add(k, dim .. 'cost_usd', s[4])
      add(k, dim .. 'counterfactual_cost_usd', s[5])
    end
  end
end
local ttls = base + g * ${G}
for k, h in pairs(sums) do
  local key = KEYS[k]
  for field, v in pairs(h) do redis.call('HINCRBYFLOAT', key, field, string.format('%.17g', v)) end
  redis.call('EXPIRE', key, ARGV[ttls + k - (2 + n)])
end
return new
`;

/** Server replies worth retrying: the server is loading, busy or failing over, not refusing the command. */
const RETRYABLE_REPLY = /^(LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY|NOSCRIPT)/;
const isRetryable = (err: Error): boolean => err.name !== 'ReplyError' || RETRYABLE_REPLY.test(err.message);
/** How often the drop count is logged while drops happen. */
const DROP_LOG_MS = 10_000;

const noopLogger: SinkLogger = { info() {}, warn() {}, error() {} };

/**
 * What a buffered record keeps until its batch is written: its JSON and the figures the totals need, not the
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
  promptTokens: r.prompt_tokens ?? 0,
  completionTokens: r.completion_tokens ?? 0,
  cost: r.cost_usd,
  counterfactual: r.counterfactual_cost_usd,
});

/** The script's keys and arguments for one batch (see BATCH_LUA). */
function batchArgs(keys: RedisKeys, o: RedisTelemetryOptions, batch: readonly Pending[]): Array<string | number> {
  const recordKeys: string[] = [];
  const recordArgs: Array<string | number> = [];
  const groups = new Map<string, number>();
  const groupArgs: Array<string | number> = [];
  const totalsKeys = new Map<string, number>();
  const ttls: number[] = [];
  const first = 2 + batch.length;
  const totalsIndex = (key: string, ttl: number): number => {
    let i = totalsKeys.get(key);
    if (i === undefined) {
      i = first + totalsKeys.size;
      totalsKeys.set(key, i);
      ttls.push(ttl);
    }
    return i;
  };
  for (const r of batch) {
    const policy = r.policy ?? NONE;
    const backend = r.backend ?? NONE;
    const minute = minuteBucket(r.ts);
    const gk = `${minute}|${policy}|${backend}|${r.outcome}`;
    let group = groups.get(gk);
    if (group === undefined) {
      group = groups.size + 1;
      groups.set(gk, group);
      const m = totalsIndex(`${keys.prefix}totals:m:${minute}`, o.minute_ttl_s);
      const d = totalsIndex(`${keys.prefix}totals:d:${dayBucket(r.ts)}`, o.day_ttl_s);
      groupArgs.push(m, d, policy, backend, r.outcome, r.outcome === 'ok' || r.outcome === 'fallback_ok' ? 0 : 1);
    }
    recordKeys.push(keys.req(r.id));
    recordArgs.push(r.id, r.json, group, r.promptTokens, r.completionTokens, r.cost, r.counterfactual);
  }
  const allKeys = [keys.records, ...recordKeys, ...totalsKeys.keys()];
  return [allKeys.length, ...allKeys, batch.length, groups.size, o.stream_max_len, o.record_ttl_s, ...recordArgs, ...groupArgs, ...ttls];
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
