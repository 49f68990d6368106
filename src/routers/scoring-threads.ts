// Scoring threads (server.routing_threads): the embed + guard + score stages of routed requests, run on
// worker threads instead of the event loop. A decision on the shipped policies costs the event loop
// ~0.2-0.3 ms of CPU, more than the rest of a proxied request; on a thread of its own that work runs
// beside the event loop (another core) and leaves its caches alone, so the event loop only forwards.
//
// Each worker compiles the served policies from the same config (its own embedders, guards and routers)
// and answers with the same engine code (engine.ts scoreText), so a decision is the same wherever it is
// scored. The event loop keeps its own compiled copy and scores there itself when a worker has
// `maxInFlight` texts waiting already, when a worker is lost mid-request, or while one restarts.
import type { Worker } from 'node:worker_threads';
import type { PolicyConfig } from '../config/schema.js';
import { newWorker, workerFileFor } from '../embedders/worker-pool.js';
import type { Scored } from './engine.js';
import type { RouteQuery } from './types.js';
import { fromWire, ScoredDecoder, type ScoreBatch, type ScoreReply } from './scoring-wire.js';

/** What the engine needs from scoring threads. */
export interface ScoringThreads {
  /**
   * Scores `text` under `policy` on a worker. undefined: not served there (or every worker is full) —
   * score on the event loop. Resolves null when the worker was lost first: score on the event loop.
   * Rejects with the error the engine would have thrown.
   */
  score(policy: string, text: string, meta: RouteQuery['meta'] | null): Promise<Scored | null> | undefined;
}

export interface ScoringWorkerData {
  policies: PolicyConfig[];
  /** Relative artifact paths resolve against it, as in the config file's folder. */
  baseDir: string;
}

export interface ScoringThreadsOptions extends ScoringWorkerData {
  threads: number;
  /** Texts one worker may have waiting before the event loop scores the next one itself. */
  maxInFlight?: number;
  /**
   * Hand texts to the threads only while the event loop was busy at least this share of the last
   * `utilizationWindowMs` (server.routing_threads_min_utilization); 0: always.
   */
  minUtilization?: number;
  utilizationWindowMs?: number;
  /** Called when a worker is lost or restarts (the runtime logs it). */
  onEvent?: (message: string, err?: Error) => void;
}

export interface ScoringThreadStats {
  threads: number;
  alive: number;
  inFlight: number;
  /** Texts scored on a worker / declined (workers full or down, so the event loop scored them). */
  scored: number;
  declined: number;
  /** Texts the event loop scored itself because it was not busy enough for a hand-off to pay. */
  idle: number;
  /** Workers lost (crashed or exited) since start. */
  lost: number;
}

interface Pending {
  resolve: (r: Scored | null) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker | null;
  pending: Map<number, Pending>;
  /**
   * Texts handed over since the last post, posted as soon as the current callback and its microtasks are
   * done. Not held to the end of the event-loop turn (setImmediate): a turn can take in most of the
   * requests in flight, and the worker then sat idle while the event loop parsed them all (with replies
   * per text, scoring.worker.ts, more routed requests a second at c=16: README, Benchmarks).
   */
  outbox: ScoreBatch;
  /** Next restart's wait (doubles per failed start, reset once one is ready) and its timer. */
  restartMs: number;
  timer: NodeJS.Timeout | null;
}

const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;

export class ScoringThreadPool implements ScoringThreads {
  private readonly slots: Slot[] = [];
  private readonly index: ReadonlyMap<string, number>;
  private readonly maxInFlight: number;
  private nextId = 1;
  private closed = false;
  private scored = 0;
  private declined = 0;
  private idle = 0;
  private lost = 0;
  /** Whether the event loop was busy enough, over the last window, for a hand-off to pay. */
  private busy: boolean;
  private readonly utilization: NodeJS.Timeout | null = null;

  private constructor(private readonly o: ScoringThreadsOptions) {
    this.index = new Map(o.policies.map((p, i) => [p.name, i]));
    this.maxInFlight = o.maxInFlight ?? 32;
    const min = o.minUtilization ?? 0;
    this.busy = min <= 0;
    if (min > 0) {
      // A lone request gains nothing from the hand-off and pays for it (a message each way, a thread to
      // wake): only once the event loop has other work does scoring elsewhere free it for that work.
      let last = performance.eventLoopUtilization();
      this.utilization = setInterval(() => {
        const now = performance.eventLoopUtilization();
        this.busy = performance.eventLoopUtilization(now, last).utilization >= min;
        last = now;
      }, o.utilizationWindowMs ?? 100);
      this.utilization.unref();
    }
  }

  /** Starts `threads` workers and resolves once each has compiled every policy; rejects with the first load error. */
  static async start(o: ScoringThreadsOptions): Promise<ScoringThreadPool> {
    if (!Number.isInteger(o.threads) || o.threads < 1) throw new RangeError(`routing_threads must be a positive integer, got ${o.threads}`);
    const pool = new ScoringThreadPool(o);
    for (let i = 0; i < o.threads; i++)
      pool.slots.push({ worker: null, pending: new Map(), outbox: [], restartMs: RESTART_MIN_MS, timer: null });
    try {
      await Promise.all(pool.slots.map((s) => pool.spawn(s)));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  serves(policy: string): boolean {
    return this.index.has(policy);
  }

  /** meta: null when the policy's router never reads it (text-only), so it is not copied across. */
  score(policy: string, text: string, meta: RouteQuery['meta'] | null): Promise<Scored | null> | undefined {
    const p = this.index.get(policy);
    if (p === undefined) return undefined;
    if (!this.busy) {
      this.idle++;
      return undefined;
    }
    // The least busy live worker; none with room: the event loop scores this one.
    let best: Slot | null = null;
    for (const s of this.slots) {
      if (s.worker !== null && s.pending.size < this.maxInFlight && (best === null || s.pending.size < best.pending.size)) best = s;
    }
    if (best === null || this.closed) {
      this.declined++;
      return undefined;
    }
    const id = this.nextId++;
    const slot = best;
    if (slot.outbox.length === 0) queueMicrotask(() => this.flush(slot));
    slot.outbox.push(id, p, text, meta);
    return new Promise<Scored | null>((resolve, reject) => slot.pending.set(id, { resolve, reject }));
  }

  private readonly flush = (slot: Slot): void => {
    const batch = slot.outbox;
    if (batch.length === 0) return;
    slot.outbox = [];
    // Lost meanwhile: orphan() has already sent these requests back to the event loop.
    slot.worker?.postMessage(batch);
  };

  stats(): ScoringThreadStats {
    let alive = 0;
    let inFlight = 0;
    for (const s of this.slots) {
      if (s.worker !== null) alive++;
      inFlight += s.pending.size;
    }
    return { threads: this.slots.length, alive, inFlight, scored: this.scored, declined: this.declined, idle: this.idle, lost: this.lost };
  }

  /** The live workers, for tests that need to lose one. */
  workers(): Worker[] {
    return this.slots.flatMap((s) => (s.worker === null ? [] : [s.worker]));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.utilization !== null) clearInterval(this.utilization);
    for (const s of this.slots) if (s.timer !== null) clearTimeout(s.timer);
    const workers = this.workers();
    for (const s of this.slots) this.orphan(s);
    await Promise.allSettled(workers.map((w) => w.terminate()));
  }

  private spawn(slot: Slot): Promise<void> {
    const { worker: file, tsLoader } = workerFileFor(import.meta.url, 'scoring.worker');
    const data: ScoringWorkerData = { policies: this.o.policies, baseDir: this.o.baseDir };
    const worker = newWorker(file, tsLoader, { workerData: data, name: `signalman-scoring#${this.slots.indexOf(slot)}` });
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      const wire = new ScoredDecoder(); // in step with this worker's encoder only
      worker.on('message', (m: ScoreReply) => {
        if (Array.isArray(m)) {
          // Decoded even when nobody waits any more: the next reply's shape may be "as this one".
          let r: Scored | Error;
          try {
            r = m[2] === null ? fromWire(m[3]) : wire.decode(m[1], m[2], m[3]);
          } catch (err) {
            // Out of step with the thread (a bug): its texts go back to the event loop (exit -> orphan)
            // and a new thread starts afresh on both sides, rather than the event loop throwing here.
            this.o.onEvent?.(
              'scoring thread sent a reply that could not be read; replacing it',
              err instanceof Error ? err : new Error(String(err)),
            );
            void worker.terminate();
            return;
          }
          const p = slot.pending.get(m[0]);
          if (p === undefined) return;
          slot.pending.delete(m[0]);
          if (r instanceof Error) p.reject(r);
          else {
            this.scored++;
            p.resolve(r);
          }
          return;
        }
        switch (m.kind) {
          case 'ready':
            ready = true;
            slot.restartMs = RESTART_MIN_MS;
            if (this.closed) {
              void worker.terminate();
            } else slot.worker = worker;
            resolve();
            return;
          case 'init_error':
            reject(new Error(`scoring thread could not load the policies: ${m.message}`));
            void worker.terminate();
        }
      });
      const gone = (why: string, err?: Error) => {
        if (!ready) {
          reject(new Error(`scoring thread ${why} before it was ready${err ? `: ${err.message}` : ''}`));
          return;
        }
        if (slot.worker !== worker) return;
        slot.worker = null;
        this.orphan(slot);
        if (this.closed) return;
        this.lost++;
        this.o.onEvent?.(`scoring thread ${why}; the event loop scores its share until it is back`, err);
        this.restartLater(slot);
      };
      worker.on('error', (e) => gone('failed', e));
      worker.on('exit', (code) => gone(`exited (code ${code})`));
    });
  }

  /** Requests waiting on a lost worker are scored on the event loop instead (null). */
  private orphan(slot: Slot): void {
    for (const p of slot.pending.values()) p.resolve(null);
    slot.pending.clear();
    slot.outbox = [];
  }

  private restartLater(slot: Slot): void {
    const wait = slot.restartMs;
    slot.restartMs = Math.min(RESTART_MAX_MS, slot.restartMs * 2);
    slot.timer = setTimeout(() => {
      slot.timer = null;
      if (this.closed) return;
      this.spawn(slot).then(
        () => this.o.onEvent?.('scoring thread restarted'),
        (err: unknown) => {
          this.o.onEvent?.('scoring thread failed to restart', err instanceof Error ? err : new Error(String(err)));
          this.restartLater(slot);
        },
      );
    }, wait);
    slot.timer.unref();
  }
}
