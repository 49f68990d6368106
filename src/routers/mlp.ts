// `mlp` router: a small perceptron trained by `signalman train`, stored as model.onnx, run with
// onnxruntime-node. One session per router, created at load; onnxruntime is imported lazily so a
// gateway without MLP routers never loads the native library.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { z } from 'zod';
import { ArtifactError, bindArtifact, checkEmbedding, columnOf, ONNX_FILE, readManifest, type ArtifactManifest } from './artifacts.js';
import { defineRouter, type CandidateScore, type Guard } from './types.js';

type Ort = typeof import('onnxruntime-node');

async function importOrt(): Promise<Ort> {
  try {
    return await import('onnxruntime-node');
  } catch (err) {
    throw new Error('the mlp router needs onnxruntime-node, which failed to load; reinstall it', { cause: err });
  }
}

/** A loaded MLP artifact: input 'x' [1, dim] -> output 'y' [1, outputs]. */
export class OnnxMlp {
  // onnxruntime-node reads the input on a later tick (run() defers through setImmediate), so one shared
  // input buffer would be overwritten by a concurrent call. A free list reuses buffers without that race.
  private readonly free: Array<{ buf: Float32Array; tensor: Tensor }> = [];

  private constructor(
    private readonly ort: Ort,
    private readonly session: InferenceSession,
    readonly dir: string,
    readonly manifest: ArtifactManifest,
    readonly inputDim: number,
    /** Column names of the output: `labels` for a classifier, else `models`. */
    readonly columns: readonly string[],
  ) {}

  static async load(dir: string): Promise<OnnxMlp> {
    const manifest = await readManifest(dir);
    if (manifest.format !== 'mlp') throw new ArtifactError(dir, 'format', `expected an 'mlp' artifact, got '${manifest.format}'`);
    let bytes: Buffer;
    try {
      bytes = await readFile(join(dir, ONNX_FILE));
    } catch (err) {
      throw new ArtifactError(dir, ONNX_FILE, 'cannot read the model file (missing?)', { cause: err });
    }
    const ort = await importOrt();
    let session: InferenceSession;
    try {
      session = await ort.InferenceSession.create(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
        // Tiny graphs: threads cost more in hand-off than they save, and cores belong to the server.
        intraOpNumThreads: 1,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      });
    } catch (err) {
      throw new ArtifactError(dir, ONNX_FILE, `not a valid ONNX model (${firstLine(err)}); rebuild the artifact`, { cause: err });
    }
    if (!session.inputNames.includes('x') || !session.outputNames.includes('y')) {
      await session.release();
      throw new ArtifactError(
        dir,
        ONNX_FILE,
        `expected input 'x' and output 'y', found inputs [${session.inputNames.join(', ')}] and outputs [${session.outputNames.join(', ')}]`,
      );
    }
    const columns = manifest.labels ?? manifest.models;
    const mlp = new OnnxMlp(ort, session, dir, manifest, manifest.embedder.dim, columns);
    // Probe once: proves the graph takes the manifest's input width and gives one output per column,
    // and warms the session so the first request does not pay for it.
    let probe: Float32Array;
    try {
      probe = await mlp.run(new Float32Array(mlp.inputDim));
    } catch (err) {
      await session.release();
      throw new ArtifactError(
        dir,
        ONNX_FILE,
        `does not accept a [1, ${mlp.inputDim}] input as the manifest's embedder.dim says (${firstLine(err)})`,
        { cause: err },
      );
    }
    if (probe.length !== columns.length) {
      await session.release();
      throw new ArtifactError(
        dir,
        ONNX_FILE,
        `gives ${probe.length} outputs, the manifest lists ${columns.length} ${manifest.labels ? 'labels' : 'models'}`,
      );
    }
    return mlp;
  }

  async run(x: Float32Array): Promise<Float32Array> {
    if (x.length !== this.inputDim) throw new Error(`MLP ${this.dir} expects ${this.inputDim} inputs, got ${x.length}`);
    const slot = this.free.pop() ?? this.newSlot();
    slot.buf.set(x);
    try {
      const out = await this.session.run({ x: slot.tensor });
      const y = out['y'];
      if (y === undefined || !(y.data instanceof Float32Array)) throw new Error(`MLP ${this.dir}: output 'y' is missing or not float32`);
      return y.data;
    } finally {
      this.free.push(slot);
    }
  }

  close(): Promise<void> {
    return this.session.release();
  }

  private newSlot(): { buf: Float32Array; tensor: Tensor } {
    const buf = new Float32Array(this.inputDim);
    return { buf, tensor: new this.ort.Tensor('float32', buf, [1, this.inputDim]) };
  }
}

function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err)
    .split('\n')[0]!
    .slice(0, 200);
}

export const MlpRouterOptions = z
  .object({
    type: z.literal('mlp'),
    artifact: z.string().min(1).describe('Folder of an mlp artifact (manifest.json + model.onnx), relative to the config file.'),
  })
  .strict()
  .describe('Predicted quality per model from a small perceptron trained by `signalman train` and run with onnxruntime.');

export default defineRouter({
  type: 'mlp',
  options: MlpRouterOptions,
  async create(opts, ctx) {
    const dir = ctx.resolvePath(opts.artifact);
    const mlp = await OnnxMlp.load(dir);
    if (mlp.manifest.labels) {
      await mlp.close();
      throw new ArtifactError(
        dir,
        'labels',
        `is a classifier over labels (${mlp.manifest.labels.join(', ')}), not a quality model; use it as rules.classifier or as a guard`,
      );
    }
    let columns: Map<string, number>;
    try {
      columns = bindArtifact(dir, mlp.manifest, ctx.embedder, ctx.candidates);
    } catch (err) {
      await mlp.close();
      throw err;
    }
    const asName = new Map(ctx.candidates.map((c) => [c.backend, c.as]));
    return {
      type: 'mlp',
      needsEmbedding: true,
      textOnly: true,
      async score(q): Promise<CandidateScore[]> {
        const y = await mlp.run(checkEmbedding(q.embedding, mlp.inputDim, 'mlp'));
        return q.candidates.map((backend) => {
          const col = columnOf(columns, backend, 'mlp');
          const p = y[col]!;
          return { backend, quality: p > 1 ? 1 : p > 0 ? p : 0, evidence: { model: asName.get(backend) ?? backend } };
        });
      },
      // A quality MLP has no domain head: its policy gets a guard from a classifier artifact (loadGuard).
      makeGuard: (): Guard | null => null,
      close: () => mlp.close(),
    };
  },
});
