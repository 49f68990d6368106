import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import mlpRouter, { OnnxMlp } from '../../src/routers/mlp.js';
import { makeMlp, trainMlp } from '../../src/training/mlp-train.js';
import { writeMlpArtifact } from '../../src/training/onnx-export.js';
import {
  candidatesFor,
  ctxFor,
  embedder,
  makeClassifierArtifact,
  makeMlpArtifact,
  makeRows,
  manifestFor,
  prompt,
  tempDir,
  trainQualityMlp,
} from './helpers.js';

async function load(dir: string): Promise<OnnxMlp> {
  const m = await OnnxMlp.load(dir);
  onTestFinished(() => m.close());
  return m;
}

describe('trainMlp', () => {
  it('is deterministic given a seed, and the seed matters', async () => {
    const rows = makeRows(6, 2);
    const opts = { hidden: [8, 4], output: 'sigmoid' as const, epochs: 5, lr: 0.01, batchSize: 4, dropout: 0.2, l2: 1e-4 };
    const a = await trainMlp(rows.vectors, rows.scores, { ...opts, seed: 1 });
    const b = await trainMlp(rows.vectors, rows.scores, { ...opts, seed: 1 });
    const c = await trainMlp(rows.vectors, rows.scores, { ...opts, seed: 2 });
    expect(a.weights).toEqual(b.weights);
    expect(a.weights[0]!.W).not.toEqual(c.weights[0]!.W);
  });

  it('learns the synthetic task: the weak model fails math, passes code', async () => {
    const losses: number[] = [];
    const rows = makeRows(12, 2);
    const m = await trainMlp(rows.vectors, rows.scores, {
      hidden: [16],
      output: 'sigmoid',
      epochs: 60,
      lr: 0.01,
      batchSize: 8,
      seed: 7,
      onEpoch: (_e, l) => losses.push(l),
    });
    expect(losses).toHaveLength(60);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! / 4);
    expect(m.predict(embedder.embedSync(prompt('math', 321)))[1]).toBeLessThan(0.2);
    expect(m.predict(embedder.embedSync(prompt('code', 322)))[1]).toBeGreaterThan(0.8);
  });

  it('honours sample weights: zero-weight rows teach nothing, unit weights change nothing', async () => {
    const rows = makeRows(6, 2);
    const y = rows.scores.map((s) => Float32Array.of(s[1]!)); // the weak model: 0 on math, 1 elsewhere
    const flipped = y.map((s) => Float32Array.of(1 - s[0]!));
    const opts = { hidden: [8], output: 'sigmoid' as const, epochs: 30, lr: 0.01, batchSize: 4, seed: 1 };
    const plain = await trainMlp(rows.vectors, y, opts);
    const ones = await trainMlp(rows.vectors, y, { ...opts, sampleWeights: new Float32Array(y.length).fill(1) });
    expect(ones.weights).toEqual(plain.weights);
    // Every row twice, once with the opposite label: unweighted, the labels cancel out (about 0.5);
    // with the flipped copies weighted 0 the model still learns the real labels.
    const weights = Float32Array.from([...y.map(() => 1), ...y.map(() => 0)]);
    const weighted = await trainMlp([...rows.vectors, ...rows.vectors], [...y, ...flipped], { ...opts, sampleWeights: weights });
    const unweighted = await trainMlp([...rows.vectors, ...rows.vectors], [...y, ...flipped], opts);
    const math = embedder.embedSync(prompt('math', 77));
    const geo = embedder.embedSync(prompt('geo', 77));
    expect(weighted.predict(math)[0]).toBeLessThan(0.25);
    expect(weighted.predict(geo)[0]).toBeGreaterThan(0.75);
    expect(Math.abs(unweighted.predict(math)[0]! - 0.5)).toBeLessThan(0.15);
  });

  it('rejects bad training input with a clear message', async () => {
    const opts = { hidden: [4], output: 'sigmoid' as const, epochs: 1, lr: 0.01, batchSize: 4, seed: 1 };
    await expect(trainMlp([], [], opts)).rejects.toThrow(/no training rows/);
    await expect(trainMlp([Float32Array.of(1, 2)], [Float32Array.of(3)], opts)).rejects.toThrow(/0\.\.1/);
    await expect(trainMlp([Float32Array.of(1, 2), Float32Array.of(1)], [Float32Array.of(1), Float32Array.of(0)], opts)).rejects.toThrow(
      /input 1 has length 1/,
    );
  });
});

describe('ONNX export', () => {
  it('gives the same predictions in JS and in onnxruntime (sigmoid/relu and softmax/tanh, deep)', async () => {
    const rows = makeRows(4, 3);
    for (const spec of [
      { hidden: [16], output: 'sigmoid' as const, activation: 'relu' as const, Y: rows.scores },
      {
        hidden: [12, 6],
        output: 'softmax' as const,
        activation: 'tanh' as const,
        Y: rows.topics.map((t) => Float32Array.from(['math', 'geo', 'code'], (l) => (l === t ? 1 : 0))),
      },
    ]) {
      const m = await trainMlp(rows.vectors, spec.Y, { ...spec, epochs: 3, lr: 0.01, batchSize: 4, seed: 11 });
      const dir = await tempDir();
      const labels = spec.output === 'softmax' ? { labels: ['math', 'geo', 'code'] } : {};
      await writeMlpArtifact(dir, m, manifestFor(['a', 'b', 'c'], rows.vectors.length, labels));
      const ort = await load(dir);
      for (const x of rows.vectors) {
        const js = m.predict(x);
        const rt = await ort.run(x);
        expect(rt.length).toBe(3);
        for (let i = 0; i < 3; i++) expect(rt[i]).toBeCloseTo(js[i]!, 5);
      }
    }
  });

  it('keeps concurrent runs apart (pooled input buffers)', async () => {
    const { dir, mlp, rows } = await makeMlpArtifact(2);
    const ort = await load(dir);
    const outs = await Promise.all(rows.vectors.map((x) => ort.run(x)));
    outs.forEach((o, i) => expect(o[1]).toBeCloseTo(mlp.predict(rows.vectors[i]!)[1]!, 5));
  });

  it('refuses a corrupt model file, a graph of the wrong width and a mismatched manifest', async () => {
    const { dir } = await makeMlpArtifact(2);
    const bytes = await readFile(join(dir, 'model.onnx'));
    await writeFile(join(dir, 'model.onnx'), bytes.subarray(0, 40));
    await expect(OnnxMlp.load(dir)).rejects.toThrow(/model\.onnx.*not a valid ONNX model/);
    await writeFile(join(dir, 'model.onnx'), bytes);
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
    await writeFile(join(dir, 'manifest.json'), JSON.stringify({ ...manifest, embedder: { ...manifest.embedder, dim: 32 } }));
    await expect(OnnxMlp.load(dir)).rejects.toThrow(/does not accept a \[1, 32\] input/);
    await writeFile(join(dir, 'manifest.json'), JSON.stringify({ ...manifest, models: ['x', 'y', 'z'] }));
    await expect(OnnxMlp.load(dir)).rejects.toThrow(/gives 2 outputs, the manifest lists 3 models/);
    await writeFile(join(dir, 'manifest.json'), JSON.stringify({ ...manifest, version: 2 }));
    await expect(OnnxMlp.load(dir)).rejects.toThrow(/\(version\)/);
  });

  it('refuses to write an artifact whose outputs do not match the manifest', async () => {
    const m = makeMlp({ inputDim: 4, hidden: [], outputDim: 2, activation: 'relu', output: 'sigmoid' }, [
      { W: new Float32Array(8), b: new Float32Array(2) },
    ]);
    const dir = await tempDir();
    const base = manifestFor(['a', 'b'], 1);
    await expect(writeMlpArtifact(dir, m, base)).rejects.toThrow(/takes 4 inputs.*embedder\.dim is 64/);
    await expect(writeMlpArtifact(dir, m, { ...base, embedder: { id: 'x', dim: 4 }, models: ['a'] })).rejects.toThrow(
      /2 outputs.*1 models/,
    );
  });
});

describe('mlp router', () => {
  it('scores each candidate through its trained column', async () => {
    const { dir, mlp } = await makeMlpArtifact(2);
    // Candidates listed in the opposite order to the artifact's columns.
    const router = await mlpRouter.create(
      { type: 'mlp', artifact: dir },
      ctxFor([
        { backend: 'cheap', as: 'weak' },
        { backend: 'big', as: 'strong' },
      ]),
    );
    onTestFinished(() => router.close?.());
    const text = prompt('math', 444);
    const e = embedder.embedSync(text);
    const s = await router.score({ text, embedding: e, candidates: ['cheap', 'big'], meta: {} });
    const want = mlp.predict(e);
    expect(s.map((x) => x.backend)).toEqual(['cheap', 'big']);
    expect(s[0]!.quality).toBeCloseTo(want[1]!, 5);
    expect(s[1]!.quality).toBeCloseTo(want[0]!, 5);
    expect(s[0]!.quality).toBeLessThan(s[1]!.quality);
    await expect(router.score({ text, embedding: new Float32Array(10), candidates: ['big'], meta: {} })).rejects.toThrow(
      /64-dimensional embedding, got 10/,
    );
    await expect(router.score({ text, embedding: null, candidates: ['big'], meta: {} })).rejects.toThrow(/needs an embedding/);
  });

  it('refuses a classifier artifact and unknown candidates', async () => {
    const { dir } = await makeClassifierArtifact();
    await expect(mlpRouter.create({ type: 'mlp', artifact: dir }, ctxFor(candidatesFor(2)))).rejects.toThrow(/classifier over labels/);
    const q = await trainQualityMlp(2, 3);
    const d2 = await tempDir();
    await writeMlpArtifact(d2, q.mlp, manifestFor(['strong', 'weak'], q.rows.vectors.length));
    await expect(mlpRouter.create({ type: 'mlp', artifact: d2 }, ctxFor([{ backend: 'x', as: 'gpt-5' }]))).rejects.toThrow(
      /'x' is known as 'gpt-5'/,
    );
  });
});
