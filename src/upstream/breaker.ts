// A per-backend circuit breaker, one per backend name for the life of the process (kept across reloads
// in the shared resources, runtime/compile.ts). No timers: every transition happens on a call, from the
// `now` (performance.now() ms) it is given, so a test drives it with a fake clock.
//
// It counts requests, not attempts: forward() gives it one verdict per request and backend, once the
// request is done with that backend (answered: a success, retries included; every attempt failed: one
// failure). A failing request's retries would otherwise count up to 1 + max_retries times, and they come in
// bunches (their backoff timers fire together), so a few % of failed requests opened it by chance. Half-open
// probes are the exception: each probe attempt's verdict counts at once.
//
//   closed ──N consecutive failed requests, or error_rate over window_s (≥ min_requests)──▶ open
//   open ──cooldown passed, on the next request──▶ half-open (up to half_open_probes attempts at once)
//   half-open ──a probe succeeds──▶ closed (cooldown back to cooldown_ms)
//   half-open ──a probe fails──▶ open, cooldown doubled up to max_cooldown_ms
//
// An upstream retry-after (429, 503) opens it too, for that long (capped at max_cooldown_ms), without
// growing the cooldown. The closed state's check on the request path is one field read (`state`).
import type { BreakerConfig } from '../config/schema.js';

export const CLOSED = 0;
export const HALF_OPEN = 1;
export const OPEN = 2;
export type BreakerStateCode = typeof CLOSED | typeof HALF_OPEN | typeof OPEN;
export const STATE_NAMES = ['closed', 'half_open', 'open'] as const;
export type BreakerStateName = (typeof STATE_NAMES)[number];

/** Why a backend was left out of a request's order (the Decision's and the record's `skipped`). */
export type SkipWhy = 'breaker_open' | 'retry_after' | 'overloaded';

/** tryAcquire(): the attempt may not go; it may, as usual; it may, as one of the half-open probes. */
export const DENY = 0;
export const PASS = 1;
export const PROBE = 2;

const BUCKETS = 10;

export class Breaker {
  /** CLOSED, HALF_OPEN or OPEN: read on every attempt, so a plain field. */
  state: BreakerStateCode = CLOSED;
  /** While OPEN: when a probe may go (performance.now() ms). */
  openUntil = 0;
  /** What opened it: failures (breaker_open) or an upstream retry-after. */
  openWhy: SkipWhy = 'breaker_open';
  /** Transitions into each state since the process started (metrics). */
  readonly transitions = { closed: 0, half_open: 0, open: 0 };
  /** Requests sent to it while it was out, because every backend they could go to was out (panic mode; metrics). */
  panicked = 0;

  private cfg: BreakerConfig;
  private cooldown: number;
  private consecutive = 0;
  private probes = 0;
  // Sliding window: BUCKETS buckets of window_s / BUCKETS each, and running sums over them.
  private readonly ok = new Float64Array(BUCKETS);
  private readonly bad = new Float64Array(BUCKETS);
  private okSum = 0;
  private badSum = 0;
  private bucket = 0;
  private bucketEnd = 0;
  private bucketMs: number;

  constructor(
    readonly name: string,
    cfg: BreakerConfig,
  ) {
    this.cfg = cfg;
    this.cooldown = cfg.cooldown_ms;
    this.bucketMs = (cfg.window_s * 1000) / BUCKETS;
  }

  get config(): BreakerConfig {
    return this.cfg;
  }

  /** A reload's settings; the state (and its counts) carries over. */
  configure(cfg: BreakerConfig): void {
    if (cfg.window_s !== this.cfg.window_s) {
      this.bucketMs = (cfg.window_s * 1000) / BUCKETS;
      this.clearWindow();
    }
    this.cfg = cfg;
    this.cooldown = Math.min(Math.max(this.cooldown, cfg.cooldown_ms), cfg.max_cooldown_ms);
    if (!cfg.enabled && this.state !== CLOSED) this.close();
  }

  /** The state as an operator sees it: an OPEN breaker whose cooldown passed is half-open (its next request probes). */
  stateAt(now: number): BreakerStateName {
    if (this.state === OPEN && now >= this.openUntil) return 'half_open';
    return STATE_NAMES[this.state];
  }

  /** Why the router should leave this backend out now, or null when it may take requests. No side effects. */
  unavailable(now: number): SkipWhy | null {
    if (this.state === CLOSED) return null;
    if (this.state === OPEN) return now < this.openUntil ? this.openWhy : null;
    return this.probes < this.cfg.half_open_probes ? null : 'breaker_open';
  }

  /** Seconds until this backend may be tried again (a fast 503's retry-after); at least 1. */
  retryAfterS(now: number): number {
    return Math.max(1, Math.ceil((this.openUntil - now) / 1000));
  }

  /** Whether an attempt may go now; a PROBE must be settled with success/failure(…, true) or release(). */
  tryAcquire(now: number): typeof DENY | typeof PASS | typeof PROBE {
    if (this.state === CLOSED) return PASS;
    if (this.state === OPEN) {
      if (now < this.openUntil) return DENY;
      this.state = HALF_OPEN;
      this.probes = 0;
      this.transitions.half_open++;
    }
    if (this.probes >= this.cfg.half_open_probes) return DENY;
    this.probes++;
    return PROBE;
  }

  /** A probe that ended with no verdict (the client went away). */
  release(probe: boolean): void {
    if (probe && this.state === HALF_OPEN && this.probes > 0) this.probes--;
  }

  success(now: number, probe: boolean): void {
    if (probe) {
      if (this.state === HALF_OPEN) {
        this.cooldown = this.cfg.cooldown_ms;
        this.close();
      }
      return;
    }
    if (this.state !== CLOSED) return; // a late answer from before it opened decides nothing
    this.consecutive = 0;
    if (now >= this.bucketEnd) this.rotate(now);
    this.ok[this.bucket]!++;
    this.okSum++;
  }

  failure(now: number, probe: boolean): void {
    if (!this.cfg.enabled) return;
    if (probe) {
      if (this.state === HALF_OPEN) {
        this.cooldown = Math.min(this.cooldown * 2, this.cfg.max_cooldown_ms);
        this.open(now, this.cooldown, 'breaker_open');
      }
      return;
    }
    if (this.state !== CLOSED) return;
    this.consecutive++;
    if (now >= this.bucketEnd) this.rotate(now);
    this.bad[this.bucket]!++;
    this.badSum++;
    const cfg = this.cfg;
    const total = this.okSum + this.badSum;
    if (this.consecutive >= cfg.consecutive_failures || (total >= cfg.min_requests && this.badSum >= cfg.error_rate * total)) {
      this.open(now, this.cooldown, 'breaker_open');
    }
  }

  /** A request sent to it in panic mode (while it was out) was answered: it is back, closed with its cooldown reset. */
  panicSuccess(): void {
    if (this.state === CLOSED) return;
    this.cooldown = this.cfg.cooldown_ms;
    this.close();
  }

  /** The upstream asked us to come back after `ms` (retry-after): out of routing until then. */
  block(now: number, ms: number): void {
    if (!this.cfg.enabled || !(ms > 0)) return;
    const until = now + Math.min(ms, this.cfg.max_cooldown_ms);
    if (this.state === OPEN && this.openUntil >= until) return;
    if (this.state !== OPEN) this.open(now, 0, 'retry_after');
    this.openUntil = until;
    this.openWhy = 'retry_after';
  }

  private open(now: number, ms: number, why: SkipWhy): void {
    if (this.state !== OPEN) this.transitions.open++;
    this.state = OPEN;
    this.openUntil = now + ms;
    this.openWhy = why;
    this.probes = 0;
  }

  private close(): void {
    if (this.state !== CLOSED) this.transitions.closed++;
    this.state = CLOSED;
    this.consecutive = 0;
    this.probes = 0;
    this.clearWindow();
  }

  private clearWindow(): void {
    this.ok.fill(0);
    this.bad.fill(0);
    this.okSum = 0;
    this.badSum = 0;
    this.bucketEnd = 0;
  }

  /** Moves the window's head to the bucket holding `now`, emptying the buckets it passes. */
  private rotate(now: number): void {
    const steps = this.bucketEnd === 0 ? BUCKETS : Math.floor((now - this.bucketEnd) / this.bucketMs) + 1;
    if (steps >= BUCKETS) {
      this.ok.fill(0);
      this.bad.fill(0);
      this.okSum = 0;
      this.badSum = 0;
    } else {
      for (let i = 0; i < steps; i++) {
        this.bucket = (this.bucket + 1) % BUCKETS;
        this.okSum -= this.ok[this.bucket]!;
        this.badSum -= this.bad[this.bucket]!;
        this.ok[this.bucket] = 0;
        this.bad[this.bucket] = 0;
      }
    }
    this.bucketEnd = (Math.floor(now / this.bucketMs) + 1) * this.bucketMs;
  }
}

/**
 * Caps retries per process (token bucket, timestamps only): every request deposits `ratio` tokens, time
 * adds `min_per_s` per second, an attempt after the first of a request (a retry or a fallback) takes one.
 * The bucket holds at most 10 s of min_per_s (at least 10), so a burst of failures is retried but a
 * sustained outage is retried at ratio x traffic + min_per_s at most.
 */
export class RetryBudget {
  private tokens: number;
  private last: number;
  private ratio = 0.2;
  private perMs = 0.005;
  private cap = 50;
  /** Retries refused since the process started (metrics). */
  exhausted = 0;

  constructor(cfg: { ratio: number; min_per_s: number }, now: number) {
    this.configure(cfg);
    this.tokens = this.cap;
    this.last = now;
  }

  configure(cfg: { ratio: number; min_per_s: number }): void {
    this.ratio = cfg.ratio;
    this.perMs = cfg.min_per_s / 1000;
    this.cap = Math.max(10, cfg.min_per_s * 10);
  }

  /** One request started. */
  deposit(): void {
    const t = this.tokens + this.ratio;
    this.tokens = t > this.cap ? this.cap : t;
  }

  /** Whether one more attempt may go for a request that already made one. */
  tryRetry(now: number): boolean {
    const t = this.tokens + (now - this.last) * this.perMs;
    this.last = now;
    this.tokens = t > this.cap ? this.cap : t;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    this.exhausted++;
    return false;
  }
}
