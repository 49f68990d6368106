// The circuit breaker's state machine and the retry budget, on a fake clock (ms numbers passed in); and
// how forward() tells a breaker about a request (once, retries included) and its panic mode, against a
// local HTTP server.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backend, BreakerConfig } from '../../src/config/schema.js';
import { compileBackend, type CompiledBackend } from '../../src/upstream/backend.js';
import { Breaker, DENY, PASS, PROBE, RetryBudget } from '../../src/upstream/breaker.js';
import { Cancellation } from '../../src/upstream/cancel.js';
import { forward, ForwardError, type ForwardRequest } from '../../src/upstream/forward.js';
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

describe('forward() and the breaker', () => {
  /** Statuses the server answers, in order; 200 once they run out. */
  let script: number[] = [];
  let calls = 0;
  let server: Server;
  let origin = '';
  const pools: Pool[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        calls++;
        const status = script.shift() ?? 200;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(status === 200 ? '{"id":"x","object":"chat.completion","choices":[]}' : '{"error":{"message":"boom"}}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    for (const p of pools) await p.close();
    await new Promise((r) => server.close(r));
  });

  const backend = (name: string, breaker: Partial<BreakerConfig>, maxRetries = 4): CompiledBackend => {
    const cfg = Backend.parse({ name, base_url: `${origin}/${name}/v1`, model: `m-${name}`, max_retries: maxRetries, breaker });
    const pool = new Pool(origin);
    pools.push(pool);
    return compileBackend(cfg, pool, new Breaker(name, cfg.breaker));
  };
  const send = (order: CompiledBackend[], extra: Partial<ForwardRequest> = {}) =>
    forward({
      order,
      endpoint: 'chat',
      body: { model: 'x', messages: [] },
      stream: false,
      headers: {},
      cancel: new Cancellation(),
      retryBaseMs: 1,
      retryMaxMs: 2,
      id: 'r',
      stages: null,
      usageOptions: null,
      ...extra,
    });
  const failing = (p: Promise<unknown>) =>
    p.then(
      () => null,
      (e: unknown) => e as ForwardError,
    );

  it("counts a request's failed retries on a backend as one failure, and an answer after a retry as a success", async () => {
    const b = backend('once', { consecutive_failures: 2 });
    script = [500, 500, 500, 500, 500];
    calls = 0;
    const e = await failing(send([b]));
    expect(e).toBeInstanceOf(ForwardError);
    expect(calls).toBe(5); // 1 + max_retries, all failed...
    expect(b.breaker.stateAt(performance.now())).toBe('closed'); // ...counted once: 1 of 2
    // Failed, then answered by a retry: a success, which ends the run of failures.
    script = [500, 500];
    expect((await send([b])).status).toBe(200);
    script = [500, 500, 500, 500, 500];
    await failing(send([b]));
    expect(b.breaker.stateAt(performance.now())).toBe('closed');
    script = [500, 500, 500, 500, 500];
    await failing(send([b]));
    expect(b.breaker.stateAt(performance.now())).toBe('open'); // the second failed request in a row
    expect(b.breaker.transitions.open).toBe(1);
  });

  it('counts requests in the error-rate window, not attempts', async () => {
    const b = backend('rate', { consecutive_failures: 1000, error_rate: 0.5, min_requests: 4 });
    // 2 answered, 2 failed with 5 attempts each: 2 of 4 requests (50 %) opens it; by attempts it was 10 of 12 long before.
    script = [];
    await send([b]);
    await send([b]);
    script = [500, 500, 500, 500, 500];
    await failing(send([b]));
    expect(b.breaker.stateAt(performance.now())).toBe('closed');
    script = [500, 500, 500, 500, 500];
    await failing(send([b]));
    expect(b.breaker.stateAt(performance.now())).toBe('open');
  });

  it('panic mode: calls backends whose breakers are open when every one is, and an answer closes the breaker', async () => {
    const a = backend('pa', { consecutive_failures: 1, cooldown_ms: 60_000 }, 0);
    const c = backend('pc', { consecutive_failures: 1, cooldown_ms: 60_000 }, 0);
    script = [500, 500];
    await failing(send([a, c]));
    expect([a.breaker.stateAt(performance.now()), c.breaker.stateAt(performance.now())]).toEqual(['open', 'open']);
    // Routed while they were closed (no panic from the router): forward() finds both open and panics itself.
    script = [500, 500];
    calls = 0;
    const e = await failing(send([a, c]));
    expect(calls).toBe(2); // one attempt on each, no retry on an open backend with a next one
    expect(e?.panic).toEqual([
      { backend: 'pa', why: 'breaker_open' },
      { backend: 'pc', why: 'breaker_open' },
    ]);
    expect(e?.error.code).toBe('upstream_unavailable');
    expect([a.breaker.stateAt(performance.now()), c.breaker.stateAt(performance.now())]).toEqual(['open', 'open']); // a failure changes nothing
    expect(a.breaker.transitions.open).toBe(1);
    // Told by the router (resolve.ts) that every backend is out: straight to panic mode.
    script = [];
    const ok = await send([a, c], {
      panic: [
        { backend: 'pa', why: 'breaker_open' },
        { backend: 'pc', why: 'breaker_open' },
      ],
    });
    expect(ok.status).toBe(200);
    expect(ok.backend.name).toBe('pa');
    expect(ok.skipped).toBeNull();
    expect(ok.panic).toHaveLength(2);
    expect(a.breaker.stateAt(performance.now())).toBe('closed'); // it answered: back in routing
    expect(c.breaker.stateAt(performance.now())).toBe('open');
    expect([a.breaker.panicked, c.breaker.panicked]).toEqual([2, 1]);
  });

  it('panic mode retries the last backend of the order (a single backend is never refused)', async () => {
    const only = backend('only', { consecutive_failures: 1, cooldown_ms: 60_000 }, 2);
    script = [500, 500, 500];
    await failing(send([only]));
    expect(only.breaker.stateAt(performance.now())).toBe('open');
    script = [500];
    calls = 0;
    const ok = await send([only], { panic: [{ backend: 'only', why: 'breaker_open' }] });
    expect(ok.status).toBe(200);
    expect(calls).toBe(2);
    expect(only.breaker.panicked).toBe(1); // counted once per request
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
