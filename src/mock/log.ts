// Request log for tests: a fixed-size ring of references (no copies), so recording costs O(1).
import type { IncomingHttpHeaders } from 'node:http';

export type MockOutcome = 'completed' | 'aborted' | 'fault' | 'pending';

export interface MockRequestLog {
  seq: number;
  path: string;
  model: string | null;
  /** Node already lower-cases header names. */
  headers: IncomingHttpHeaders;
  /** Parsed JSON body, or null (GET, empty or unparseable body). */
  body: unknown;
  /** Epoch milliseconds. */
  receivedAt: number;
  outcome: MockOutcome;
}

export class RequestLog {
  private readonly ring: (MockRequestLog | undefined)[];
  private next = 0; // total recorded since the last reset; also the next seq
  constructor(private readonly size: number) {
    this.ring = new Array<MockRequestLog | undefined>(size);
  }

  /** Returns the entry so the caller can update its outcome; null when logging is off (size 0). */
  record(path: string, headers: IncomingHttpHeaders, receivedAt: number): MockRequestLog | null {
    if (this.size === 0) return null;
    const entry: MockRequestLog = { seq: this.next, path, model: null, headers, body: null, receivedAt, outcome: 'pending' };
    this.ring[this.next % this.size] = entry;
    this.next++;
    return entry;
  }

  /** Oldest first. */
  list(): MockRequestLog[] {
    const out: MockRequestLog[] = [];
    const start = Math.max(0, this.next - this.size);
    for (let i = start; i < this.next; i++) {
      const e = this.ring[i % this.size];
      if (e !== undefined) out.push(e);
    }
    return out;
  }

  clear(): void {
    this.ring.fill(undefined);
    this.next = 0;
  }
}
