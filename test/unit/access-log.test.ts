import { describe, expect, it } from 'vitest';
import { AccessLogSink, type RequestEvent } from '../../src/telemetry/events.js';

const event = (over: Partial<RequestEvent> = {}): RequestEvent => ({
  requestId: 'abc-1', endpoint: 'chat', model: 'auto', policy: 'auto', backend: 'weak', status: 200, stream: false, errorCode: null,
  attempts: [{ backend: 'weak', status: 200, error: null, ms: 1 }], decision: null, totalMs: 1.23456, routeMs: 0.1, upstreamMs: 1.1,
  aborted: false, generation: 1, ...over,
});

describe('access log line', () => {
  it('is one valid JSON line with the request summary, escaping client-chosen strings', () => {
    const lines: string[] = [];
    const sink = new AccessLogSink({ write: (l: string) => lines.push(l) });
    sink.record(event({ model: 'evil"\n}{"admin":true', decision: { chosen: 'weak', reason: 'objective', router: 'knn' } as RequestEvent['decision'] }));
    sink.record(event({ status: 502, errorCode: 'upstream_unavailable', backend: null }));
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l.endsWith('}\n') && l.indexOf('\n') === l.length - 1).toBe(true);
    const a = JSON.parse(lines[0] as string);
    expect(a).toMatchObject({ level: 30, msg: 'request', reqId: 'abc-1', model: 'evil"\n}{"admin":true', status: 200, ms: 1.235, route: { chosen: 'weak', reason: 'objective' } });
    expect(a.admin).toBeUndefined();
    expect(JSON.parse(lines[1] as string)).toMatchObject({ status: 502, error: 'upstream_unavailable', backend: null });
  });
});
