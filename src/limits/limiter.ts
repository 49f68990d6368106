// Client-key limits and budgets: one check before a request is forwarded (requests, tokens, spend), one
// charge when its answer is known (tokens used, cost). Counted in Redis when telemetry has Redis (every
// replica shares them), else in this process. A Redis that fails or is slow (limits.redis_timeout_ms) is
// the documented choice: fail_open counts in this process meanwhile, fail_closed refuses limited keys (503).
import type { Logger } from 'pino';
import type { LimitsConfig } from '../config/schema.js';
import type { ClientKey } from '../auth/keys.js';
import { createRedisClient, type RedisClient } from '../telemetry/redis-client.js';
import { MemoryLimitStore } from './memory-store.js';
import { RedisLimitStore } from './redis-store.js';
import { minuteOf, type LimitStore, type Usage, type Verdict } from './store.js';

export interface Admission {
  verdict: Verdict | 'store_unavailable';
  /** OpenAI's x-ratelimit-* headers for the key's limits, and retry-after when refused. */
  headers: Record<string, string>;
}

/** Counts for /metrics, read at scrape. */
export interface LimiterStats {
  refused: Map<string, number>; // `${key}|${verdict}` -> count
  storeErrors: number;
}

export interface LimiterOptions {
  config: LimitsConfig;
  /** Telemetry's Redis URL and key prefix, or null without Redis. */
  redis: { url: string; prefix: string } | null;
  logger: Logger;
}

const LOG_EVERY_MS = 30_000;
/** How long checks skip Redis after it failed one. */
const RETRY_REDIS_MS = 1_000;

export class Limiter {
  readonly shared: boolean;
  readonly stats: LimiterStats = { refused: new Map(), storeErrors: 0 };
  private readonly local = new MemoryLimitStore();
  /** Made at the first check: a gateway whose keys have no limits opens no connection for them. */
  private made: LimitStore | null = null;
  private redisStore: RedisLimitStore | null = null;
  /** Requests leased from Redis and not yet handed out, per key (keys whose only limit is requests_per_minute). */
  private readonly leases = new Map<string, { minute: number; left: number; requests: number }>();
  private client: RedisClient | null = null;
  /** After a Redis error, checks go straight to the fallback until then (ms): one timeout per outage, not per request. */
  private downUntil = 0;
  private lastLog = 0;

  constructor(private readonly o: LimiterOptions) {
    this.shared = o.redis !== null;
  }

  private get store(): LimitStore {
    if (this.made !== null) return this.made;
    if (this.o.redis === null) return (this.made = this.local);
    // Its own connection, failing fast: a limit check must never wait on a reconnecting Redis.
    const client = createRedisClient(this.o.redis.url, {
      enableOfflineQueue: false,
      commandTimeout: this.o.config.redis_timeout_ms,
      maxRetriesPerRequest: 0,
      // No auto-pipelining: with it (and ioredis' defined commands) a check cost +160 µs of gateway CPU per
      // request in the overhead bench; RedisLimitStore batches a tick's checks itself, EVALSHA each.
    });
    client.on('error', () => undefined); // reported per failed check (storeError), not per reconnect attempt
    this.client = client;
    this.redisStore = new RedisLimitStore(client, this.o.redis.prefix, this.o.config.redis_timeout_ms);
    return (this.made = this.redisStore);
  }

  /** The store to ask now: Redis once connected and not in a recent outage, else the fallback. */
  private async current(): Promise<LimitStore> {
    const store = this.store;
    if (this.client === null) return store;
    if (Date.now() < this.downUntil) throw new Error('Redis failed recently');
    const status = this.client.status;
    if (status === 'ready') return store;
    if (status === 'connecting' || status === 'connect' || status === 'wait' || status === 'reconnecting') {
      // The first checks after start (or a reconnect) wait for the connection, as long as a command may.
      const client = this.client;
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => {
          client.removeListener('ready', onReady);
          reject(new Error(`Redis not ready within ${this.o.config.redis_timeout_ms} ms`));
        }, this.o.config.redis_timeout_ms);
        const onReady = () => {
          clearTimeout(t);
          resolve();
        };
        client.once('ready', onReady);
      });
      return store;
    }
    throw new Error(`Redis connection is ${status}`);
  }

  describe(): string {
    return this.shared
      ? `limits: client-key limits and budgets counted in Redis (shared by every replica; on error: ${this.o.config.on_redis_error})`
      : 'limits: client-key limits and budgets counted in this process (no Redis: each replica counts its own)';
  }

  /**
   * Checks `key` for a request that will use at least `tokens` and is expected to cost `reserveUsd`, and
   * counts it when it may go. Only called for keys with a limit or budget.
   */
  async admit(key: ClientKey, tokens: number, reserveUsd: number, nowMs = Date.now()): Promise<Admission> {
    const { limits, budget } = key.config;
    const input = {
      keyId: key.id,
      rpm: limits.requests_per_minute ?? 0,
      tpm: limits.tokens_per_minute ?? 0,
      usdPerDay: budget.usd_per_day ?? 0,
      usdPerMonth: budget.usd_per_month ?? 0,
      tokens,
      reserveUsd: budget.usd_per_day !== undefined || budget.usd_per_month !== undefined ? reserveUsd : 0,
      nowMs,
    };
    let usage: Usage;
    try {
      const store = await this.current();
      const leased =
        store === this.redisStore && input.tpm === 0 && input.reserveUsd === 0 && input.usdPerDay === 0 && input.usdPerMonth === 0;
      usage = leased ? await this.fromLease(key.id, input.rpm, nowMs) : await store.admit(input);
    } catch (err) {
      this.storeError(err);
      if (this.o.config.on_redis_error === 'fail_closed') {
        const k = `${key.id}|store_unavailable`;
        this.stats.refused.set(k, (this.stats.refused.get(k) ?? 0) + 1);
        return { verdict: 'store_unavailable', headers: { 'retry-after': '1' } };
      }
      usage = await this.local.admit(input);
    }
    const headers = rateHeaders(input.rpm, input.tpm, usage, nowMs);
    if (usage.verdict !== 'ok') {
      headers['retry-after'] = String(retryAfterS(usage, input, nowMs));
      const k = `${key.id}|${usage.verdict}`;
      this.stats.refused.set(k, (this.stats.refused.get(k) ?? 0) + 1);
    }
    return { verdict: usage.verdict, headers };
  }

  /**
   * A key whose only limit is requests per minute takes requests from Redis in leases and hands them out
   * locally: one Redis call per lease instead of one per request. A lease is at most 1/64 of what is left of
   * the minute (at least 1, at most 64), so near the limit every request asks Redis (exact), and a replica
   * whose traffic stops holds back at most 1/64 of the remaining quota until the minute turns. Never more than
   * the limit is served; leases do not carry over into the next minute.
   */
  private async fromLease(id: string, rpm: number, nowMs: number): Promise<Usage> {
    const minute = minuteOf(nowMs).index;
    const held = this.leases.get(id);
    if (held !== undefined && held.minute === minute && held.left > 0) {
      held.left--;
      return { verdict: 'ok', requests: held.requests - held.left, tokens: 0, usdDay: 0, usdMonth: 0 };
    }
    const known = held !== undefined && held.minute === minute ? held.requests : 0;
    const want = Math.min(64, Math.max(1, Math.floor((rpm - known) / 64)));
    const { granted, requests } = await (this.redisStore as RedisLimitStore).lease(id, rpm, want, nowMs);
    if (granted < 1) {
      this.leases.delete(id);
      return { verdict: 'requests', requests, tokens: 0, usdDay: 0, usdMonth: 0 };
    }
    this.leases.set(id, { minute, left: granted - 1, requests });
    return { verdict: 'ok', requests: requests - (granted - 1), tokens: 0, usdDay: 0, usdMonth: 0 };
  }

  /** The answer's tokens and its cost minus what admit() reserved. Off the request path: never awaited by it. */
  charge(key: ClientKey, tokens: number, usdDelta: number, nowMs = Date.now()): void {
    const { limits, budget } = key.config;
    const hasBudget = budget.usd_per_day !== undefined || budget.usd_per_month !== undefined;
    const c = { keyId: key.id, tokens: limits.tokens_per_minute !== undefined ? tokens : 0, usd: hasBudget ? usdDelta : 0, nowMs };
    if (c.tokens === 0 && c.usd === 0) return;
    const store = this.client === null || (this.client.status === 'ready' && Date.now() >= this.downUntil) ? this.store : this.local;
    store.charge(c).catch((err: unknown) => {
      this.storeError(err);
      void this.local.charge(c);
    });
  }

  async close(): Promise<void> {
    await this.made?.close();
  }

  private storeError(err: unknown): void {
    this.stats.storeErrors++;
    const now = Date.now();
    this.downUntil = now + RETRY_REDIS_MS;
    if (now - this.lastLog < LOG_EVERY_MS) return;
    this.lastLog = now;
    this.o.logger.warn(
      { err: (err as Error)?.message ?? String(err), errors: this.stats.storeErrors, policy: this.o.config.on_redis_error },
      this.o.config.on_redis_error === 'fail_open'
        ? 'limits: Redis unavailable, counting limits in this process meanwhile (fail_open)'
        : 'limits: Redis unavailable, refusing keys with limits (fail_closed)',
    );
  }
}

/** Whole seconds until the next UTC day / month starts. */
const untilNextDay = (ms: number) => Math.ceil((86_400_000 - (ms % 86_400_000)) / 1000);
function untilNextMonth(ms: number): number {
  const d = new Date(ms);
  return Math.ceil((Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) - ms) / 1000);
}
const secondsLeftInMinute = (ms: number) => Math.max(1, Math.ceil((60_000 - (ms % 60_000)) / 1000));

/** OpenAI's rate-limit headers (limit, remaining, reset) for the limits this key has. */
function rateHeaders(rpm: number, tpm: number, u: Usage, nowMs: number): Record<string, string> {
  const h: Record<string, string> = {};
  const reset = `${secondsLeftInMinute(nowMs)}s`;
  if (rpm > 0) {
    h['x-ratelimit-limit-requests'] = String(rpm);
    h['x-ratelimit-remaining-requests'] = String(Math.max(0, Math.floor(rpm - u.requests)));
    h['x-ratelimit-reset-requests'] = reset;
  }
  if (tpm > 0) {
    h['x-ratelimit-limit-tokens'] = String(tpm);
    h['x-ratelimit-remaining-tokens'] = String(Math.max(0, Math.floor(tpm - u.tokens)));
    h['x-ratelimit-reset-tokens'] = reset;
  }
  return h;
}

/**
 * When to try again. Budgets: when the day / month turns. Windows: the sliding count decays as the last
 * minute's arrivals age out; assuming they arrived evenly, the excess is gone after excess/used of a minute.
 */
function retryAfterS(u: Usage, i: { rpm: number; tpm: number; tokens: number }, nowMs: number): number {
  if (u.verdict === 'usd_per_day') return untilNextDay(nowMs);
  if (u.verdict === 'usd_per_month') return untilNextMonth(nowMs);
  const [used, limit, need] = u.verdict === 'requests' ? [u.requests, i.rpm, 1] : [u.tokens, i.tpm, i.tokens];
  const excess = used + need - limit;
  return Math.min(60, Math.max(1, Math.ceil((60 * excess) / Math.max(used, 1))));
}
