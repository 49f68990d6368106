// Whether a backend may take a request now, and why not: its circuit breaker (open, or waiting out an
// upstream retry-after) and, for policies with on_overload: next_best, its pool being full. Read by the
// router (routers/resolve.ts, engine.ts) before it picks, and by forward() before each backend it calls.
import type { CompiledBackend } from './backend.js';
import { CLOSED, type SkipWhy } from './breaker.js';
import { saturated } from './pools.js';

export function whyUnavailable(b: CompiledBackend, overloadAware: boolean, now: number): SkipWhy | null {
  if (b.breaker.state !== CLOSED) {
    const why = b.breaker.unavailable(now);
    if (why !== null) return why;
  }
  return overloadAware && saturated(b.pool) ? 'overloaded' : null;
}

/** A backend left out of a request's order, and why (the Decision's, the record's and a header's `skipped`). */
export interface Skipped {
  backend: string;
  why: SkipWhy;
}

/** `x-signalman-skipped`: `name=why` pairs, comma-separated. */
export const skippedHeader = (skipped: readonly { backend: string; why: string }[]): string =>
  skipped.map((s) => `${s.backend}=${s.why}`).join(', ');
