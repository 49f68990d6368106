// Prometheus collectors for upstream resilience: circuit breaker state, transitions and panic mode, the
// retry budget, and each backend's pool queue. All read at scrape time from the live runtime's backends
// (collect()), so the request path pays nothing. Label values are backend names from the config (bounded).
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CompiledBackend } from '../upstream/backend.js';
import type { RetryBudget } from '../upstream/breaker.js';

/** What the collectors read: the runtime in force (null before the first config is loaded). */
export type ResilienceSource = () => { backends: ReadonlyMap<string, CompiledBackend>; retryBudget: RetryBudget } | null;

const STATE_VALUE = { closed: 0, half_open: 1, open: 2 } as const;
const TO = ['closed', 'half_open', 'open'] as const;

export function registerResilienceMetrics(registry: Registry, source: ResilienceSource): void {
  new Gauge({
    name: 'signalman_breaker_state',
    help: 'Circuit breaker state per backend: 0 closed, 1 half-open (probing, or open with its cooldown passed), 2 open.',
    labelNames: ['backend'],
    registers: [registry],
    collect() {
      this.reset();
      const rt = source();
      if (rt === null) return;
      const now = performance.now();
      for (const [name, b] of rt.backends) this.labels(name).set(STATE_VALUE[b.breaker.stateAt(now)]);
    },
  });
  // Cumulative counts live on the breakers (kept across reloads); exported as growth since the last scrape.
  const seen = new Map<string, number>();
  new Counter({
    name: 'signalman_breaker_transitions_total',
    help: 'Circuit breaker transitions per backend, by the state entered (open, half_open, closed).',
    labelNames: ['backend', 'to'],
    registers: [registry],
    collect() {
      const rt = source();
      if (rt === null) return;
      for (const [name, b] of rt.backends) {
        for (const to of TO) {
          const key = `${name}\u0000${to}`;
          const now = b.breaker.transitions[to];
          const was = seen.get(key) ?? 0;
          seen.set(key, now);
          this.labels(name, to).inc(now >= was ? now - was : now);
        }
      }
    },
  });
  const panicSeen = new Map<string, number>();
  new Counter({
    name: 'signalman_breaker_panic_total',
    help: 'Requests sent to a backend although its breaker was open (or it was waiting out a retry-after), because every backend they could go to was out (panic mode), per backend.',
    labelNames: ['backend'],
    registers: [registry],
    collect() {
      const rt = source();
      if (rt === null) return;
      for (const [name, b] of rt.backends) {
        const now = b.breaker.panicked;
        const was = panicSeen.get(name) ?? 0;
        panicSeen.set(name, now);
        this.labels(name).inc(now >= was ? now - was : now);
      }
    },
  });
  let budgetSeen = 0;
  new Counter({
    name: 'signalman_retry_budget_exhausted_total',
    help: 'Retries and fallbacks not made because the retry budget (server.retry_budget) was spent.',
    registers: [registry],
    collect() {
      const rt = source();
      if (rt === null) return;
      const now = rt.retryBudget.exhausted;
      this.inc(now >= budgetSeen ? now - budgetSeen : now);
      budgetSeen = now;
    },
  });
  new Gauge({
    name: 'signalman_upstream_queued_requests',
    help: "Requests waiting for a connection in the backend's keep-alive pool (max_connections reached); shared by backends of one origin and pool settings.",
    labelNames: ['backend'],
    registers: [registry],
    collect() {
      this.reset();
      const rt = source();
      if (rt === null) return;
      for (const [name, b] of rt.backends) this.labels(name).set(b.pool.stats.pending);
    },
  });
}
