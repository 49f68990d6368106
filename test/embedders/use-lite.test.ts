import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import useLite, { UseLiteOptions } from '../../src/embedders/use-lite.js';
import type { Embedder } from '../../src/embedders/types.js';
import { truncateMiddle } from '../../src/util/text.js';

// The real bundled model (about 30 MB, loaded from node_modules, nothing downloaded), in a worker.

const cos = (a: Float32Array, b: Float32Array): number => a.reduce((s, x, i) => s + x * b[i]!, 0);

describe('use-lite embedder', () => {
  let e: Embedder;
  beforeAll(async () => {
    e = await useLite.create(UseLiteOptions.parse({ type: 'use-lite', batch_window_ms: 5, max_chars: 512 }), {
      resolvePath: (p) => p,
    });
  }, 60_000);
  afterAll(() => e.close());

  it('gives 512-d unit vectors that place paraphrases closer than unrelated text', async () => {
    expect(e.id).toBe('use-lite/v1/d512/m512');
    expect(e.dim).toBe(512);
    const [a, b, c] = await Promise.all([
      e.embed('How do I sort a list in Python?'),
      e.embed('What is the way to order an array in Python?'),
      e.embed('The cat sat on the warm windowsill all afternoon.'),
    ]);
    expect(Math.sqrt(cos(a!, a!))).toBeCloseTo(1, 5);
    expect(cos(a!, b!)).toBeGreaterThan(cos(a!, c!) + 0.2);
  });

  it.runIf(process.platform === 'linux')('runs its model in a worker thread at lowered CPU priority, off the event loop thread', () => {
    // Field 19 of /proc/<pid>/task/<tid>/stat is the thread's nice value.
    const nices = readdirSync('/proc/self/task').map((tid) => {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
    });
    expect(nices).toContain(10);
    expect(nices[0]).toBe(0); // the main thread keeps its priority
  });

  it('gives the same vector alone and inside a batch', async () => {
    const alone = await e.embed('Is a contract without consideration enforceable?');
    const many = await e.embedMany(['short', 'Is a contract without consideration enforceable?', 'x'.repeat(300)]);
    expect(many).toHaveLength(3);
    many[1]!.forEach((x, i) => expect(x).toBeCloseTo(alone[i]!, 5));
  });

  it('embeds empty and huge texts without error (huge ones are cut to max_chars)', async () => {
    const empty = await e.embed('');
    expect(Math.sqrt(cos(empty, empty))).toBeCloseTo(1, 5);
    const huge = 'word '.repeat(200_000);
    const [h, cut] = await Promise.all([e.embed(huge), e.embed(truncateMiddle(huge, 512))]);
    h.forEach((x, i) => expect(x).toBeCloseTo(cut[i]!, 5));
  });

  it('rejects a call whose signal is already aborted, and unknown options', async () => {
    await expect(e.embed('x', AbortSignal.abort(new Error('gone')))).rejects.toThrow('gone');
    expect(UseLiteOptions.safeParse({ type: 'use-lite', workers: 0 }).success).toBe(false);
    expect(UseLiteOptions.safeParse({ type: 'use-lite', model: 'other' }).success).toBe(false);
  });
});
