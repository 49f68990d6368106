// What the pipeline reports about each request, once, from its finally block. Sinks must be O(1),
// synchronous and never throw: they run on the request path.
import type { Logger } from 'pino';
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

/** One access-log line per request; pino is given an async destination by the CLI, so this never blocks on I/O. */
export class LogSink implements EventSink {
  constructor(private readonly log: Logger) {}
  record(ev: RequestEvent): void {
    this.log.info(
      {
        reqId: ev.requestId, endpoint: ev.endpoint, model: ev.model, policy: ev.policy, backend: ev.backend, status: ev.status,
        stream: ev.stream, error: ev.errorCode, aborted: ev.aborted, attempts: ev.attempts.length,
        ms: Math.round(ev.totalMs * 1000) / 1000, upstreamMs: Math.round(ev.upstreamMs * 1000) / 1000,
        route: ev.decision === null ? undefined : { chosen: ev.decision.chosen, reason: ev.decision.reason, router: ev.decision.router },
      },
      'request',
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
