// The Prometheus sink: feeds GatewayMetrics from the request stages. Counts and histograms come from the
// finished record (finish); the in-flight gauge from attemptStart/attemptEnd. The decision and firstByte
// stages are not subscribed: their facts are in the record too, and counting them twice would double.
// Nothing is buffered, so flush() and close() have nothing to wait for.
import { GatewayMetrics } from './metrics.js';
import type { RequestRecord } from './record.js';
import type { SinkStats, TelemetrySink } from './sink.js';
import type { AttemptEndMessage, AttemptStartMessage, Stages } from './stages.js';

export class PrometheusSink implements TelemetrySink {
  readonly name = 'prometheus';
  /** Handler failures: the record is then only partly counted, so it is reported as dropped. */
  private dropped = 0;
  private lastError: string | null = null;

  // Bound once, so detach() unsubscribes the very functions attach() subscribed.
  private readonly onFinish = (rec: RequestRecord): void => {
    try {
      this.metrics_.onFinish(rec);
    } catch (err) {
      this.failed(err); // a throwing subscriber would resurface as an uncaught exception
    }
  };
  private readonly onAttemptStart = (m: AttemptStartMessage): void => {
    try {
      this.metrics_.attemptStarted(m.id, m.backend);
    } catch (err) {
      this.failed(err);
    }
  };
  private readonly onAttemptEnd = (m: AttemptEndMessage): void => {
    try {
      this.metrics_.attemptEnded(m.id, m.backend);
    } catch (err) {
      this.failed(err);
    }
  };

  /** One GatewayMetrics per process: pass the long-lived one so a new sink never resets a counter. */
  constructor(private readonly metrics_: GatewayMetrics = new GatewayMetrics()) {}

  get gateway(): GatewayMetrics {
    return this.metrics_;
  }

  get contentType(): string {
    return this.metrics_.contentType;
  }

  metrics(): Promise<string> {
    return this.metrics_.metrics();
  }

  attach(stages: Stages): void {
    stages.finish.subscribe(this.onFinish);
    stages.attemptStart.subscribe(this.onAttemptStart);
    stages.attemptEnd.subscribe(this.onAttemptEnd);
  }

  detach(stages: Stages): void {
    stages.finish.unsubscribe(this.onFinish);
    stages.attemptStart.unsubscribe(this.onAttemptStart);
    stages.attemptEnd.unsubscribe(this.onAttemptEnd);
  }

  flush(_timeoutMs: number): Promise<void> {
    return Promise.resolve();
  }

  stats(): SinkStats {
    return { buffered: 0, dropped: this.dropped, lastError: this.lastError };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private failed(err: unknown): void {
    this.dropped++;
    this.lastError = err instanceof Error ? err.message : String(err);
  }
}
