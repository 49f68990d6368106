/**
 * Passes SSE bytes through at event granularity: whole events go out as soon as they arrive, a
 * partial event waits for its end. If the upstream dies mid-event, the half event is dropped instead of
 * reaching the client as unparsable JSON, and our error event starts on a clean boundary.
 */
export class SseFramer {
  private pending: Buffer | null = null;

  /** Returns the bytes that complete one or more events (possibly empty). */
  push(chunk: Buffer): Buffer {
    const data = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    const lf = data.lastIndexOf('\n\n');
    const crlf = data.lastIndexOf('\r\n\r\n');
    const end = Math.max(lf === -1 ? -1 : lf + 2, crlf === -1 ? -1 : crlf + 4);
    if (end === -1) {
      this.pending = data;
      return EMPTY;
    }
    this.pending = end === data.length ? null : data.subarray(end);
    return end === data.length ? data : data.subarray(0, end);
  }

  /** What is left at a clean end of stream (normally nothing). */
  rest(): Buffer | null {
    const p = this.pending;
    this.pending = null;
    return p;
  }
}

const EMPTY = Buffer.alloc(0);
