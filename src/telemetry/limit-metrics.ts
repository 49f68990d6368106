// Prometheus collectors for client-key limits: refusals by key and limit, and limit-store (Redis) errors.
// Read at scrape time from the limiter's plain counts (src/limits/limiter.ts), so a check pays nothing
// for them. Key ids come from the config (bounded); the limit is one of a fixed set.
import { Counter, type Registry } from 'prom-client';

/** What the limiter counts: `refused` maps `<key id>|<limit>` to a cumulative count. */
export interface LimitStats {
  readonly refused: ReadonlyMap<string, number>;
  readonly storeErrors: number;
}

export function registerLimitMetrics(registry: Registry, stats: LimitStats): void {
  const seen = new Map<string, number>();
  new Counter({
    name: 'signalman_limit_refusals_total',
    help: 'Requests a client key could not make: over requests_per_minute, tokens_per_minute, usd_per_day or usd_per_month (on a downgrade policy they were served by the cheapest candidate), or the limit store was down under fail_closed.',
    labelNames: ['key', 'limit'],
    registers: [registry],
    collect() {
      for (const [k, n] of stats.refused) {
        const [key = '', limit = ''] = k.split('|');
        this.labels(key, limit).inc(n - (seen.get(k) ?? 0));
        seen.set(k, n);
      }
    },
  });
  let errorsSeen = 0;
  new Counter({
    name: 'signalman_limit_store_errors_total',
    help: 'Limit checks and charges that Redis failed or answered too late (limits.redis_timeout_ms); see limits.on_redis_error.',
    registers: [registry],
    collect() {
      this.inc(stats.storeErrors - errorsSeen);
      errorsSeen = stats.storeErrors;
    },
  });
}
