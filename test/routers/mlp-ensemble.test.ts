import { describe, expect, it, onTestFinished } from 'vitest';
import mlpRouter, { OnnxMlp } from '../../src/routers/mlp.js';
import { makeEnsemble, trainEnsemble, type EnsembleMemberRecipe } from '../../src/training/ensemble.js';
import { makeMlp } from '../../src/training/mlp-train.js';
import { writeMlpArtifact } from '../../src/training/onnx-export.js';
import { ctxFor, embedder, makeRows, manifestFor, prompt, tempDir } from './helpers.js';

// Ensembles ship as one model.onnx for the plain `mlp` router: these tests hold the JS predictor and
// the onnxruntime graph to the same numbers, and check the category prior's table.

const MEMBERS: EnsembleMemberRecipe[] = [
  // Two "members" of the input (its halves stand in for a concat embedder's parts) and a prior on all of it.
  { input: 0, kind: 'quality', mlp: { hidden: [], epochs: 20, lr: 0.02, batchSize: 8 }, seed: 1, weight: 0.4 },
  { input: 1, kind: 'quality', mlp: { hidden: [8], epochs: 20, lr: 0.01, batchSize: 8, dropout: 0.1 }, seed: 2, weight: 0.35 },
  { input: 'all', kind: 'category-prior', mlp: { hidden: [], epochs: 30, lr: 0.02, batchSize: 8 }, seed: 3, weight: 0.25 },
];
const SLICES = [
  [0, 32],
  [32, 64],
] as const;

async function trained() {
  const rows = makeRows(10, 2);
  const m = await trainEnsemble(MEMBERS, { X: rows.vectors, Y: rows.scores, categories: rows.topics, slices: SLICES });
  return { rows, m };
}

/** Writes the artifact and checks that onnxruntime computes what the JS predictor computes on `xs`. */
async function expectOnnxMatchesJs(m: Awaited<ReturnType<typeof trainEnsemble>>, xs: readonly Float32Array[]): Promise<void> {
  const dir = await tempDir();
  await writeMlpArtifact(dir, m, manifestFor(['strong', 'weak'], xs.length));
  const ort = await OnnxMlp.load(dir);
  onTestFinished(() => ort.close());
  for (const x of xs) {
    const js = m.predict(x);
    const rt = await ort.run(x);
    for (let i = 0; i < 2; i++) expect(rt[i]).toBeCloseTo(js[i]!, 5);
  }
}

describe('ensemble of MLPs', () => {
  it('is deterministic, mixes its parts with the given weights, and keeps outputs in 0..1', async () => {
    const a = await trained();
    const b = await trained();
    const x = embedder.embedSync(prompt('math', 500));
    expect(a.m.predict(x)).toEqual(b.m.predict(x));
    const parts = a.m.ensemble.parts;
    expect(parts.map((p) => [p.start, p.end])).toEqual([
      [0, 32],
      [32, 64],
      [0, 64],
    ]);
    // The prior's table: each topic's mean outcome per model (strong always right, weak fails math).
    expect(Array.from(parts[2]!.table!)).toEqual([1, 1, 1, 1, 1, 0]); // rows code, geo, math (sorted) x columns strong, weak
    const want = parts.reduce(
      (acc, p) => {
        let y = p.mlp.predict(x.subarray(p.start, p.end));
        if (p.table) y = Float32Array.from([0, 1], (o) => y.reduce((s, v, c) => s + v * p.table![c * 2 + o]!, 0));
        return acc.map((v, o) => v + p.weight * y[o]!);
      },
      [0, 0],
    );
    const got = a.m.predict(x);
    want.forEach((v, o) => expect(got[o]).toBeCloseTo(v, 6));
    for (const v of got) expect(v >= 0 && v <= 1).toBe(true);
    // It learned the task: the weak model is predicted to fail math, pass geography.
    expect(got[1]).toBeLessThan(a.m.predict(embedder.embedSync(prompt('geo', 500)))[1]!);
  });

  it('gives the same predictions in JS and in onnxruntime, and runs in the mlp router', async () => {
    const { rows, m } = await trained();
    const dir = await tempDir();
    await writeMlpArtifact(dir, m, manifestFor(['strong', 'weak'], rows.vectors.length));
    const ort = await OnnxMlp.load(dir);
    onTestFinished(() => ort.close());
    for (const x of [...rows.vectors, embedder.embedSync(prompt('code', 900)), new Float32Array(64)]) {
      const js = m.predict(x);
      const rt = await ort.run(x);
      expect(rt.length).toBe(2);
      for (let i = 0; i < 2; i++) expect(rt[i]).toBeCloseTo(js[i]!, 5);
    }
    const router = await mlpRouter.create(
      { type: 'mlp', artifact: dir },
      ctxFor([
        { backend: 'big', as: 'strong' },
        { backend: 'cheap', as: 'weak' },
      ]),
    );
    onTestFinished(() => router.close?.());
    const text = prompt('math', 321);
    const e = embedder.embedSync(text);
    const s = await router.score({ text, embedding: e, candidates: ['big', 'cheap'], meta: {} });
    expect(s[0]!.quality).toBeCloseTo(m.predict(e)[0]!, 5);
    expect(s[1]!.quality).toBeCloseTo(m.predict(e)[1]!, 5);
  });

  it('refuses parts that do not fit together', () => {
    const lr = (inputs: number, outputs: number) =>
      makeMlp({ inputDim: inputs, hidden: [], outputDim: outputs, activation: 'relu', output: 'sigmoid' }, [
        { W: new Float32Array(inputs * outputs), b: new Float32Array(outputs) },
      ]);
    expect(() => makeEnsemble(8, 2, [{ start: 0, end: 8, mlp: lr(8, 2), weight: 0.5 }])).toThrow(/sum to 1/);
    expect(() => makeEnsemble(8, 2, [{ start: 0, end: 4, mlp: lr(8, 2), weight: 1 }])).toThrow(/takes 8 inputs, the slice has 4/);
    expect(() => makeEnsemble(8, 2, [{ start: 4, end: 12, mlp: lr(8, 2), weight: 1 }])).toThrow(/outside/);
    expect(() => makeEnsemble(8, 2, [{ start: 0, end: 8, mlp: lr(8, 3), table: new Float32Array(5), weight: 1 }])).toThrow(
      /table has 5 entries/,
    );
  });

  it('joint-outcome members: a softmax over (both wrong, only weak right, only strong right, both right), in JS and onnxruntime', async () => {
    const rows = makeRows(10, 2);
    const joint: EnsembleMemberRecipe[] = [
      { input: 'all', kind: 'joint', mlp: { hidden: [], epochs: 30, lr: 0.02, batchSize: 8 }, seed: 4, weight: 0.7 },
      { input: 0, kind: 'joint', mlp: { hidden: [6], epochs: 30, lr: 0.01, batchSize: 8 }, seed: 5, weight: 0.3 },
    ];
    const m = await trainEnsemble(joint, { X: rows.vectors, Y: rows.scores, slices: SLICES });
    expect(Array.from(m.ensemble.parts[0]!.table!)).toEqual([0, 0, 0, 1, 1, 0, 1, 1]);
    // Math: strong right, weak wrong (class 2); elsewhere both right (class 3).
    const math = m.predict(embedder.embedSync(prompt('math', 600)));
    const geo = m.predict(embedder.embedSync(prompt('geo', 600)));
    expect(math[0]! - math[1]!).toBeGreaterThan(geo[0]! - geo[1]!);
    await expectOnnxMatchesJs(m, rows.vectors);
    await expect(
      trainEnsemble(joint, { X: rows.vectors, Y: rows.scores.map((y) => Float32Array.of(y[0]!, 0.5)), slices: SLICES }),
    ).rejects.toThrow(/needs 0\/1 targets/);
  });

  it('softmax ensembles: seeds of a classifier averaged into probabilities, with sample weights; same in onnxruntime', async () => {
    const rows = makeRows(10, 2);
    const labels = ['math', 'geo', 'code'] as const;
    const Y = rows.topics.map((t) => Float32Array.from(labels, (l) => (l === t ? 1 : 0)));
    const mlp = { hidden: [6], epochs: 30, lr: 0.01, batchSize: 8 };
    const members: EnsembleMemberRecipe[] = [1, 2].map((seed) => ({ input: 'all', kind: 'quality', mlp, seed, weight: 0.5 }));
    const sampleWeights = Float32Array.from(rows.topics, (t) => (t === 'code' ? 2 : 1));
    const m = await trainEnsemble(members, { X: rows.vectors, Y, slices: SLICES, output: 'softmax', sampleWeights });
    expect(m.spec.output).toBe('softmax');
    // A weighted mean of softmaxes: a probability vector, each seed's own predictor halved.
    const x = embedder.embedSync(prompt('geo', 700));
    const p = m.predict(x);
    expect(p.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
    const parts = m.ensemble.parts.map((part) => part.mlp.predict(x));
    p.forEach((v, o) => expect(v).toBeCloseTo(0.5 * parts[0]![o]! + 0.5 * parts[1]![o]!, 6));
    expect(parts[0]).not.toEqual(parts[1]); // the seeds differ
    expect(Array.from(p).indexOf(Math.max(...p))).toBe(1); // geo
    const dir = await tempDir();
    await writeMlpArtifact(dir, m, manifestFor(['strong', 'weak'], rows.vectors.length, { labels: [...labels] }));
    const ort = await OnnxMlp.load(dir);
    onTestFinished(() => ort.close());
    for (const v of rows.vectors.slice(0, 5)) {
      const js = m.predict(v);
      const rt = await ort.run(v);
      for (let i = 0; i < 3; i++) expect(rt[i]).toBeCloseTo(js[i]!, 5);
    }
    // Joint-outcome members do not classify (their table's rows are not distributions), and weights belong to classifiers.
    await expect(
      trainEnsemble([{ ...members[0]!, kind: 'joint', weight: 1 }], { X: rows.vectors, Y, slices: SLICES, output: 'softmax' }),
    ).rejects.toThrow(/'quality' and 'category-prior' members only/);
    await expect(trainEnsemble(MEMBERS, { X: rows.vectors, Y: rows.scores, slices: SLICES, sampleWeights })).rejects.toThrow(
      /softmax ensembles only/,
    );
  });

  it("centroid priors: k-means clusters, a softmax over them, each cluster's mean outcome; same in onnxruntime", async () => {
    const rows = makeRows(10, 2);
    const members: EnsembleMemberRecipe[] = [
      { input: 'all', kind: 'centroid-prior', clusters: 6, temperature: 0.05, seed: 3, weight: 0.6 },
      { input: 'all', kind: 'quality', mlp: { hidden: [], epochs: 20, lr: 0.02, batchSize: 8 }, seed: 1, weight: 0.4 },
    ];
    const m = await trainEnsemble(members, { X: rows.vectors, Y: rows.scores, slices: SLICES });
    const again = await trainEnsemble(members, { X: rows.vectors, Y: rows.scores, slices: SLICES });
    const prior = m.ensemble.parts[0]!;
    expect(prior.mlp.spec.outputDim).toBe(6);
    expect(prior.table).toEqual(again.ensemble.parts[0]!.table);
    // The strong model is always right, so every cluster's strong column is 1; weak columns lie in 0..1.
    for (let k = 0; k < 6; k++) {
      expect(prior.table![k * 2]).toBeCloseTo(1, 5);
      expect(prior.table![k * 2 + 1]! >= 0 && prior.table![k * 2 + 1]! <= 1).toBe(true);
    }
    const weak = (t: 'math' | 'geo') =>
      prior.mlp.predict(embedder.embedSync(prompt(t, 700))).reduce((s, a, k) => s + a * prior.table![k * 2 + 1]!, 0);
    expect(weak('math')).toBeLessThan(weak('geo'));
    await expectOnnxMatchesJs(m, rows.vectors);
    await expect(trainEnsemble([{ ...members[0]!, clusters: 1000 }], { X: rows.vectors, Y: rows.scores, slices: SLICES })).rejects.toThrow(
      /clusters must be/,
    );
    await expect(
      trainEnsemble([{ ...members[1]!, mlp: undefined, weight: 1 }], { X: rows.vectors, Y: rows.scores, slices: SLICES }),
    ).rejects.toThrow(/no mlp settings/);
  });

  it('needs categories for a category prior', async () => {
    const rows = makeRows(2, 2);
    await expect(trainEnsemble([MEMBERS[2]!], { X: rows.vectors, Y: rows.scores, slices: SLICES })).rejects.toThrow(/no categories/);
  });
});
