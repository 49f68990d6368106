import { compileRuntime, createSharedPools } from '../../src/runtime/compile.js';
import { parseConfigText } from '../../src/config/load.js';
import { describe, expect, it } from 'vitest';
import { withEmbedCache } from '../../src/embedders/cache.js';
import { createLexicalEmbedder, LexicalOptions } from '../../src/embedders/lexical.js';
import type { Embedder } from '../../src/embedders/types.js';

/** An embedder whose calls stay pending until the test releases them, and which records its signals. */
function manual() {
  const calls: { text: string; signal: AbortSignal | undefined; resolve: (v: Float32Array) => void; reject: (e: Error) => void }[] = [];
  let closed = 0;
  const e: Embedder = {
    id: 'manual/v1/d2',
    dim: 2,
    embed: (text, signal) =>
      new Promise<Float32Array>((resolve, reject) => {
        calls.push({ text, signal, resolve, reject });
        signal?.addEventListener('abort', () => reject(new Error('inner aborted')));
      }),
    embedMany: async (texts) => texts.map(() => Float32Array.of(1, 0)),
    close: async () => {
      closed++;
    },
  };
  return { e, calls, closedCount: () => closed };
}

describe('withEmbedCache', () => {
  it('serves repeats from the cache and reports hit and miss', async () => {
    const inner = createLexicalEmbedder(LexicalOptions.parse({ type: 'lexical', dim: 64 }));
    const c = withEmbedCache(inner, 10);
    expect(c.id).toBe(inner.id);
    const a = await c.embedCached('hello world');
    const b = await c.embedCached('hello world');
    expect(a.hit).toBe(false);
    expect(b.hit).toBe(true);
    expect(b.vec).toBe(a.vec);
    expect((await c.embedCached('hello world!')).hit).toBe(false);
    expect(c.stats()).toEqual({ size: 2, capacity: 10, hits: 1, misses: 2 });
  });

  it("reads a request's cancellation signal only for an embedder off this thread", async () => {
    const c = withEmbedCache(createLexicalEmbedder(LexicalOptions.parse({ type: 'lexical', dim: 16 })), 4);
    let made = 0;
    const source = (aborted: boolean) => ({
      aborted,
      get signal(): AbortSignal {
        made++;
        return AbortSignal.abort(new Error('client gone'));
      },
    });
    expect((await c.embedCached('on this thread', source(false))).vec).toHaveLength(16);
    expect(made).toBe(0);
    await expect(c.embedCached('on this thread', source(true))).rejects.toThrow('client gone');
    const m = manual();
    const off = withEmbedCache(m.e, 4);
    await expect(off.embedCached('worker', source(false))).rejects.toThrow('client gone');
    expect(made).toBe(2);
  });

  it('evicts the least recently used entry', async () => {
    const c = withEmbedCache(createLexicalEmbedder(LexicalOptions.parse({ type: 'lexical', dim: 16 })), 2);
    await c.embed('a');
    await c.embed('b');
    await c.embed('a'); // a is now the most recent
    await c.embed('c'); // evicts b
    expect((await c.embedCached('a')).hit).toBe(true);
    expect((await c.embedCached('b')).hit).toBe(false);
    expect(c.stats().size).toBe(2);
  });

  it('shares one inner call between concurrent misses for the same text', async () => {
    const m = manual();
    const c = withEmbedCache(m.e, 10);
    const p1 = c.embedCached('same');
    const p2 = c.embedCached('same');
    await Promise.resolve();
    expect(m.calls).toHaveLength(1);
    m.calls[0]!.resolve(Float32Array.of(0, 1));
    const [r1, r2] = await Promise.all([p1, p2]);
    expect(r1.hit).toBe(false);
    expect(r2.hit).toBe(true);
    expect(Array.from(r2.vec)).toEqual([0, 1]);
  });

  it('cancels the shared inner call only when every waiter has aborted', async () => {
    const m = manual();
    const c = withEmbedCache(m.e, 10);
    const a1 = new AbortController();
    const a2 = new AbortController();
    const p1 = c.embed('t', a1.signal);
    const p2 = c.embed('t', a2.signal);
    await Promise.resolve();
    a1.abort(new Error('client 1 left'));
    await expect(p1).rejects.toThrow('client 1 left');
    expect(m.calls[0]!.signal?.aborted).toBe(false); // client 2 still waits
    a2.abort(new Error('client 2 left'));
    await expect(p2).rejects.toThrow('client 2 left');
    expect(m.calls[0]!.signal?.aborted).toBe(true);
    // Nothing was cached; the next call starts afresh.
    const p3 = c.embed('t');
    await Promise.resolve();
    expect(m.calls).toHaveLength(2);
    m.calls[1]!.resolve(Float32Array.of(1, 0));
    expect(Array.from(await p3)).toEqual([1, 0]);
  });

  it('does not cache failures, and capacity 0 caches nothing', async () => {
    const m = manual();
    const c = withEmbedCache(m.e, 0);
    const p = c.embed('x');
    await Promise.resolve();
    m.calls[0]!.reject(new Error('model failed'));
    await expect(p).rejects.toThrow('model failed');
    const q = c.embedCached('x');
    await Promise.resolve();
    m.calls[1]!.resolve(Float32Array.of(1, 0));
    expect((await q).hit).toBe(false);
    const r = c.embedCached('x');
    await Promise.resolve();
    expect(m.calls).toHaveLength(3);
    m.calls[2]!.resolve(Float32Array.of(1, 0));
    await r;
    expect(() => withEmbedCache(m.e, -1)).toThrow(/non-negative/);
    await c.close();
    expect(m.closedCount()).toBe(1);
  });
});

describe('embed cache capacity in a compiled policy', () => {
  it('holds a memory budget by default, not 10,000 vectors of any width; cache_size overrides it', async () => {
    const text = `version: 1
backends:
  - { name: a, base_url: "http://127.0.0.1:1/v1", model: a }
policies:
  - { name: wide, candidates: [a], embedder: { type: lexical, dim: 4096 } }
  - { name: narrow, candidates: [a], embedder: { type: lexical, dim: 256 } }
  - { name: set, candidates: [a], embedder: { type: lexical, dim: 4096, cache_size: 50 } }
`;
    const shared = createSharedPools();
    const rt = await compileRuntime(parseConfigText(text, '/cfg/signalman.yaml', {}), shared, 1);
    try {
      const capacity = (name: string) => rt.policies.get(name)?.embedder?.stats().capacity;
      expect(capacity('wide')).toBe((16 * 2 ** 20) / (4 * 4096)); // 1,024 vectors of 16 KB
      expect(capacity('narrow')).toBe(10_000);
      expect(capacity('set')).toBe(50);
    } finally {
      await rt.dispose();
      await shared.pools.closeAll();
      await shared.embedders.closeAll();
    }
  });
});
