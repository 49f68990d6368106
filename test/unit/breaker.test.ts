// The circuit breaker's state machine and the retry budget, on a fake clock (ms numbers passed in).
import { describe, expect, it } from 'vitest';
import { BreakerConfig } from '../../src/config/schema.js';
import { Breaker, DENY, PASS, PROBE, RetryBudget } from '../../src/upstream/breaker.js';
import { completeEventsEnd, firstInvalidEvent, isJson, isJsonBody } from '../../src/upstream/sse-check.js';

const cfg = (o: Partial<BreakerConfig> = {}) => BreakerConfig.parse(o);

describe('circuit breaker', () => {
  it('opens after consecutive failures, probes after the cooldown, closes on a probe success', () => {
    const b = new Breaker('x', cfg({ consecutive_failures: 3, cooldown_ms: 1000 }));
    b.failure(0, false);
    b.failure(1, false);
    b.success(2, false); // resets the run
    b.failure(3, false);
    b.failure(4, false);
    expect(b.stateAt(4)).toBe('closed');
    b.failure(5, false);
    expect(b.stateAt(5)).toBe('open');
    expect(b.unavailable(500)).toBe('breaker_open');
    expect(b.tryAcquire(500)).toBe(DENY);
    expect(b.retryAfterS(500)).toBe(1);
    expect(b.stateAt(1005)).toBe('half_open');
    expect(b.tryAcquire(1005)).toBe(PROBE);
    expect(b.tryAcquire(1006)).toBe(DENY); // one probe at a time
    expect(b.unavailable(1006)).toBe('breaker_open');
    b.success(1010, true);
    expect(b.stateAt(1010)).toBe('closed');
    expect(b.tryAcquire(1011)).toBe(PASS);
    expect(b.transitions).toEqual({ open: 1, half_open: 1, closed: 1 });
  });

  it('re-opens on a failed probe with a doubled cooldown, capped', () => {
    const b = new Breaker('x', cfg({ consecutive_failures: 1, cooldown_ms: 1000, max_cooldown_ms: 3000 }));
    b.failure(0, false);
    let t = 1000;
    for (const want of [2000, 3000, 3000]) {
      expect(b.tryAcquire(t)).toBe(PROBE);
      b.failure(t, true);
      expect(b.tryAcquire(t + want - 1)).toBe(DENY);
      t += want;
    }
    expect(b.tryAcquire(t)).toBe(PROBE);
    b.success(t, true);
    b.failure(t + 1, false); // closed again, cooldown back to 1000
    expect(b.tryAcquire(t + 1001)).toBe(PROBE);
  });

  it('opens on the error rate over the window once min_requests are seen, and forgets old buckets', () => {
    const b = new Breaker('x', cfg({ consecutive_failures: 100, error_rate: 0.5, window_s: 10, min_requests: 10 }));
    for (let i = 0; i < 4; i++) {
      b.failure(i * 10, false);
      b.success(i * 10 + 1, false);
    }
    expect(b.stateAt(100)).toBe('closed'); // 4 of 8: below min_requests
    // 20 s later the window is empty again: old failures no longer count
    for (let i = 0; i < 4; i++) b.success(20_000 + i, false);
    b.failure(20_010, false);
    expect(b.stateAt(20_010)).toBe('closed');
    for (let i = 0; i < 5; i++) b.failure(20_020 + i, false); // 6 bad of 10
    expect(b.stateAt(20_030)).toBe('open');
  });

  it('is taken out for an upstream retry-after, capped at max_cooldown_ms, and a released probe frees its slot', () => {
    const b = new Breaker('x', cfg({ max_cooldown_ms: 5000 }));
    b.block(0, 2000);
    expect(b.unavailable(1999)).toBe('retry_after');
    expect(b.unavailable(2000)).toBeNull();
    expect(b.tryAcquire(2000)).toBe(PROBE);
    b.release(true);
    expect(b.tryAcquire(2001)).toBe(PROBE);
    b.block(3000, 60_000);
    expect(b.unavailable(7999)).toBe('retry_after');
    expect(b.unavailable(8000)).toBeNull();
  });

  it('does nothing when disabled', () => {
    const b = new Breaker('x', cfg({ enabled: false, consecutive_failures: 1 }));
    for (let i = 0; i < 10; i++) b.failure(i, false);
    b.block(10, 1000);
    expect(b.tryAcquire(11)).toBe(PASS);
  });
});

describe('retry budget', () => {
  it('allows ratio x requests + min_per_s retries, then refuses and counts', () => {
    const budget = new RetryBudget({ ratio: 0.1, min_per_s: 1 }, 0);
    let allowed = 0;
    // The bucket starts full (10 s of min_per_s, at least 10): a burst is retried.
    for (let i = 0; i < 100; i++) {
      budget.deposit();
      if (budget.tryRetry(0)) allowed++;
    }
    // The full bucket, then one per 10 requests (give or take a float rounding).
    expect(allowed).toBeGreaterThanOrEqual(19);
    expect(allowed).toBeLessThanOrEqual(20);
    expect(budget.exhausted).toBe(100 - allowed);
    // Time refills min_per_s.
    expect(budget.tryRetry(1000)).toBe(true);
    expect(budget.tryRetry(1000)).toBe(false);
  });
});

describe('answer checks', () => {
  it('validates JSON bodies and SSE data events', () => {
    expect(isJsonBody(Buffer.from('{"a":[1,"é"]}'))).toBe(true);
    expect(isJsonBody(Buffer.from('{"a":[1,'))).toBe(false);
    expect(isJsonBody(Buffer.from(''))).toBe(false);
    const good = 'data: {"a":1}\n\n: comment\n\nevent: x\ndata: {"b":\ndata: 2}\n\ndata: [DONE]\n\n';
    expect(firstInvalidEvent(Buffer.from(good))).toBe(-1);
    const bad = 'data: {"a":1}\r\n\r\ndata: {"b":\r\n\r\ndata: {"c":3}\n\n';
    expect(firstInvalidEvent(Buffer.from(bad))).toBe('data: {"a":1}\r\n\r\n'.length);
    expect(completeEventsEnd(Buffer.from('data: {}\n\ndata: {"x'))).toBe(10);
  });
});

describe('isJson (the byte validator)', () => {
  it('agrees with JSON.parse on fuzzed inputs', () => {
    const samples = [
      '{"id":"chatcmpl-abc","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" w\\"o\\u00e9rd\\n"},"logprobs":null}],"u":{"a":-1.5e+3,"b":0,"c":true,"d":false}}',
      '[]',
      ' { "a" : [ 1 , 2.50, [], {} ] } ',
      '"é中"',
      '-0',
      '1E-5',
    ];
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const alphabet = '{}[]",:\\ 0123456789-+.eEtrufalsn\u0001\n';
    for (const s of samples) {
      for (let k = 0; k < 3000; k++) {
        let t = s;
        for (let m = 0; m < 1 + Math.floor(rand() * 3); m++) {
          const p = Math.floor(rand() * (t.length + 1));
          const op = rand();
          if (op < 0.33) t = t.slice(0, p) + t.slice(p + 1);
          else if (op < 0.66) t = t.slice(0, p) + alphabet[Math.floor(rand() * alphabet.length)] + t.slice(p);
          else t = t.slice(0, p);
        }
        let want = true;
        try {
          JSON.parse(t);
        } catch {
          want = false;
        }
        expect(isJson(Buffer.from(t)), JSON.stringify(t)).toBe(want);
      }
    }
  });
});
