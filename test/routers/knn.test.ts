import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import knn from '../../src/routers/knn.js';
import { KnnIndex } from '../../src/routers/knn-index.js';
import { prefixDim, selectTopK } from '../../src/routers/knn-scan.js';
import { seededRandom } from '../../src/util/random.js';
import { writeHnswIndex, writeKnnArtifact } from '../../src/training/knn-build.js';
import { candidatesFor, ctxFor, embedder, makeKnnArtifact, manifestFor, prompt, tempDir } from './helpers.js';

const unit = (...xs: number[]) => {
  const n = Math.hypot(...xs);
  return Float32Array.from(xs, (x) => x / n);
};

function randomUnitRows(rows: number, dim: number, seed: number): Float32Array[] {
  const r = seededRandom(seed);
  return Array.from({ length: rows }, () => unit(...Array.from({ length: dim }, () => r() - 0.5)));
}

describe('KnnIndex', () => {
  it('returns the similarity-weighted mean of the top k rows', () => {
    const index = KnnIndex.fromRows(
      [unit(1, 0), unit(0.8, 0.6), unit(0, 1), unit(-1, 0)],
      [Float32Array.of(1, 0), Float32Array.of(0, 1), Float32Array.of(1, 1), Float32Array.of(0, 0)],
    );
    const r = index.query(unit(1, 0), 2); // neighbours: row 0 (sim 1) and row 1 (sim 0.8)
    expect(r.neighbours).toBe(2);
    expect(r.topSimilarity).toBeCloseTo(1, 6);
    expect(r.meanSimilarity).toBeCloseTo(0.9, 6);
    expect(r.scores[0]).toBeCloseTo(1 / 1.8, 6);
    expect(r.scores[1]).toBeCloseTo(0.8 / 1.8, 6);
    // k larger than the index: every row, and the opposite row (sim -1) carries no weight.
    const all = index.query(unit(1, 0), 50);
    expect(all.neighbours).toBe(4);
    expect(all.scores[0]).toBeCloseTo((1 + 0) / 1.8, 6);
  });

  it('selects the same top k as a full sort, ties broken by row', () => {
    const r = seededRandom(5);
    const sims = Float32Array.from({ length: 500 }, () => Math.round(r() * 50) / 50); // many ties
    const idx = new Int32Array(20);
    const sim = new Float32Array(20);
    expect(selectTopK(sims, sims.length, 20, idx, sim)).toBe(20);
    const expected = [...sims.keys()].sort((a, b) => sims[b]! - sims[a]! || a - b).slice(0, 20);
    expect([...idx]).toEqual(expected);
  });

  it('finds exactly the neighbours of a full float scan through the int8 prefilter', () => {
    for (const [rows, dim, k] of [
      [2000, 64, 20],
      [2000, 64, 1], // a guard asks for the top one only
      [300, 20, 5],
      [40, 7, 3],
      [5, 33, 10],
    ] as const) {
      const vectors = randomUnitRows(rows, dim, rows);
      // Near-duplicates make the bound matter: many rows sit within quantisation error of each other.
      for (let i = 0; i < rows / 4; i++) vectors[i * 2 + 1] = unit(...vectors[i * 2]!.map((x, j) => x + (j === 0 ? 1e-3 : 0)));
      const scores = vectors.map((_, i) => Float32Array.of((i % 10) / 9));
      const fast = KnnIndex.fromRows(vectors, scores);
      const slow = KnnIndex.fromRows(vectors, scores, { scan: 'js' });
      expect(fast.stats.scan).toBe('int8-prefilter');
      expect(slow.stats.scan).toBe('js');
      for (const q of [...randomUnitRows(10, dim, 99), vectors[1]!, new Float32Array(dim)]) {
        expect(fast.query(q, k)).toEqual(slow.query(q, k));
      }
      if (rows >= 2000) {
        fast.query(randomUnitRows(1, dim, 7)[0]!, k);
        expect(fast.stats.exactRows).toBeLessThan(rows / 4); // the prefilter does prune
      }
    }
  });

  it('scans only the leading dimensions of PCA-ordered rows, and still finds exactly the float scan neighbours', () => {
    // Rows whose length sits mostly in their first dimensions (as in the static table's PCA order).
    const decaying = (rows: number, dim: number, seed: number): Float32Array[] =>
      randomUnitRows(rows, dim, seed).map((v) => unit(...v.map((x, j) => x * Math.exp(-j / 12))));
    const isotropic = randomUnitRows(500, 64, 3);
    expect(
      prefixDim(
        isotropic.reduce((a, v, i) => (a.set(v, i * 64), a), new Float32Array(500 * 64)),
        500,
        64,
      ),
    ).toBe(64);
    for (const [rows, dim, k] of [
      [2000, 128, 1],
      [2000, 128, 20],
      [600, 256, 5],
    ] as const) {
      const vectors = decaying(rows, dim, rows + dim);
      for (let i = 0; i < rows / 4; i++) vectors[i * 2 + 1] = unit(...vectors[i * 2]!.map((x, j) => x + (j === dim - 1 ? 1e-4 : 0)));
      const scores = vectors.map((_, i) => Float32Array.of((i % 10) / 9));
      const fast = KnnIndex.fromRows(vectors, scores);
      const slow = KnnIndex.fromRows(vectors, scores, { scan: 'js' });
      fast.query(vectors[0]!, k);
      expect(fast.stats.scanDim).toBeLessThan(dim);
      for (const q of [...decaying(20, dim, 77), ...randomUnitRows(5, dim, 78), vectors[1]!, vectors[3]!, new Float32Array(dim)]) {
        expect(fast.query(q, k)).toEqual(slow.query(q, k));
      }
      fast.query(decaying(1, dim, 9)[0]!, k);
      expect(fast.stats.exactRows).toBeLessThan(rows / 4);
    }
  });

  it('refuses a query of the wrong dimension or with NaN instead of routing on it', () => {
    const index = KnnIndex.fromRows(
      randomUnitRows(10, 8, 1),
      randomUnitRows(10, 2, 2).map((s) => s.map(Math.abs)),
    );
    expect(() => index.query(new Float32Array(9), 3)).toThrow(/expects a 8-dimensional embedding, got 9/);
    const q = new Float32Array(8);
    q[3] = Number.NaN;
    expect(() => index.query(q, 3)).toThrow(/not a finite|NaN/);
  });

  it('reuses the last search for the same embedding but not for a different one', () => {
    const rows = randomUnitRows(50, 8, 3);
    const index = KnnIndex.fromRows(
      rows,
      rows.map((_, i) => Float32Array.of(i / 49)),
    );
    const a = index.query(rows[7]!, 1);
    expect(a.scores[0]).toBeCloseTo(7 / 49, 6);
    expect(index.topSimilarity(rows[7]!, 1)).toBeCloseTo(1, 5);
    expect(index.query(rows[30]!, 1).scores[0]).toBeCloseTo(30 / 49, 6);
  });
});

describe('knn artifact', () => {
  it('round-trips through writeKnnArtifact and KnnIndex.load', async () => {
    const { dir, rows } = await makeKnnArtifact(2);
    const loaded = await KnnIndex.load(dir);
    const mem = KnnIndex.fromRows(rows.vectors, rows.scores);
    const q = embedder.embedSync(prompt('math', 500));
    expect(loaded.query(q, 5)).toEqual(mem.query(q, 5));
  });

  it('names the missing or truncated file', async () => {
    const { dir } = await makeKnnArtifact(2);
    const scores = await readFile(join(dir, 'scores.f32'));
    await writeFile(join(dir, 'scores.f32'), scores.subarray(0, scores.length - 4));
    await expect(KnnIndex.load(dir)).rejects.toThrow(/scores\.f32.*truncated/);
    await rm(join(dir, 'vectors.f32'));
    await writeFile(join(dir, 'scores.f32'), scores);
    await expect(KnnIndex.load(dir)).rejects.toThrow(/vectors\.f32.*missing/);
    await expect(KnnIndex.load(join(dir, 'nope'))).rejects.toThrow(/no manifest\.json/);
  });

  it('rejects scores outside 0..1 and vectors that are not unit length when writing', async () => {
    const dir = await tempDir();
    const m = manifestFor(['a'], 1);
    await expect(writeKnnArtifact(dir, [unit(1, 0)], [Float32Array.of(7)], { ...m, embedder: { id: 'x', dim: 2 } })).rejects.toThrow(
      /0\.\.1/,
    );
    await expect(
      writeKnnArtifact(dir, [Float32Array.of(3, 4)], [Float32Array.of(1)], { ...m, embedder: { id: 'x', dim: 2 } }),
    ).rejects.toThrow(/unit length/);
  });
});

describe('knn router', () => {
  it('predicts the weak model fails math and passes geography', async () => {
    const { dir } = await makeKnnArtifact(2);
    const router = await knn.create(knn.options.parse({ type: 'knn', artifact: dir, k: 5 }), ctxFor(candidatesFor(2)));
    const score = async (text: string) =>
      router.score({ text, embedding: embedder.embedSync(text), candidates: ['b-strong', 'b-weak'], meta: {} });
    const math = await score(prompt('math', 900));
    expect(math.map((s) => s.backend)).toEqual(['b-strong', 'b-weak']);
    expect(math[0]!.quality).toBe(1);
    expect(math[1]!.quality).toBeLessThan(0.2);
    expect(math[1]!.evidence).toMatchObject({ model: 'weak', neighbours: 5 });
    const geo = await score(prompt('geo', 901));
    expect(geo[1]!.quality).toBeGreaterThan(0.8);
  });

  it('refuses an artifact whose embedder or models do not match the policy, naming both sides', async () => {
    const { dir } = await makeKnnArtifact(2);
    const opts = knn.options.parse({ type: 'knn', artifact: dir });
    await expect(knn.create(opts, ctxFor([{ backend: 'gpt', as: 'gpt-4' }]))).rejects.toThrow(/'gpt' is known as 'gpt-4'.*strong, weak/);
    const other = { ...ctxFor(candidatesFor(2)), embedder: { ...embedder, id: 'lexical/other', dim: 32 } };
    await expect(knn.create(opts, other)).rejects.toThrow(
      new RegExp(`'${embedder.id.replace(/[/.]/g, '.')}' \\(dim 64\\).*'lexical/other' \\(dim 32\\)`),
    );
  });

  it('approximate (hnsw) search finds the exact neighbours on small data, prebuilt or not', async () => {
    const { dir } = await makeKnnArtifact(2);
    const exact = await KnnIndex.load(dir);
    const built = await KnnIndex.load(dir, { index: 'hnsw', ef: 100 });
    await writeHnswIndex(dir, { seed: 1 });
    const prebuilt = await KnnIndex.load(dir, { index: 'hnsw', ef: 100 });
    expect(prebuilt.kind).toBe('hnsw');
    for (let i = 0; i < 6; i++) {
      const q = embedder.embedSync(prompt(i % 2 ? 'code' : 'geo', 700 + i));
      const e = exact.query(q, 5);
      for (const approx of [built, prebuilt]) {
        const a = approx.query(q, 5);
        expect(a.topSimilarity).toBeCloseTo(e.topSimilarity, 4);
        expect(a.scores[1]).toBeCloseTo(e.scores[1]!, 4);
      }
    }
  });

  it('reports a corrupt HNSW index file instead of crashing', async () => {
    const { dir } = await makeKnnArtifact(2);
    await writeFile(join(dir, 'index.hnsw'), Buffer.from('not an index at all'));
    await expect(KnnIndex.load(dir, { index: 'hnsw' })).rejects.toThrow(/index\.hnsw/);
  });
});
