// A telemetry sink: subscribes to the request stages it needs. Its handlers run on the request path, so
// they are synchronous, O(1) and never throw; anything slow (Redis) happens later from a bounded buffer.
import type { RequestRecord } from './record.js';
import type { Stages } from './stages.js';

export interface SinkStats {
  /** Records waiting to be written. */
  buffered: number;
  /** Records dropped since start (buffer full, or a write that could not be retried). */
  dropped: number;
  /** The last write error, null when the last write succeeded. */
  lastError: string | null;
}

export interface TelemetrySink {
  readonly name: string;
  attach(stages: Stages): void;
  detach(stages: Stages): void;
  /** Writes what is buffered, waiting at most `timeoutMs` (shutdown, tests). */
  flush(timeoutMs: number): Promise<void>;
  stats(): SinkStats;
  close(): Promise<void>;
}

/** A sink that only needs each finished record and holds nothing to write later (access log, memory). */
export abstract class FinishSink implements TelemetrySink {
  abstract readonly name: string;
  /** Runs on the request path: O(1), never throws. */
  protected abstract onRecord(r: RequestRecord): void;
  private readonly handler = (r: RequestRecord): void => this.onRecord(r);
  attach(stages: Stages): void {
    stages.finish.subscribe(this.handler);
  }
  detach(stages: Stages): void {
    stages.finish.unsubscribe(this.handler);
  }
  async flush(): Promise<void> {}
  stats(): SinkStats {
    return { buffered: 0, dropped: 0, lastError: null };
  }
  async close(): Promise<void> {}
}
