// Telemetry for the life of the process: the request stages, the sinks that subscribe to them (access log,
// memory, Redis, Prometheus), and the record/feedback store the feedback endpoint reads. Built once from
// the first config; a reload neither resets a counter nor reconnects (telemetry settings wait for a restart).
import type { RequestRecord } from './record.js';
import type { TelemetryConfig } from '../config/schema.js';
import { AccessLogSink, type LineWriter } from './access-log.js';
import { MemorySink } from './memory-sink.js';
import { PrometheusSink } from './prometheus-sink.js';
import { redact, type RedisClient } from './redis-client.js';
import { RedisSink, type SinkLogger } from './redis-sink.js';
import { getRecord, putFeedback, type FeedbackInput } from './redis-store.js';
import type { TelemetrySink } from './sink.js';
import { Lru } from '../util/lru.js';
import { Stages } from './stages.js';

export interface TelemetryOptions {
  config: TelemetryConfig;
  /** REDIS_URL turns Redis on with no YAML edit (a container's usual way). */
  env: Readonly<Record<string, string | undefined>>;
  logger: SinkLogger;
  accessLog: LineWriter;
  /** Asked per record: server.access_log applies on reload. */
  accessLogOn: () => boolean;
  /** More sinks (tests). */
  extraSinks?: TelemetrySink[];
}

const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export class Telemetry {
  readonly stages = new Stages();
  readonly memory: MemorySink;
  readonly prometheus: PrometheusSink | null;
  readonly redis: RedisSink | null;
  readonly sinks: readonly TelemetrySink[];
  readonly config: TelemetryConfig;
  /** Feedback kept in memory when there is no Redis: request id -> source -> feedback (bounded like records). */
  private readonly localFeedback: Lru<string, Map<string, FeedbackInput>>;

  constructor(o: TelemetryOptions) {
    this.config = o.config;
    const r = o.config.redis;
    const url = r?.url ?? o.env.REDIS_URL ?? (r !== undefined ? DEFAULT_REDIS_URL : undefined);
    this.redis = url !== undefined && url !== '' && r?.enabled !== false ? new RedisSink({ ...r, url }, o.logger) : null;
    this.memory = new MemorySink(o.config.memory_records);
    this.localFeedback = new Lru(Math.max(1, this.memory.capacity));
    this.prometheus = o.config.metrics.enabled ? new PrometheusSink() : null;
    const sinks: TelemetrySink[] = [new AccessLogSink(o.accessLog, o.accessLogOn), this.memory];
    if (this.prometheus !== null) sinks.push(this.prometheus);
    if (this.redis !== null) sinks.push(this.redis);
    sinks.push(...(o.extraSinks ?? []));
    this.sinks = sinks;
    for (const s of sinks) {
      s.attach(this.stages);
      if (s !== this.prometheus) this.prometheus?.gateway.watchSink(s);
    }
  }

  /** One line for the start-up log: where records go. */
  describe(): string {
    if (this.redis !== null) {
      return `telemetry: records to Redis at ${redact(this.redis.options.url)} (keys ${this.redis.options.key_prefix}*), the last ${this.memory.capacity} also in memory`;
    }
    return `telemetry: no Redis (set REDIS_URL or telemetry.redis): keeping only the last ${this.memory.capacity} records, in memory`;
  }

  get redisClient(): RedisClient | null {
    return this.redis?.client ?? null;
  }

  get keyPrefix(): string {
    return this.redis?.options.key_prefix ?? 'signalman:';
  }

  /** A finished request's record: recent ones from memory, older ones from Redis. */
  async findRecord(id: string): Promise<RequestRecord | null> {
    const local = this.memory.get(id);
    if (local !== undefined) return local;
    if (this.redis === null) return null;
    return getRecord(this.redis.client, this.redis.options.key_prefix, id);
  }

  /** Stores feedback once per request id and source ('updated' when that source had given some). */
  async putFeedback(id: string, source: string, fb: FeedbackInput): Promise<'created' | 'updated'> {
    if (this.redis !== null) {
      const o = this.redis.options;
      return putFeedback(this.redis.client, o.key_prefix, id, source, fb, { ttlS: o.record_ttl_s });
    }
    let bySource = this.localFeedback.peek(id);
    if (bySource === undefined) {
      // Bounded like the records it refers to: the oldest request's feedback goes first.
      bySource = new Map();
      this.localFeedback.set(id, bySource);
    }
    const had = bySource.has(source);
    bySource.set(source, fb);
    return had ? 'updated' : 'created';
  }

  /** Writes what the sinks buffer, within `timeoutMs` (shutdown). */
  async flush(timeoutMs: number): Promise<void> {
    await Promise.allSettled(this.sinks.map((s) => s.flush(timeoutMs)));
  }

  async close(): Promise<void> {
    for (const s of this.sinks) s.detach(this.stages);
    await Promise.allSettled(this.sinks.map((s) => s.close()));
  }
}
