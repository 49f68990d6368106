import { describe, expect, it, onTestFinished } from 'vitest';
import { calibrateThreshold, createGuard, loadGuard, maxProbScore } from '../../src/routers/guard.js';
import knn from '../../src/routers/knn.js';
import { readManifest } from '../../src/routers/artifacts.js';
import { KnnIndex } from '../../src/routers/knn-index.js';
import { candidatesFor, ctxFor, embedder, makeClassifierArtifact, makeKnnArtifact, OUT_OF_DOMAIN, prompt, TOPICS } from './helpers.js';

describe('calibrateThreshold', () => {
  it('picks the midpoint of the gap that best separates the two sets', () => {
    const r = calibrateThreshold([0.9, 0.8, 0.7, 0.65], [0.1, 0.2, 0.5]);
    expect(r).toEqual({ threshold: (0.5 + 0.65) / 2, idAcc: 1, oodAcc: 1, harmonic: 1 });
  });

  it('maximises the harmonic mean when the sets overlap', () => {
    // t in (0.4, 0.6]: in 3/4 accepted, out 3/4 rejected -> harmonic 0.75; nothing does better.
    const r = calibrateThreshold([0.9, 0.8, 0.6, 0.3], [0.1, 0.2, 0.4, 0.7]);
    expect(r.harmonic).toBeCloseTo(0.75, 10);
    expect(r.threshold).toBeCloseTo(0.5, 10);
    expect(r.idAcc).toBe(0.75);
    expect(r.oodAcc).toBe(0.75);
  });

  it('refuses empty or non-finite input', () => {
    expect(() => calibrateThreshold([], [1])).toThrow(/need both/);
    expect(() => calibrateThreshold([Number.NaN], [1])).toThrow(/not finite/);
  });
});

describe('kNN-distance guard', () => {
  it('separates held-out in-domain prompts from out-of-domain ones after calibration', async () => {
    const { dir } = await makeKnnArtifact(2);
    const index = await KnnIndex.load(dir);
    const manifest = await readManifest(dir);
    const probe = createGuard(manifest, index, { threshold: 0 });
    const score = async (t: string) => (await probe.check(embedder.embedSync(t))).score;
    const inScores = await Promise.all(TOPICS.flatMap((t) => [800, 801, 802].map((i) => score(prompt(t, i)))));
    const outScores = await Promise.all(OUT_OF_DOMAIN.map(score));
    const cal = calibrateThreshold(inScores, outScores);
    expect(cal.harmonic).toBe(1);
    const guard = createGuard(manifest, index, { threshold: cal.threshold });
    expect(guard.kind).toBe('knn_distance');
    const fresh = await guard.check(embedder.embedSync(prompt('geo', 950)));
    expect(fresh.inDomain).toBe(true);
    expect(fresh.threshold).toBe(cal.threshold);
    expect((await guard.check(embedder.embedSync('Quel temps fait-il à Lyon demain matin ?'))).inDomain).toBe(false);
  });

  it('comes with the knn router, using the manifest threshold unless the policy overrides it', async () => {
    const { dir } = await makeKnnArtifact(2);
    const router = await knn.create(knn.options.parse({ type: 'knn', artifact: dir }), ctxFor(candidatesFor(2)));
    const makeGuard = (router as unknown as { makeGuard(o: { threshold?: number }): ReturnType<typeof createGuard> }).makeGuard;
    expect(() => makeGuard({})).toThrow(/no calibrated guard threshold/);
    const g = makeGuard({ threshold: 0.99 });
    const v = await g.check(embedder.embedSync(prompt('code', 3)));
    expect(v).toMatchObject({ inDomain: true, threshold: 0.99 }); // a training prompt: similarity 1
  });
});

describe('max-probability guard', () => {
  it("rejects prompts the classifier calls 'ood' or is unsure about, and names the label", async () => {
    const { dir } = await makeClassifierArtifact(0.5);
    const guard = await loadGuard(dir, embedder);
    onTestFinished(() => guard.close());
    expect(guard.kind).toBe('max_prob');
    const math = await guard.check(embedder.embedSync(prompt('math', 901)));
    expect(math).toMatchObject({ inDomain: true, label: 'math', threshold: 0.5 });
    expect(math.score).toBeGreaterThan(0.5);
    const ood = await guard.check(embedder.embedSync(OUT_OF_DOMAIN[3]!));
    expect(ood).toMatchObject({ inDomain: false, label: 'ood' });
    const strict = await loadGuard(dir, embedder, { threshold: 1.01 });
    onTestFinished(() => strict.close());
    expect((await strict.check(embedder.embedSync(prompt('math', 901)))).inDomain).toBe(false);
  });

  it('scores by the best in-domain label', () => {
    expect(maxProbScore([0.1, 0.2, 0.7], ['a', 'b', 'ood'])).toEqual({ score: 0.2, label: 'b', oodWins: true });
    expect(maxProbScore([0.6, 0.3, 0.1], ['a', 'b', 'ood'])).toEqual({ score: 0.6, label: 'a', oodWins: false });
  });

  it('refuses an artifact built with another embedder', async () => {
    const { dir } = await makeClassifierArtifact(0.5);
    await expect(loadGuard(dir, { id: 'other', dim: 64 })).rejects.toThrow(
      /trained with embedder '.*' \(dim 64\), but the policy's embedder is 'other'/,
    );
  });
});
