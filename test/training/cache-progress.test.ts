import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Embedder } from '../../src/embedders/types.js';
import { readDataset } from '../../src/training/dataset.js';
import { embedDataset, rowOf } from '../../src/training/embed-cache.js';
import { progressEnabled, startProgress } from '../../src/training/progress.js';

/** A 3-d embedder that counts the texts it was asked to embed. */
function countingEmbedder(id: string): Embedder & { calls: number } {
  const e = {
    id,
    dim: 3,
    calls: 0,
    embed: async (t: string) => Float32Array.of(t.length, 1, 0),
    embedMany: async (ts: readonly string[]) => {
      e.calls += ts.length;
      return ts.map((t) => Float32Array.of(t.length, 1, 0));
    },
    close: async () => {},
  };
  return e;
}

describe('embedding cache', () => {
  it('embeds a dataset once per embedder id and file hash, and reads the same vectors back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-cache-'));
    const file = join(dir, 'd.jsonl');
    const row = (id: string, prompt: string) =>
      JSON.stringify({ id, benchmark: 'x', category: 'c', prompt, scores: { a: 1 }, contaminated: false });
    writeFileSync(file, `${row('r1', 'hi')}\n${row('r2', 'hello')}\n`);
    const cacheDir = join(dir, 'cache');
    const e = countingEmbedder('count/v1');
    const first = await embedDataset(e, await readDataset(file), { cacheDir, progress: false });
    const again = await embedDataset(e, await readDataset(file), { cacheDir, progress: false });
    expect(e.calls).toBe(2); // the second call was served from disk
    expect(Array.from(rowOf(again, 1))).toEqual([5, 1, 0]);
    expect(again.data).toEqual(first.data);
    await embedDataset(countingEmbedder('count/v2'), await readDataset(file), { cacheDir, progress: false });
    writeFileSync(file, `${row('r1', 'hi')}\n${row('r2', 'hello!')}\n`); // new file hash
    await embedDataset(e, await readDataset(file), { cacheDir, progress: false });
    expect(e.calls).toBe(4);
    expect(readdirSync(cacheDir).filter((f) => f.endsWith('.f32'))).toHaveLength(3);
  });
});

describe('progress', () => {
  it('stays quiet when stderr is not a terminal or CI is set', () => {
    const fakeTty = { isTTY: true } as NodeJS.WriteStream;
    const saved = process.env.CI;
    try {
      process.env.CI = 'true';
      expect(progressEnabled(fakeTty)).toBe(false);
      delete process.env.CI;
      expect(progressEnabled(fakeTty)).toBe(true);
      expect(progressEnabled({ isTTY: false } as NodeJS.WriteStream)).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.CI;
      else process.env.CI = saved;
    }
  });

  it('writes nothing when disabled', () => {
    const written: string[] = [];
    const stream = { isTTY: false, write: (s: string) => written.push(s) } as unknown as NodeJS.WriteStream;
    const bar = startProgress('x', 10, { stream });
    bar.update(5);
    bar.stop();
    expect(written).toEqual([]);
  });
});
