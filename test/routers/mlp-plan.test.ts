import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import concat, { ConcatOptions } from '../../src/embedders/concat.js';
import { knownNonZeros } from '../../src/embedders/common.js';
import { OnnxMlp } from '../../src/routers/mlp.js';
import { MlpPlan, readExportedGraph } from '../../src/routers/mlp-plan.js';
import { ONNX_FILE } from '../../src/routers/artifacts.js';
import { seededRandom } from '../../src/util/random.js';
import { embedder, makeClassifierArtifact, makeMlpArtifact, prompt, TOPICS } from './helpers.js';

// The trainer's graphs run in mlp-plan.ts, not onnxruntime: these tests hold the plan to onnxruntime
// on the shipped artifacts, to the trainer's own predict() bit for bit, and check that a graph the
// reader does not know stays with onnxruntime.

const { onnx } = onnxProto;
const ROUTERS = join(import.meta.dirname, '../../routers');
const SHIPPED_MLPS = [
  'p1-ensemble-static',
  'p2-ensemble-static-h256',
  'p2-ensemble-static',
  'p3-lex16k-static-fine-chat2',
  'p3-lex16k-static-lr-chat2',
  'p3-concat-static-mlp-lr-chat2',
  'p3-concat-static-mlp-lr-chat',
  'p3-concat-static-mlp-lr',
  'p3-concat-static-mlp-shapes',
  'p1-lexical-lr',
  'p2-use-lite-mlp',
  'p3-concat-mlp',
];

/** Unit vectors shaped like the embedders' output: a sparse hashed part and a dense part. */
function probes(dim: number, n: number, seed: number): Float32Array[] {
  const next = seededRandom(seed);
  return Array.from({ length: n }, () => {
    const x = new Float32Array(dim);
    const dense = dim <= 512 ? dim : 256;
    for (let i = 0; i < dim; i++) {
      if (i >= dim - dense || next() < 0.04) x[i] = next() * 2 - 1;
    }
    const norm = Math.hypot(...x);
    return x.map((v) => v / norm);
  });
}

async function onnxruntimeRun(dir: string): Promise<(x: Float32Array) => Promise<Float32Array>> {
  const session = await ort.InferenceSession.create(join(dir, ONNX_FILE));
  onTestFinished(() => session.release());
  return async (x) => (await session.run({ x: new ort.Tensor('float32', x, [1, x.length]) }))['y']!.data as Float32Array;
}

describe('mlp plan (the trainer graphs without onnxruntime)', () => {
  it.each(SHIPPED_MLPS)('runs shipped %s and agrees with onnxruntime on the same file', async (name) => {
    const dir = join(ROUTERS, name);
    const mlp = await OnnxMlp.load(dir);
    onTestFinished(() => mlp.close());
    expect(mlp.engine).toBe('plan');
    const rt = await onnxruntimeRun(dir);
    let worst = 0;
    for (const x of probes(mlp.inputDim, 50, 7)) {
      const a = await mlp.run(x);
      const b = await rt(x);
      expect(a.length).toBe(b.length);
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    }
    expect(worst).toBeLessThan(2e-6); // f64 here, f32 there
  });

  it("reads a concat vector's list of non-zeros instead of scanning it, with the same result", async () => {
    const mlp = await OnnxMlp.load(join(ROUTERS, 'p3-concat-static-mlp-shapes'));
    onTestFinished(() => mlp.close());
    const e = await concat.create(
      ConcatOptions.parse({ type: 'concat', members: [{ type: 'lexical', dim: 4096 }, { type: 'static' }], weights: [1, 1] }),
      { resolvePath: (p) => join(ROUTERS, p) },
    );
    onTestFinished(() => e.close());
    const texts = ['hi there!', 'What is a tort?', ...TOPICS.flatMap((t) => [0, 1, 2].map((i) => prompt(t, i)))];
    const vectors = await Promise.all(texts.map((t) => e.embed(t)));
    for (const v of vectors) expect(knownNonZeros(v)).toBeDefined();
    const listed: Float32Array[] = [];
    for (const v of vectors) listed.push(await mlp.run(v));
    for (let i = 0; i < vectors.length; i++) {
      const plain = Float32Array.from(vectors[i]!); // the same values, no list: scanned
      expect(knownNonZeros(plain)).toBeUndefined();
      expect(await mlp.run(plain)).toEqual(listed[i]);
    }
  });

  it('computes each prompt afresh when a scoring thread rewrites one vector buffer, and once for guard and classifier', async () => {
    const mlp = await OnnxMlp.load(join(ROUTERS, 'p3-concat-static-mlp-shapes'));
    onTestFinished(() => mlp.close());
    const opts = ConcatOptions.parse({ type: 'concat', members: [{ type: 'lexical', dim: 4096 }, { type: 'static' }], weights: [1, 1] });
    const resolvePath = (p: string) => join(ROUTERS, p);
    const [fresh, reusing] = await Promise.all([
      concat.create(opts, { resolvePath }),
      concat.create(opts, { resolvePath, reuseVectors: true }),
    ]);
    onTestFinished(() => Promise.all([fresh.close(), reusing.close()]).then(() => undefined));
    const texts = ['What is a tort?', 'hi', ...TOPICS.flatMap((t) => [0, 1].map((i) => prompt(t, i)))];
    const want: Float32Array[] = [];
    for (const t of texts) want.push(await mlp.run(await fresh.embed(t)));
    const runs = vi.spyOn(MlpPlan.prototype, 'run');
    onTestFinished(() => runs.mockRestore());
    const buffer = await reusing.embed('warm-up');
    for (const [k, t] of texts.entries()) {
      const v = await reusing.embed(t);
      expect(v).toBe(buffer); // the same array, rewritten: a memo by identity alone would answer the last prompt
      expect(await mlp.run(v), t).toEqual(want[k]);
      expect(await mlp.run(v), t).toEqual(want[k]); // the classifier after the guard
    }
    expect(runs).toHaveBeenCalledTimes(texts.length);
  });

  it("gives a plain MLP's predict() bit for bit (sigmoid and tanh/softmax)", async () => {
    const { dir, mlp: trained } = await makeMlpArtifact(3);
    const plain = await OnnxMlp.load(dir);
    onTestFinished(() => plain.close());
    expect(plain.engine).toBe('plan');
    for (const t of TOPICS) {
      for (let i = 0; i < 5; i++) {
        const x = embedder.embedSync(prompt(t, 100 + i));
        expect(await plain.run(x)).toEqual(trained.predict(x));
      }
    }
    const c = await makeClassifierArtifact();
    const cls = await OnnxMlp.load(c.dir);
    onTestFinished(() => cls.close());
    expect(cls.engine).toBe('plan');
    expect(Array.from(await cls.run(embedder.embedSync('weather tomorrow')))).toHaveLength(c.labels.length);
  });

  it('leaves a graph it does not know to onnxruntime, which still answers', async () => {
    const { dir, mlp: trained } = await makeMlpArtifact(2);
    // An Identity node before 'y': valid ONNX, not a shape the trainer writes.
    const file = join(dir, ONNX_FILE);
    const model = onnx.ModelProto.decode(await readFile(file));
    const g = model.graph!;
    const last = g.node![g.node!.length - 1]!;
    last.output = ['y_pre'];
    g.node!.push(onnx.NodeProto.create({ name: 'id', opType: 'Identity', input: ['y_pre'], output: ['y'] }));
    const bytes = onnx.ModelProto.encode(model).finish();
    await writeFile(file, bytes);
    expect(readExportedGraph(bytes)).toMatch(/Identity 'id': an operator this reader does not run/);
    const m = await OnnxMlp.load(dir);
    onTestFinished(() => m.close());
    expect(m.engine).toBe('onnxruntime');
    const x = embedder.embedSync(prompt('geo', 3));
    const y = await m.run(x);
    const want = trained.predict(x);
    for (let i = 0; i < y.length; i++) expect(y[i]).toBeCloseTo(want[i]!, 5);
  });

  it('shares one instance per artifact until the last holder closes, and computes a repeated input once', async () => {
    const { dir } = await makeMlpArtifact(2);
    const a = await OnnxMlp.load(dir);
    const b = await OnnxMlp.load(dir);
    expect(b).toBe(a);
    const x = embedder.embedSync(prompt('code', 1));
    const runs = vi.spyOn(MlpPlan.prototype, 'run');
    onTestFinished(() => runs.mockRestore());
    const first = await a.run(x);
    const again = await b.run(x); // expert's guard and classifier: one vector, one computation
    expect(runs).toHaveBeenCalledTimes(1);
    expect(again).toEqual(first);
    again[0] = 42; // callers get their own copy
    expect((await a.run(x))[0]).toBe(first[0]);
    expect(runs).toHaveBeenCalledTimes(1);
    // Remembered by reference (vectors are never mutated once handed out): equal values in another array
    // are computed again, to the same result.
    expect(await a.run(Float32Array.from(x))).toEqual(first);
    expect(runs).toHaveBeenCalledTimes(2);
    await a.close();
    expect(await b.run(x)).toEqual(first); // still open for b
    await b.close();
    const c = await OnnxMlp.load(dir);
    onTestFinished(() => c.close());
    expect(c).not.toBe(a); // the last close released it
    expect(await c.run(x)).toEqual(first);
  });

  it('loads a retrained file afresh instead of sharing the old instance', async () => {
    const { dir } = await makeMlpArtifact(2);
    const a = await OnnxMlp.load(dir);
    onTestFinished(() => a.close());
    // Retrained in place: here, the output bias of the first column flips its sign.
    const model = onnx.ModelProto.decode(await readFile(join(dir, ONNX_FILE)));
    const b1 = model.graph!.initializer!.find((t) => t.name === 'b1')!;
    b1.rawData![3] = b1.rawData![3]! ^ 0x80;
    await writeFile(join(dir, ONNX_FILE), onnx.ModelProto.encode(model).finish());
    const b = await OnnxMlp.load(dir);
    onTestFinished(() => b.close());
    expect(b).not.toBe(a);
    const x = embedder.embedSync(prompt('math', 2));
    expect(await b.run(x)).not.toEqual(await a.run(x));
  });
});
