import { describe, expect, it } from 'vitest';
import { backoffMs } from '../../src/upstream/backoff.js';
import { classifyStatus, classifyThrown } from '../../src/upstream/errors.js';
import { SseFramer } from '../../src/server/sse.js';

describe('SseFramer', () => {
  it('passes whole events at once and holds a partial event until it completes', () => {
    const f = new SseFramer();
    expect(f.push(Buffer.from('data: {"a":1}\n\ndata: {"b"')).toString()).toBe('data: {"a":1}\n\n');
    expect(f.push(Buffer.from(':2}')).toString()).toBe('');
    expect(f.push(Buffer.from('\n\ndata: [DONE]\n\n')).toString()).toBe('data: {"b":2}\n\ndata: [DONE]\n\n');
    expect(f.rest()).toBeNull();
  });

  it('handles CRLF event boundaries and keeps a trailing partial as rest', () => {
    const f = new SseFramer();
    expect(f.push(Buffer.from('data: x\r\n\r\ndata: y')).toString()).toBe('data: x\r\n\r\n');
    expect(f.rest()?.toString()).toBe('data: y');
  });
});

describe('backoff', () => {
  it('grows exponentially with full jitter inside [ceiling/2, ceiling]', () => {
    expect(backoffMs(0, 100, 2000, undefined, () => 0)).toBe(50);
    expect(backoffMs(0, 100, 2000, undefined, () => 1)).toBe(100);
    expect(backoffMs(3, 100, 2000, undefined, () => 1)).toBe(800);
    expect(backoffMs(10, 100, 2000, undefined, () => 1)).toBe(2000);
  });

  it('honours retry-after within the ceiling and gives up beyond it', () => {
    expect(backoffMs(0, 100, 2000, '1')).toBe(1000);
    expect(backoffMs(0, 100, 2000, '30')).toBeNull();
    expect(backoffMs(0, 100, 2000, new Date(Date.now() + 60_000).toUTCString())).toBeNull();
  });
});

describe('upstream failure classification', () => {
  it('retries 429 and 5xx, passes other 4xx through', () => {
    expect(classifyStatus(429, 'a')?.retryable).toBe(true);
    expect(classifyStatus(503, 'a')?.error.status).toBe(502);
    expect(classifyStatus(400, 'a')).toBeNull();
    expect(classifyStatus(200, 'a')).toBeNull();
  });

  it('maps undici codes: connect errors retry, timeouts go to the next backend with 504', () => {
    const refused = classifyThrown(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), 'a', 'headers');
    expect(refused).toMatchObject({ kind: 'connect', retryable: true, fallback: true });
    expect(refused.error.status).toBe(502);
    const timeout = classifyThrown(Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' }), 'a', 'headers');
    expect(timeout).toMatchObject({ kind: 'timeout', retryable: false, fallback: true });
    expect(timeout.error.status).toBe(504);
    expect(classifyThrown(Object.assign(new Error('x'), { name: 'AbortError' }), 'a', 'headers').kind).toBe('aborted');
  });
});
