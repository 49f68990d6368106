// What the pipeline reports about each request, once, from its finally block. Sinks must be O(1),
// synchronous and never throw: they run on the request path.
import type { Decision } from '../routers/policy.js';
import type { Attempt, Endpoint } from '../upstream/forward.js';

export interface RequestEvent {
  requestId: string;
  endpoint: Endpoint;
  model: string;
  policy: string | null;
  backend: string | null;
  status: number;
  stream: boolean;
  errorCode: string | null;
  attempts: Attempt[];
  decision: Decision | null;
  totalMs: number;
  routeMs: number;
  upstreamMs: number;
  aborted: boolean;
  generation: number;
}

export interface EventSink {
  record(ev: RequestEvent): void;
}

/** Keeps the last `capacity` events (tests, debugging). */
export class MemorySink implements EventSink {
  readonly events: RequestEvent[] = [];
  constructor(private readonly capacity = 1000) {}
  record(ev: RequestEvent): void {
    if (this.events.length >= this.capacity) this.events.shift();
    this.events.push(ev);
  }
}

/** Where access lines go: pino's SonicBoom destination (buffered, asynchronous) or any writable. */
export interface LineWriter {
  write(line: string): unknown;
}

const LEVEL_INFO = 30;
const ms3 = (x: number): string => (Math.round(x * 1000) / 1000).toString();
const str = (s: string | null): string => (s === null ? 'null' : JSON.stringify(s));

/**
 * One JSON access line per request, in pino's line format (level, time, msg), built by hand from known
 * fields: no prompts, no keys, so no redaction pass. Profiling put pino's generic object serialisation
 * plus redaction at ~50 µs of CPU per request; this line costs a few.
 */
export class AccessLogSink implements EventSink {
  /** `enabled` is asked per event, so `server.access_log` can be switched by a config reload. */
  constructor(
    private readonly out: LineWriter,
    private readonly enabled: () => boolean = () => true,
  ) {}
  record(ev: RequestEvent): void {
    if (!this.enabled()) return;
    const d = ev.decision;
    this.out.write(
      `{"level":${LEVEL_INFO},"time":${Date.now()},"msg":"request","reqId":${str(ev.requestId)},"endpoint":"${ev.endpoint}",` +
        `"model":${str(ev.model)},"policy":${str(ev.policy)},"backend":${str(ev.backend)},"status":${ev.status},` +
        `"stream":${ev.stream},"error":${str(ev.errorCode)},"aborted":${ev.aborted},"attempts":${ev.attempts.length},` +
        `"ms":${ms3(ev.totalMs)},"upstreamMs":${ms3(ev.upstreamMs)},"routeMs":${ms3(ev.routeMs)}` +
        (d === null ? '' : `,"route":{"chosen":${str(d.chosen)},"reason":"${d.reason}","router":${str(d.router)}}`) +
        '}\n',
    );
  }
}

export class FanoutSink implements EventSink {
  constructor(private readonly sinks: readonly EventSink[]) {}
  record(ev: RequestEvent): void {
    for (const s of this.sinks) {
      try {
        s.record(ev);
      } catch {
        // A sink must never break a request; sinks count their own failures.
      }
    }
  }
}
