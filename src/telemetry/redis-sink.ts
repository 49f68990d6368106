// Writes every finished request's record to Redis (stream, record-by-id hash, minute and day totals) from a
// bounded in-memory buffer, off the request path. The `finish` handler is one bounds check and one push;
// a timer writes batches, one pipeline per batch, only while the client is `ready`. Redis down, slow,
// restarting or a black hole never reaches the handler: with no offline queue and a command timeout, a
// failed batch simply goes back to the front of the buffer and is tried again once Redis is ready.
//
// Re-sending is safe: a Lua script per record writes the record hash only if it does not exist yet and
// only then adds to the stream and the totals, so a batch whose replies were lost (timeout) but which Redis
// did apply is not counted twice when it is retried.
import type { z } from 'zod';
import { RedisTelemetryOptions } from '../config/schema.js';
import { Cluster, type ChainableCommander, type Result } from 'ioredis';
import { createRedisClient, redact, parseRedisUrl, type RedisClient } from './redis-client.js';
import { hasHashTag, NONE, redisKeys, ROUTE_SEP, totalsField, type RedisKeys, type TotalDim } from './redis-keys.js';
import type { RequestRecord } from './record.js';
import type { SinkStats, TelemetrySink } from './sink.js';
import type { Stages } from './stages.js';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** See RECORD_LUA: 4 keys, then the arguments it lists. 1 = written, 0 = already there. */
    signalmanRecord(...args: Array<string | number>): Result<number, Context>;
  }
}

/** What the sink logs through: pino's logger fits. */
export interface SinkLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

// KEYS[1] req hash, KEYS[2] stream, KEYS[3] minute totals, KEYS[4] day totals.
// ARGV: 1 id, 2 record JSON, 3 policy, 4 backend, 5 outcome, 6 ts, 7 cost_usd, 8 stream max len,
// 9 record ttl, 10 minute ttl, 11 day ttl, 12 n = number of integer increments, then n (field, int)
// pairs for HINCRBY, then (field, float) pairs for HINCRBYFLOAT.
const RECORD_LUA = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'policy', ARGV[3], 'backend', ARGV[4], 'outcome', ARGV[5], 'ts', ARGV[6], 'cost_usd', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[9])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', 'id', ARGV[1], 'rec', ARGV[2])
local i = 13
for _ = 1, tonumber(ARGV[12]) do
  redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1])
  redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i < #ARGV do
  redis.call('HINCRBYFLOAT', KEYS[3], ARGV[i], ARGV[i + 1])
  redis.call('HINCRBYFLOAT', KEYS[4], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('EXPIRE', KEYS[3], ARGV[10])
redis.call('EXPIRE', KEYS[4], ARGV[11])
return 1
`;

/** Server replies worth retrying: the server is loading, busy or failing over, not refusing the command. */
const RETRYABLE_REPLY = /^(LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY|NOSCRIPT)/;
const isRetryable = (err: Error): boolean => err.name !== 'ReplyError' || RETRYABLE_REPLY.test(err.message);
/** How often the drop count is logged while drops happen. */
const DROP_LOG_MS = 10_000;

const noopLogger: SinkLogger = { info() {}, warn() {}, error() {} };

/** The script's arguments for one record: the totals increments of every dimension it counts in. */
function recordArgs(keys: RedisKeys, o: RedisTelemetryOptions, r: RequestRecord): Array<string | number> {
  const policy = r.policy ?? NONE;
  const backend = r.backend ?? NONE;
  const dims: Array<[TotalDim, string]> = [
    ['all', '*'],
    ['policy', policy],
    ['backend', backend],
    ['route', `${policy}${ROUTE_SEP}${backend}`],
  ];
  const isError = r.outcome !== 'ok' && r.outcome !== 'fallback_ok' ? 1 : 0;
  const ints: Array<string | number> = [];
  const floats: Array<string | number> = [];
  for (const [dim, name] of dims) {
    ints.push(totalsField(dim, name, 'requests'), 1, totalsField(dim, name, `outcome:${r.outcome}`), 1);
    if (isError) ints.push(totalsField(dim, name, 'errors'), 1);
    if (r.prompt_tokens) ints.push(totalsField(dim, name, 'prompt_tokens'), r.prompt_tokens);
    if (r.completion_tokens) ints.push(totalsField(dim, name, 'completion_tokens'), r.completion_tokens);
    // Floats as JS prints them (shortest round-trip form; Redis parses exponents too).
    if (r.cost_usd !== 0) floats.push(totalsField(dim, name, 'cost_usd'), String(r.cost_usd));
    if (r.counterfactual_cost_usd !== 0) floats.push(totalsField(dim, name, 'counterfactual_cost_usd'), String(r.counterfactual_cost_usd));
  }
  return [
    keys.req(r.id),
    keys.records,
    keys.totalsMinute(r.ts),
    keys.totalsDay(r.ts),
    r.id,
    JSON.stringify(r),
    policy,
    backend,
    r.outcome,
    r.ts,
    String(r.cost_usd),
    o.stream_max_len,
    o.record_ttl_s,
    o.minute_ttl_s,
    o.day_ttl_s,
    ints.length / 2,
    ...ints,
    ...floats,
  ];
}

export class RedisSink implements TelemetrySink {
  readonly name = 'redis';
  readonly options: RedisTelemetryOptions & { url: string };
  readonly client: RedisClient;
  private readonly keys: RedisKeys;
  private readonly log: SinkLogger;
  private buffer: RequestRecord[] = [];
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
    this.client.defineCommand('signalmanRecord', { numberOfKeys: 4, lua: RECORD_LUA });
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
    this.buffer.push(rec);
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

  /** Writes one batch in one pipeline; false when it failed (its retryable records are back in the buffer). */
  private async writeBatch(): Promise<boolean> {
    const batch = this.buffer.splice(0, this.options.batch_max);
    this.inFlight = batch.length;
    let retry: RequestRecord[] = [];
    let failure: string | null = null;
    let timedOut = false;
    try {
      const p: ChainableCommander = this.client.pipeline();
      for (const r of batch) p.signalmanRecord(...recordArgs(this.keys, this.options, r));
      const replies = (await p.exec()) ?? [];
      for (let i = 0; i < batch.length; i++) {
        const r = batch[i] as RequestRecord;
        const [err, res] = replies[i] ?? [new Error('no reply'), null];
        if (err === null) {
          if (res === 1) this.written++;
          else this.duplicates++;
        } else if (isRetryable(err)) {
          retry.push(r);
          failure = err.message;
          timedOut ||= /timed out/i.test(err.message);
        } else {
          // Redis refused this record (a bug, not an outage): retrying would loop forever.
          this.droppedCount++;
          failure = err.message;
          this.log.error({ err: err.message, id: r.id }, 'redis telemetry: record refused');
        }
      }
    } catch (err) {
      retry = batch;
      failure = (err as Error).message;
      timedOut = /timed out/i.test(failure);
    } finally {
      this.inFlight = 0;
    }
    if (retry.length > 0) {
      this.buffer = retry.concat(this.buffer);
      if (timedOut) this.resetConnection();
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
