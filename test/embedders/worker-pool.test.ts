import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerPool } from '../../src/embedders/worker-pool.js';

// Worker start-up under tsx costs ~1 s, so the tests share one pool and run in order; the crash and
// close() cases come last on purpose.

const make = (o: { failInit?: boolean; maxQueue?: number } = {}) =>
  new WorkerPool({
    name: 'embedder echo',
    worker: new URL('./fixtures/echo.worker.ts', import.meta.url),
    tsLoader: true,
    workerData: { dim: 4, delayMs: 30, failInit: o.failInit ?? false },
    size: 1,
    batchWindowMs: 20,
    maxBatch: 4,
    ...(o.maxQueue === undefined ? {} : { maxQueue: o.maxQueue }),
  });

const batchOf = (v: Float32Array): number => v[0]!;

describe('WorkerPool', () => {
  let p: WorkerPool;
  beforeAll(() => {
    p = make();
  });
  afterAll(() => p.close());

  it('loads the model in a worker and reports its dimension', async () => {
    expect(await p.ready()).toBe(4);
    expect(Array.from(await p.embed('hello'))).toEqual([1, 5, 1, 0]);
  });

  it('batches concurrent calls within the window, at most max_batch at a time', async () => {
    const vs = await Promise.all(Array.from({ length: 10 }, (_, i) => p.embed(`t${i}`)));
    expect(vs.map(batchOf)).toEqual([4, 4, 4, 4, 4, 4, 4, 4, 2, 2]);
    vs.forEach((v, i) => expect(v[1]).toBe(`t${i}`.length)); // each caller gets its own row
  });

  it('refuses request-path calls past max_queue with 503 overloaded, but never bulk (training) calls', async () => {
    const small = make({ maxQueue: 3 });
    try {
      await small.ready();
      const bulk = Array.from({ length: 8 }, (_, i) => small.embed(`bulk${i}`)); // unbounded: all queue
      const refused = await small.embed('request', undefined, true).catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: 'overloaded', status: 503 });
      expect((refused as Error).message).toMatch(/max_queue 3/);
      expect(await Promise.all(bulk)).toHaveLength(8);
      // Once the queue drains, requests are accepted again.
      expect(await small.embed('request', undefined, true)).toHaveLength(4);
    } finally {
      await small.close();
    }
  });

  it('drops an aborted call from the queue before it reaches the model', async () => {
    const ac = new AbortController();
    const first = p.embed('first');
    const dropped = p.embed('dropped', ac.signal);
    const kept = p.embed('kept');
    ac.abort(new Error('client went away'));
    await expect(dropped).rejects.toThrow('client went away');
    expect(batchOf(await first)).toBe(2); // 'dropped' was not sent with them
    expect(batchOf(await kept)).toBe(2);
    await expect(p.embed('x', AbortSignal.abort())).rejects.toThrow(/abort/i);
  });

  it('fails the texts of a failed batch with the model error and keeps serving', async () => {
    const [a, b] = await Promise.allSettled([p.embed('boom'), p.embed('fine')]);
    expect(a.status === 'rejected' && String(a.reason)).toMatch(/embedder echo: cannot embed boom/);
    expect(b.status).toBe('rejected'); // same batch
    expect(batchOf(await p.embed('after'))).toBe(1);
  });

  it('survives a worker crash: the batch fails clearly, a new worker takes over', async () => {
    await expect(p.embed('crash')).rejects.toThrow(/worker crashed/);
    expect((await p.embed('again'))[1]).toBe(5);
  });

  it('rejects in-flight and queued calls on close(), and every later call', async () => {
    const inflight = expect(p.embed('one')).rejects.toThrow(/closed/);
    await new Promise((r) => setTimeout(r, 25)); // 'one' is now inside the model
    const queued = expect(p.embed('two')).rejects.toThrow(/closed/);
    await p.close();
    await inflight;
    await queued;
    await expect(p.embed('three')).rejects.toThrow(/closed/);
  });

  it('reports a model that fails to load', async () => {
    const bad = make({ failInit: true });
    await expect(bad.ready()).rejects.toThrow('embedder echo: model file is corrupt');
    await bad.close();
  });
});
