// Log lines to a file descriptor in batches, off the request path. pino's SonicBoom destination was
// measured at ~20 µs of CPU per access line at c=16: every write() takes Buffer.byteLength of its growing
// concatenated buffer (flattening it), and each small fs.write costs ~19 µs of thread-pool hand-off. Here a
// line is one array push; a batch is joined and written once it reaches `flushBytes` or every
// `flushIntervalMs`, whichever comes first. Memory is bounded: past `maxBufferedBytes` (a stalled stdout),
// lines are dropped and counted, and the count is logged once writing resumes.
import { write, writeSync } from 'node:fs';

export interface BatchedLineWriterOptions {
  fd: number;
  /** Start a write once this many bytes are waiting. */
  flushBytes?: number;
  /** …or this long after the first waiting line. */
  flushIntervalMs?: number;
  /** Drop lines beyond this many waiting bytes. */
  maxBufferedBytes?: number;
}

const RETRY_MS = 10;

export class BatchedLineWriter {
  private readonly fd: number;
  private readonly flushBytes: number;
  private readonly intervalMs: number;
  private readonly maxBytes: number;
  private lines: string[] = [];
  /** UTF-16 length of the waiting lines: a cheap bound, exact for the ASCII that log lines mostly are. */
  private waiting = 0;
  private inFlight: Buffer | null = null;
  private timer: NodeJS.Timeout | null = null;
  private droppedLines = 0;
  private closed = false;
  private afterWrite: Array<() => void> = [];

  constructor(opts: BatchedLineWriterOptions) {
    this.fd = opts.fd;
    this.flushBytes = opts.flushBytes ?? 64 * 1024;
    this.intervalMs = opts.flushIntervalMs ?? 100;
    this.maxBytes = opts.maxBufferedBytes ?? 16 * 1024 * 1024;
  }

  /** Lines dropped so far because the buffer was full. */
  get dropped(): number {
    return this.droppedLines;
  }

  /** Queues one line (with its newline). Returns false when the line was dropped. */
  write(line: string): boolean {
    if (this.closed) return false;
    if (this.waiting + line.length > this.maxBytes) {
      this.droppedLines++;
      return false;
    }
    this.lines.push(line);
    this.waiting += line.length;
    if (this.waiting >= this.flushBytes) this.startWrite();
    else if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.startWrite();
      }, this.intervalMs);
      this.timer.unref();
    }
    return true;
  }

  /** Writes everything waiting, after any write in flight: for shutdown (pino's logger.flush(cb) calls it). */
  flush(cb?: (err?: Error) => void): void {
    const done = () => {
      try {
        this.flushSync();
        cb?.();
      } catch (err) {
        cb?.(err as Error);
      }
    };
    if (this.inFlight === null) done();
    else this.afterWrite.push(done);
  }

  /** Resolves once every line written so far has reached the file descriptor; the writer stays open. */
  end(): Promise<void> {
    return new Promise((resolve) => this.flush(() => resolve()));
  }

  /** Writes what is waiting now, synchronously. A write in flight is not waited for: use flush() or end(). */
  flushSync(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    let buf = this.take();
    const deadline = Date.now() + 1000;
    while (buf !== null && buf.length > 0) {
      try {
        buf = buf.subarray(writeSync(this.fd, buf));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > deadline) throw err;
      }
    }
  }

  /** Flushes and stops accepting lines. */
  close(): void {
    this.flushSync();
    this.closed = true;
  }

  private take(): Buffer | null {
    if (this.lines.length === 0 && this.droppedLines === 0) return null;
    let text = this.lines.join('');
    if (this.droppedLines > 0 && this.lines.length > 0) {
      text =
        `{"level":40,"time":${Date.now()},"msg":"log lines dropped: stdout could not keep up","dropped":${this.droppedLines}}\n` + text;
      this.droppedLines = 0;
    }
    this.lines = [];
    this.waiting = 0;
    return Buffer.from(text, 'utf8');
  }

  private startWrite(): void {
    if (this.inFlight !== null) return; // the write callback picks up what has queued meanwhile
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const buf = this.take();
    if (buf === null || buf.length === 0) return;
    this.writeOut(buf);
  }

  private runAfterWrite(): void {
    const cbs = this.afterWrite;
    this.afterWrite = [];
    for (const cb of cbs) cb();
  }

  private writeOut(buf: Buffer): void {
    this.inFlight = buf;
    write(this.fd, buf, 0, buf.length, null, (err, n) => {
      if (err) {
        if (err.code === 'EAGAIN') {
          // A non-blocking pipe is full: wait for the reader rather than spin.
          setTimeout(() => this.writeOut(buf), RETRY_MS).unref();
          return;
        }
        // Nowhere to report a broken stdout: stop trying, keep serving.
        this.inFlight = null;
        this.closed = true;
        this.runAfterWrite();
        return;
      }
      if (n < buf.length) {
        this.writeOut(buf.subarray(n));
        return;
      }
      this.inFlight = null;
      if (this.afterWrite.length > 0) return this.runAfterWrite();
      if (this.waiting >= this.flushBytes) this.startWrite();
      else if (this.lines.length > 0 && this.timer === null) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.startWrite();
        }, this.intervalMs);
        this.timer.unref();
      }
    });
  }
}
