// `mlp` router: a small perceptron trained by `signalman train`, stored as model.onnx. The graphs the
// trainer writes run in mlp-plan.ts (sparse first layer in wasm, no onnxruntime call per request) once
// onnxruntime-node has loaded the same file and both agreed on probe inputs; any other graph runs in
// onnxruntime. onnxruntime is imported lazily so a gateway without MLP routers never loads the native
// library.
import { readFile } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { z } from 'zod';
import { ArtifactError, bindArtifact, checkEmbedding, columnOf, ONNX_FILE, readManifest, type ArtifactManifest } from './artifacts.js';
import { defineRouter, type CandidateScore, type Guard } from './types.js';
import { MlpPlan, readExportedGraph } from './mlp-plan.js';
import { vectorRewrites } from '../embedders/common.js';
import { seededRandom } from '../util/random.js';

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

  /** What runs it: mlp-plan.ts, or onnxruntime for a graph that reader does not know. */
  readonly engine: 'plan' | 'onnxruntime';

  private constructor(
    private readonly ort: Ort,
    private session: InferenceSession | null,
    private readonly plan: MlpPlan | null,
    readonly dir: string,
    readonly manifest: ArtifactManifest,
    readonly inputDim: number,
    /** Column names of the output: `labels` for a classifier, else `models`. */
    readonly columns: readonly string[],
    private readonly bytes: Buffer,
  ) {
    this.engine = plan === null ? 'onnxruntime' : 'plan';
  }

  /** Holders of this instance (load() shares one per artifact; close() releases it with the last one). */
  private refs = 1;
  /**
   * The last input and its output: a guard and a classifier reading one artifact run it once a request.
   * Held by reference, not copied: a copy plus a compare of expert's 16,640-wide vector cost more than the
   * regression itself. A vector changes only when an embedder rewrites its buffer (a scoring thread,
   * embedders/common.ts), and then the rewrite count has moved on.
   */
  private lastX: Float32Array | null = null;
  private lastY: Float32Array | null = null;
  private lastRewrites = 0;

  /**
   * The artifact in `dir`, run by mlp-plan.ts or onnxruntime. Loads of the same folder with the same
   * model bytes share one instance (expert's guard and classifier are one artifact), until all close.
   */
  static load(dir: string): Promise<OnnxMlp> {
    const key = resolvePath(dir);
    const held = loaded.get(key);
    if (held !== undefined) {
      return held.then(async (m) => {
        // The file may have been retrained in place since (a reload must see the new one).
        if (m.refs > 0 && (await readFile(join(dir, ONNX_FILE))).equals(m.bytes)) {
          m.refs++;
          return m;
        }
        return OnnxMlp.fresh(dir, key);
      });
    }
    return OnnxMlp.fresh(dir, key);
  }

  private static fresh(dir: string, key: string): Promise<OnnxMlp> {
    const p = OnnxMlp.open(dir);
    loaded.set(key, p);
    p.catch(() => {
      if (loaded.get(key) === p) loaded.delete(key);
    });
    return p;
  }

  private static async open(dir: string): Promise<OnnxMlp> {
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
    const ortMlp = new OnnxMlp(ort, session, null, dir, manifest, manifest.embedder.dim, columns, bytes);
    // Probe once: proves the graph takes the manifest's input width and gives one output per column,
    // and warms the session so the first request does not pay for it.
    let probe: Float32Array;
    try {
      probe = await ortMlp.run(new Float32Array(ortMlp.inputDim));
    } catch (err) {
      await session.release();
      throw new ArtifactError(
        dir,
        ONNX_FILE,
        `does not accept a [1, ${ortMlp.inputDim}] input as the manifest's embedder.dim says (${firstLine(err)})`,
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
    const graph = readExportedGraph(bytes);
    const plan = typeof graph === 'string' || graph.inputDim !== ortMlp.inputDim ? null : MlpPlan.create(graph);
    if (plan === null || !(await agrees(plan, ortMlp))) return ortMlp;
    await session.release();
    return new OnnxMlp(ort, null, plan, dir, manifest, manifest.embedder.dim, columns, bytes);
  }

  async run(x: Float32Array): Promise<Float32Array> {
    if (x.length !== this.inputDim) throw new Error(`MLP ${this.dir} expects ${this.inputDim} inputs, got ${x.length}`);
    const rewrites = vectorRewrites();
    if (x === this.lastX && this.lastY !== null && rewrites === this.lastRewrites) return this.lastY.slice();
    const y = this.plan !== null ? this.plan.run(x) : await this.runOrt(this.session!, x);
    this.lastX = x;
    this.lastY = y.slice();
    this.lastRewrites = rewrites;
    return y;
  }

  private async runOrt(session: InferenceSession, x: Float32Array): Promise<Float32Array> {
    const slot = this.free.pop() ?? this.newSlot();
    slot.buf.set(x);
    try {
      const out = await session.run({ x: slot.tensor });
      const y = out['y'];
      if (y === undefined || !(y.data instanceof Float32Array)) throw new Error(`MLP ${this.dir}: output 'y' is missing or not float32`);
      return y.data;
    } finally {
      this.free.push(slot);
    }
  }

  async close(): Promise<void> {
    if (this.refs <= 0 || --this.refs > 0) return;
    const key = resolvePath(this.dir);
    const entry = loaded.get(key);
    void entry?.then((m) => {
      if (m === this && loaded.get(key) === entry) loaded.delete(key);
    });
    const s = this.session;
    this.session = null;
    if (s !== null) await s.release();
  }

  private newSlot(): { buf: Float32Array; tensor: Tensor } {
    const buf = new Float32Array(this.inputDim);
    return { buf, tensor: new this.ort.Tensor('float32', buf, [1, this.inputDim]) };
  }
}

/** Loaded artifacts by folder (see OnnxMlp.load). */
const loaded = new Map<string, Promise<OnnxMlp>>();

/**
 * The plan computes what onnxruntime computes from the same file: on the zero vector and on seeded dense
 * and sparse (hashed-n-gram-like) inputs, every output within 1e-5 (f64 here, f32 there: ~1e-7 apart).
 */
async function agrees(plan: MlpPlan, ortMlp: OnnxMlp): Promise<boolean> {
  const next = seededRandom(20261206);
  const n = ortMlp.inputDim;
  for (let k = 0; k < 9; k++) {
    const x = new Float32Array(n);
    if (k > 0) for (let i = 0; i < n; i++) x[i] = k % 2 === 0 || next() < 0.05 ? next() * 2 - 1 : 0;
    const norm = Math.hypot(...x) || 1; // embeddings are unit vectors
    for (let i = 0; i < n; i++) x[i] = x[i]! / norm;
    const a = plan.run(x);
    const b = await ortMlp.run(x);
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!(Math.abs(a[i]! - b[i]!) <= 1e-5)) return false;
  }
  return true;
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
