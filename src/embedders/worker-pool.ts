import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { Worker, parentPort, workerData } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { E } from '../errors.js';
import { abortReason } from './common.js';
import { truncateMiddle } from '../util/text.js';
import type { Embedder } from './types.js';

// Model embedders (tfjs, onnxruntime) take 15-50 ms a prompt: run on the main thread they would stall
// every other request. This pool runs them in worker threads and batches concurrent embed() calls: a
// call waits at most `batchWindowMs` for company, and a batch never exceeds `maxBatch` texts. When all
// workers are busy, calls queue and leave in the next batch with no extra wait. A queued call whose
// AbortSignal fires leaves the queue at once; one already inside a model call finishes and is dropped.

/** Messages from the parent to a worker. */
type ToWorker = { kind: 'embed'; id: number; texts: string[] };
/** Messages from a worker to the parent. `flat` holds texts.length × dim floats. */
type FromWorker =
  | { kind: 'ready'; dim: number }
  | { kind: 'init_error'; message: string }
  | { kind: 'result'; id: number; flat: Float32Array }
  | { kind: 'error'; id: number; message: string };

export interface WorkerPoolOptions {
  /** Used in error messages, e.g. the embedder id. */
  name: string;
  worker: URL;
  workerData: unknown;
  size: number;
  batchWindowMs: number;
  maxBatch: number;
  /** Most request-path texts waiting (embed(..., { bounded: true })); more are refused with 503 overloaded. */
  maxQueue?: number;
  /** The worker is a .ts file (tests, tsx): load it through tsx's ESM loader. */
  tsLoader?: boolean;
}

interface Item {
  text: string;
  resolve: (v: Float32Array) => void;
  reject: (e: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface Slot {
  worker: Worker;
  batch: Item[] | null;
  batchId: number;
}

/**
 * The worker file for `base` next to the calling module: `.ts` under vitest/tsx, `.js` once compiled
 * to dist/.
 */
export function workerFileFor(callerUrl: string, base: string): { worker: URL; tsLoader: boolean } {
  const fromSources = callerUrl.endsWith('.ts');
  return { worker: new URL(`./${base}.${fromSources ? 'ts' : 'js'}`, callerUrl), tsLoader: fromSources };
}

/**
 * Node 20 does not apply `--import tsx` from a worker's execArgv, so a .ts worker starts from a small
 * CommonJS bootstrap that registers tsx's loader and then imports the real file. Sources only.
 */
export function newWorker(file: URL, tsLoader: boolean, opts: { workerData: unknown; name: string }): Worker {
  if (!tsLoader) return new Worker(file, opts);
  // The .mjs entry: tsx's CommonJS build resolves its loader relative to the wrong folder when imported.
  const api = pathToFileURL(
    createRequire(import.meta.url)
      .resolve('tsx/esm/api')
      .replace(/\.cjs$/, '.mjs'),
  ).href;
  const boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(file.href)}); })
  .catch((e) => { setImmediate(() => { throw e; }); });`;
  return new Worker(boot, { ...opts, eval: true });
}

export class WorkerPool {
  private readonly queue: Item[] = [];
  private readonly slots: Slot[] = [];
  private timer: NodeJS.Timeout | null = null;
  private nextId = 1;
  private closed = false;
  private fatal: Error | null = null;
  private readonly readyPromise: Promise<number>;
  dim = 0;

  constructor(private readonly o: WorkerPoolOptions) {
    const starts: Promise<number>[] = [];
    for (let i = 0; i < o.size; i++) starts.push(this.spawn(i));
    this.readyPromise = Promise.all(starts).then((dims) => (this.dim = dims[0] ?? 0));
    this.readyPromise.catch(() => undefined); // surfaced by ready(); avoid an unhandled rejection meanwhile
  }

  /** Resolves with the model's dimension once every worker has loaded it; rejects with the load error. */
  ready(): Promise<number> {
    return this.readyPromise;
  }

  embed(text: string, signal?: AbortSignal, bounded = false): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new Error(`${this.o.name}: embedder is closed`));
    if (this.fatal) return Promise.reject(this.fatal);
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (bounded && this.o.maxQueue !== undefined && this.queue.length >= this.o.maxQueue) {
      return Promise.reject(
        E.overloaded(`${this.o.name} has ${this.queue.length} texts waiting (max_queue ${this.o.maxQueue}); retry shortly or add workers`),
      );
    }
    return new Promise<Float32Array>((resolve, reject) => {
      const item: Item = { text, resolve, reject, signal, onAbort: undefined };
      if (signal) {
        item.onAbort = () => {
          const at = this.queue.indexOf(item);
          if (at >= 0) this.queue.splice(at, 1);
          reject(abortReason(signal));
        };
        signal.addEventListener('abort', item.onAbort, { once: true });
      }
      this.queue.push(item);
      this.schedule();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const err = new Error(`${this.o.name}: embedder closed while this text was waiting`);
    for (const it of this.queue.splice(0)) this.settle(it, err);
    for (const s of this.slots) {
      if (s.batch) for (const it of s.batch) this.settle(it, err);
      s.batch = null;
    }
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private spawn(index: number): Promise<number> {
    const worker = newWorker(this.o.worker, this.o.tsLoader ?? false, {
      workerData: this.o.workerData,
      name: `${this.o.name}#${index}`,
    });
    const slot: Slot = { worker, batch: null, batchId: 0 };
    this.slots[index] = slot;
    return new Promise<number>((resolve, reject) => {
      let loaded = false;
      worker.on('message', (m: FromWorker) => {
        if (m.kind === 'ready') {
          loaded = true;
          resolve(m.dim);
          this.schedule();
        } else if (m.kind === 'init_error') {
          reject(new Error(`${this.o.name}: ${m.message}`));
          void worker.terminate();
        } else this.onResult(slot, m);
      });
      worker.on('error', (e) => {
        if (!loaded) reject(new Error(`${this.o.name}: worker failed to start: ${e.message}`, { cause: e }));
        else this.onCrash(slot, index, e);
      });
      worker.on('exit', (code) => {
        if (!loaded) reject(new Error(`${this.o.name}: worker exited (code ${code}) before loading the model`));
        else if (!this.closed && this.slots[index] === slot) this.onCrash(slot, index, new Error(`exit code ${code}`));
      });
    });
  }

  private onCrash(slot: Slot, index: number, e: Error): void {
    if (this.closed || this.slots[index] !== slot) return;
    const err = new Error(`${this.o.name}: worker crashed: ${e.message}`, { cause: e });
    if (slot.batch) for (const it of slot.batch) this.settle(it, err);
    slot.batch = null;
    // One respawn per crash; if the model no longer loads, the pool fails every later call clearly.
    this.spawn(index).catch((e2: unknown) => {
      this.fatal = e2 instanceof Error ? e2 : new Error(String(e2));
      for (const it of this.queue.splice(0)) this.settle(it, this.fatal);
    });
  }

  private onResult(slot: Slot, m: Extract<FromWorker, { kind: 'result' | 'error' }>): void {
    const batch = slot.batch;
    if (!batch || m.id !== slot.batchId) return;
    slot.batch = null;
    if (m.kind === 'error') {
      const err = new Error(`${this.o.name}: ${m.message}`);
      for (const it of batch) this.settle(it, err);
    } else {
      const dim = m.flat.length / batch.length;
      batch.forEach((it, k) => this.settle(it, null, m.flat.slice(k * dim, (k + 1) * dim)));
    }
    // Whatever queued meanwhile has waited long enough: send it now, without another window.
    if (!this.closed) this.dispatch();
  }

  private settle(it: Item, err: unknown, v?: Float32Array): void {
    if (it.signal && it.onAbort) it.signal.removeEventListener('abort', it.onAbort);
    if (it.signal?.aborted) return; // already rejected by its abort listener
    if (v !== undefined && err === null) it.resolve(v);
    else it.reject(err);
  }

  private schedule(): void {
    if (this.queue.length === 0 || this.closed) return;
    if (this.queue.length >= this.o.maxBatch || this.o.batchWindowMs <= 0) {
      this.dispatch();
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = null;
      this.dispatch();
    }, this.o.batchWindowMs);
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) break;
      if (!slot || slot.batch) continue;
      const batch = this.queue.splice(0, this.o.maxBatch);
      slot.batch = batch;
      slot.batchId = this.nextId++;
      const msg: ToWorker = { kind: 'embed', id: slot.batchId, texts: batch.map((it) => it.text) };
      slot.worker.postMessage(msg);
    }
    // Items left over wait for the next free worker (onResult calls schedule again).
    if (this.timer && this.queue.length === 0) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }
}

/** What a worker file provides: load once, then embed batches (unit-length rows). */
export interface WorkerModel {
  dim: number;
  embedBatch(texts: string[]): Promise<Float32Array[]>;
}

/**
 * Lowers this worker thread's CPU priority (Linux: nice is per thread, and setpriority() takes a thread id),
 * so on a small machine a slow sentence-embedding model yields the CPU to the event loop that serves
 * pass-through and lexical-routed requests. Threads the model starts later inherit it. Best effort.
 */
function yieldToEventLoop(nice: number): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, nice);
  } catch {
    // Not Linux, or not allowed: run at normal priority.
  }
}

/** Call from a worker file: loads the model with `workerData`, then serves batches one at a time. */
export function serveWorkerModel(load: (data: unknown) => Promise<WorkerModel>): void {
  const port = parentPort;
  if (!port) throw new Error('serveWorkerModel() must run inside a worker thread');
  yieldToEventLoop(10);
  const send = (m: FromWorker, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer);
  load(workerData).then(
    (model) => {
      port.on('message', (m: ToWorker) => {
        model.embedBatch(m.texts).then(
          (rows) => {
            const flat = new Float32Array(rows.length * model.dim);
            rows.forEach((r, k) => flat.set(r, k * model.dim));
            send({ kind: 'result', id: m.id, flat }, [flat.buffer]);
          },
          (e: unknown) => send({ kind: 'error', id: m.id, message: e instanceof Error ? e.message : String(e) }),
        );
      });
      send({ kind: 'ready', dim: model.dim });
    },
    (e: unknown) => send({ kind: 'init_error', message: e instanceof Error ? e.message : String(e) }),
  );
}

/** An Embedder over a started pool: texts are cut to `maxChars` (head and tail kept) before they cross threads. */
export function pooledEmbedder(pool: WorkerPool, id: string, dim: number, maxChars: number): Embedder {
  const cut = (t: string): string => truncateMiddle(t, maxChars);
  return {
    id,
    dim,
    // Requests are bounded; training's embedMany may queue a whole dataset.
    embed: (text, signal) => pool.embed(cut(text), signal, true),
    embedMany: async (texts, onProgress) => {
      let done = 0;
      return Promise.all(
        texts.map(async (t) => {
          const v = await pool.embed(cut(t));
          onProgress?.(++done);
          return v;
        }),
      );
    },
    close: () => pool.close(),
  };
}
