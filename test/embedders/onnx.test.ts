import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnx, { OnnxOptions } from '../../src/embedders/onnx.js';
import type { Embedder } from '../../src/embedders/types.js';
import { TINY_DIM, writeTinyOnnxModel } from './tiny-onnx-model.js';

// A tiny BERT-shaped model written at test time (tiny-onnx-model.ts) goes through the real
// @huggingface/transformers feature-extraction pipeline, offline, in a worker thread.

const cos = (a: Float32Array, b: Float32Array): number => a.reduce((s, x, i) => s + x * b[i]!, 0);

describe('onnx embedder', () => {
  let dir: string;
  let e: Embedder;
  const ctx = () => ({ resolvePath: (p: string) => join(dir, p) });
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'signalman-onnx-'));
    await writeTinyOnnxModel(join(dir, 'tiny'));
    e = await onnx.create(OnnxOptions.parse({ type: 'onnx', model_dir: 'tiny' }), ctx());
  }, 60_000);
  afterAll(async () => {
    await e?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('loads a local model folder and mean-pools unit vectors of its dimension', async () => {
    expect(e.dim).toBe(TINY_DIM);
    expect(e.id).toMatch(/^onnx\/v1\/tiny-[0-9a-f]{8}\/fp32\/mean\/d24\/m4096$/);
    const v = await e.embed('what is tort law');
    expect(Math.sqrt(cos(v, v))).toBeCloseTo(1, 5);
    // Mean pooling over [CLS] what is tort law [SEP]: word order does not matter, words do.
    expect(cos(v, await e.embed('law tort is what'))).toBeCloseTo(1, 5);
    expect(cos(v, await e.embed('python code'))).toBeLessThan(0.99);
  });

  it('gives the same vectors through embedMany (padded batch) as through embed', async () => {
    const texts = ['sort', 'how to sort a python list?', '', 'x'.repeat(5000)];
    const many = await e.embedMany(texts);
    for (let k = 0; k < texts.length; k++) {
      const one = await e.embed(texts[k]!);
      one.forEach((x, i) => expect(many[k]![i]).toBeCloseTo(x, 5));
    }
  });

  it('names the missing folder or file, and a dimension mismatch', async () => {
    await expect(onnx.create(OnnxOptions.parse({ type: 'onnx', model_dir: 'nope' }), ctx())).rejects.toThrow(
      /model_dir 'nope' \(resolved to .*nope\) does not exist/,
    );
    await expect(onnx.create(OnnxOptions.parse({ type: 'onnx', model_dir: 'tiny', dtype: 'q8' }), ctx())).rejects.toThrow(
      /lacks onnx\/model_quantized\.onnx \(onnx\/ has: model\.onnx/,
    );
    await expect(onnx.create(OnnxOptions.parse({ type: 'onnx', model_dir: 'tiny', dim: 384 }), ctx())).rejects.toThrow(
      /dimension 24, but dim is 384/,
    );
    await expect(onnx.create(OnnxOptions.parse({ type: 'onnx', model_dir: 'not a/hub id!', allow_remote: true }), ctx())).rejects.toThrow(
      /neither a local folder nor a hub id/,
    );
  });

  it('reports a corrupt model file as a load error, not a crash', async () => {
    const bad = join(dir, 'bad');
    await writeTinyOnnxModel(bad);
    await unlink(join(bad, 'onnx', 'model.onnx'));
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(bad, 'onnx', 'model.onnx'), 'not an onnx file');
    await expect(onnx.create(OnnxOptions.parse({ type: 'onnx', model_dir: 'bad' }), ctx())).rejects.toThrow(/embedder onnx\/v1\/bad/);
  }, 30_000);
});
