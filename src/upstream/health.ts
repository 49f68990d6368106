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

/**
 * A backend left out of a request's order, and why (the Decision's, the record's and a header's `skipped`).
 * `panic`: it was out (breaker open or retry-after) like every other backend of the order, so the request
 * went to them anyway (panic mode, see routers/resolve.ts); `x-signalman-panic` says why each was out.
 */
export interface Skipped {
  backend: string;
  why: SkipWhy | 'panic';
}

/** A backend that was out, and why: what panic mode ignored. */
export interface Out {
  backend: string;
  why: SkipWhy;
}

/** The skipped list with the backends panic mode tried anyway marked `panic` (each backend once). */
export function markPanic<S extends { backend: string; why: string }>(skipped: readonly S[], panic: readonly Out[]): (S | Skipped)[] {
  const out: (S | Skipped)[] = skipped.map((s) => (panic.some((p) => p.backend === s.backend) ? { backend: s.backend, why: 'panic' } : s));
  for (const p of panic) if (!out.some((s) => s.backend === p.backend)) out.push({ backend: p.backend, why: 'panic' });
  return out;
}

/** `x-signalman-skipped`: `name=why` pairs, comma-separated. */
export const skippedHeader = (skipped: readonly { backend: string; why: string }[]): string =>
  skipped.map((s) => `${s.backend}=${s.why}`).join(', ');
