// A telemetry sink: subscribes to the request stages it needs. Its handlers run on the request path, so
// they are synchronous, O(1) and never throw; anything slow (Redis) happens later from a bounded buffer.
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
