// Online learning inside the knn router: live rows that score one candidate, artifacts whose rows score
// some models only (NaN), and the bound on live rows.
import { describe, expect, it } from 'vitest';
import { KnnIndex } from '../../src/routers/knn-index.js';
import { LiveRows } from '../../src/routers/knn-live.js';
import knn, { KnnRouterOptions } from '../../src/routers/knn.js';
import type { CandidateScore, Router } from '../../src/routers/types.js';
import { writeKnnArtifact } from '../../src/training/knn-build.js';
import { candidatesFor, ctxFor, embedder, makeKnnArtifact, manifestFor, prompt, tempDir } from './helpers.js';

const unit = (...xs: number[]) => {
  const n = Math.hypot(...xs);
  return Float32Array.from(xs, (x) => x / n);
};

async function learningRouter(k: number, maxRows = 100): Promise<Router> {
  const { dir } = await makeKnnArtifact(2, 4);
  const opts = KnnRouterOptions.parse({ type: 'knn', artifact: dir, k, learn: { online: true, max_rows: maxRows } });
  return knn.create(opts, ctxFor(candidatesFor(2)));
}

async function scoreOf(router: Router, text: string): Promise<Map<string, CandidateScore>> {
  const scores = await router.score({ text, embedding: embedder.embedSync(text), candidates: ['b-strong', 'b-weak'], meta: {} });
  return new Map(scores.map((s) => [s.backend, s]));
}

describe('knn router with live rows', () => {
  it('a row scoring one candidate moves that candidate only', async () => {
    const router = await learningRouter(5);
    expect(router.textOnly).toBe(false); // learned rows change scores: no per-text cache
    const text = prompt('math', 50); // not in the artifact
    const before = await scoreOf(router, text);
    expect(before.get('b-weak')!.quality).toBeLessThan(0.1); // weak fails math in the artifact
    expect(before.get('b-weak')!.evidence.live).toBe(0);

    expect(router.addRows!([{ embedding: embedder.embedSync(text), scores: new Map([['b-weak', 1]]) }])).toBe(1);
    const after = await scoreOf(router, text);
    expect(after.get('b-weak')!.evidence.live).toBe(1);
    expect(after.get('b-weak')!.evidence.topSimilarity).toBeCloseTo(1, 4);
    expect(after.get('b-weak')!.quality).toBeGreaterThan(before.get('b-weak')!.quality + 0.15);
    // The row said nothing about strong: strong's mean runs over the 4 artifact neighbours that score it.
    expect(after.get('b-strong')!.quality).toBe(1);
  });

  it('falls back to the artifact estimate for a candidate no merged neighbour scores', async () => {
    const router = await learningRouter(1);
    const text = prompt('math', 60);
    router.addRows!([{ embedding: embedder.embedSync(text), scores: new Map([['b-weak', 0.75]]) }]);
    const s = await scoreOf(router, text);
    expect(s.get('b-weak')!.quality).toBeCloseTo(0.75, 6); // the one neighbour is the live row
    expect(s.get('b-weak')!.evidence).toMatchObject({ neighbours: 1, live: 1 });
    expect(s.get('b-strong')!.quality).toBe(1); // artifact-only top-1
  });

  it('refuses rows of another dimension or scoring no candidate', async () => {
    const router = await learningRouter(3);
    const e = embedder.embedSync('hello');
    expect(
      router.addRows!([
        { embedding: new Float32Array(8), scores: new Map([['b-weak', 1]]) },
        { embedding: e, scores: new Map([['elsewhere', 1]]) },
        { embedding: e, scores: new Map([['b-weak', 2]]) },
        { embedding: e, scores: new Map([['b-strong', 0]]) },
      ]),
    ).toBe(1);
  });

  it('keeps at most max_rows, evicting the oldest first', async () => {
    const live = new LiveRows(2, 3, new Set(['a']));
    const vecs = [unit(1, 0), unit(0.6, 0.8), unit(0, 1), unit(-0.6, 0.8), unit(-1, 0)];
    expect(live.add(vecs.map((embedding, i) => ({ embedding, scores: new Map([['a', i / 10]]) })))).toBe(5);
    expect(live.size).toBe(3);
    const top = (q: Float32Array) => {
      const r = live.search(q, 1);
      return { sim: r.sim[0]!, score: live.scoreOf(r.idx[0]!, 'a') };
    };
    expect(top(vecs[4]!)).toEqual({ sim: expect.closeTo(1, 6), score: 0.4 });
    expect(top(vecs[2]!).score).toBe(0.2); // still there
    expect(top(vecs[0]!).sim).toBeLessThan(0.99); // rows 0 and 1 are gone
    expect(top(vecs[0]!).score).toBe(0.2);

    // Through the router: max_rows 2, three rows, the first one's text no longer has a live match.
    const router = await learningRouter(1, 2);
    const texts = [prompt('geo', 70), prompt('code', 71), prompt('math', 72)];
    router.addRows!(texts.map((t) => ({ embedding: embedder.embedSync(t), scores: new Map([['b-weak', 0.5]]) })));
    expect((await scoreOf(router, texts[0]!)).get('b-weak')!.evidence.live).toBe(0);
    expect((await scoreOf(router, texts[2]!)).get('b-weak')!.evidence.live).toBe(1);
  });
});

describe('knn artifacts with partial rows (NaN = not scored)', () => {
  it('averages each model over the neighbours that score it, else its mean over the index', () => {
    const index = KnnIndex.fromRows(
      [unit(1, 0), unit(0.9, 0.1), unit(0, 1)],
      [Float32Array.of(1, Number.NaN), Float32Array.of(Number.NaN, 0), Float32Array.of(0.5, 0.5)],
    );
    const two = index.query(unit(1, 0), 2);
    expect(two.scores[0]).toBe(1);
    expect(two.scores[1]).toBe(0);
    const one = index.query(unit(1, 0), 1);
    expect(one.scores[0]).toBe(1);
    expect(one.scores[1]).toBeCloseTo(0.25, 6); // no neighbour scores model 1: (0 + 0.5) / 2
  });

  it('loads from disk through the router, and refuses rows or models with no score', async () => {
    const dir = await tempDir();
    const texts = [prompt('math', 1), prompt('math', 2), prompt('geo', 1), prompt('geo', 2)];
    const vectors = texts.map((t) => embedder.embedSync(t));
    const N = Number.NaN;
    const scores = [Float32Array.of(1, N), Float32Array.of(N, 0), Float32Array.of(N, 1), Float32Array.of(1, N)];
    await writeKnnArtifact(dir, vectors, scores, manifestFor(['strong', 'weak'], 4));
    const router = await knn.create(KnnRouterOptions.parse({ type: 'knn', artifact: dir, k: 2 }), ctxFor(candidatesFor(2)));
    const math = await scoreOf(router, prompt('math', 1));
    expect(math.get('b-strong')!.quality).toBe(1);
    expect(math.get('b-weak')!.quality).toBe(0);
    const geo = await scoreOf(router, prompt('geo', 1));
    expect(geo.get('b-weak')!.quality).toBe(1);

    const bad = await tempDir();
    await expect(
      writeKnnArtifact(bad, vectors, [...scores.slice(0, 3), Float32Array.of(N, N)], manifestFor(['strong', 'weak'], 4)),
    ).rejects.toThrow(/row 3 scores no model/);
    await expect(
      writeKnnArtifact(
        bad,
        vectors,
        scores.map(() => Float32Array.of(1, N)),
        manifestFor(['strong', 'weak'], 4),
      ),
    ).rejects.toThrow(/no row scores model\(s\) weak/);
  });
});
