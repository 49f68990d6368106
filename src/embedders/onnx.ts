import { z } from 'zod';
import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { defineEmbedder, type Embedder, type EmbedderContext } from './types.js';
import { cacheSizeOption, maxCharsOption, maxQueueOption } from './common.js';
import { hashText32 } from '../util/hash.js';
import { pooledEmbedder, WorkerPool, workerFileFor } from './worker-pool.js';
import type { OnnxWorkerData } from './onnx.worker.js';

// Any ONNX sentence-embedding model (all-MiniLM-L6-v2, bge-small, e5...) through the
// @huggingface/transformers feature-extraction pipeline, in worker threads like use-lite. Local
// folders only unless allow_remote: a gateway must not download at run time by surprise.

const DTYPE_FILES = {
  fp32: 'model.onnx',
  fp16: 'model_fp16.onnx',
  q8: 'model_quantized.onnx',
  int8: 'model_int8.onnx',
  uint8: 'model_uint8.onnx',
  q4: 'model_q4.onnx',
  q4f16: 'model_q4f16.onnx',
  bnb4: 'model_bnb4.onnx',
} as const;
type Dtype = keyof typeof DTYPE_FILES;
const DTYPES = Object.keys(DTYPE_FILES) as [Dtype, ...Dtype[]];

export const OnnxOptions = z
  .object({
    type: z.literal('onnx'),
    model_dir: z
      .string()
      .min(1)
      .default('models/all-MiniLM-L6-v2')
      .describe(
        'Folder with config.json, tokenizer.json, tokenizer_config.json and onnx/model*.onnx (relative to the config file); a Hugging Face hub id only with allow_remote.',
      ),
    allow_remote: z
      .boolean()
      .default(false)
      .describe('Allow downloading model_dir as a hub id when it is not a local folder (needs network).'),
    dtype: z.enum(DTYPES).default('fp32').describe('Weights to load: fp32 = onnx/model.onnx, q8 = onnx/model_quantized.onnx, ...'),
    pooling: z.enum(['mean', 'cls', 'last_token']).default('mean').describe('How token vectors become one sentence vector.'),
    dim: z
      .number()
      .int()
      .min(1)
      .max(65_536)
      .optional()
      .describe('Expected dimension; the model is checked against it at load (default: whatever the model gives).'),
    workers: z.number().int().min(1).max(16).default(1).describe('Worker threads, each with its own ONNX session.'),
    threads: z.number().int().min(1).max(64).default(1).describe('ONNX Runtime intra-op threads per worker.'),
    batch_window_ms: z.number().min(0).max(100).default(2).describe('How long an embed() call waits for others to share one model call.'),
    max_batch: z.number().int().min(1).max(512).default(16).describe('Most texts in one model call.'),
    max_chars: maxCharsOption(4096),
    cache_size: cacheSizeOption,
    max_queue: maxQueueOption,
  })
  .strict();
export type OnnxOptions = z.infer<typeof OnnxOptions>;

const exists = (p: string) =>
  stat(p).then(
    (s) => s,
    () => null,
  );

/** Checks a local model folder up front, so a typo is one clear error rather than a worker stack trace. */
async function inspectLocal(dir: string, o: OnnxOptions): Promise<string> {
  const where = `embedder onnx: model_dir '${o.model_dir}' (resolved to ${dir})`;
  const st = await exists(dir);
  if (!st) throw new Error(`${where} does not exist; download the model folder there, or set allow_remote: true to use a hub id`);
  if (!st.isDirectory()) throw new Error(`${where} is not a folder`);
  const want = ['config.json', 'tokenizer.json', 'tokenizer_config.json', join('onnx', DTYPE_FILES[o.dtype])];
  const missing: string[] = [];
  const sizes: number[] = [];
  for (const f of want) {
    const s = await exists(join(dir, f));
    if (!s) missing.push(f);
    else sizes.push(s.size);
  }
  if (missing.length > 0) {
    const onnxFiles = await readdir(join(dir, 'onnx')).catch(() => [] as string[]);
    throw new Error(
      `${where} lacks ${missing.join(', ')}` +
        (onnxFiles.length > 0 ? ` (onnx/ has: ${onnxFiles.join(', ')}; pick dtype accordingly)` : ''),
    );
  }
  // A fingerprint in the id: two different models in folders of the same name must not share artifacts.
  const config = await readFile(join(dir, 'config.json'), 'utf8');
  return (hashText32(`${config}|${sizes.join(',')}`) >>> 0).toString(16).padStart(8, '0');
}

export async function createOnnxEmbedder(o: OnnxOptions, ctx: EmbedderContext): Promise<Embedder> {
  const local = resolve(ctx.resolvePath(o.model_dir));
  const isLocal = !o.allow_remote || (await exists(local)) !== null;
  let name: string;
  let data: OnnxWorkerData;
  const common = { dtype: o.dtype, pooling: o.pooling, threads: o.threads };
  if (isLocal) {
    const fp = await inspectLocal(local, o);
    name = `${basename(local)}-${fp}`;
    data = { ...common, root: dirname(local), model: basename(local), allowRemote: false };
  } else {
    if (!/^[\w.-]+\/[\w.-]+$/.test(o.model_dir))
      throw new Error(`embedder onnx: model_dir '${o.model_dir}' is neither a local folder nor a hub id like 'owner/name'`);
    name = o.model_dir;
    data = { ...common, root: null, model: o.model_dir, allowRemote: true };
  }
  const idBase = `onnx/v1/${name}/${o.dtype}/${o.pooling}`;
  const pool = new WorkerPool({
    name: `embedder ${idBase}`,
    ...workerFileFor(import.meta.url, 'onnx.worker'),
    workerData: data,
    size: o.workers,
    batchWindowMs: o.batch_window_ms,
    maxBatch: o.max_batch,
    maxQueue: o.max_queue,
  });
  let dim: number;
  try {
    dim = await pool.ready();
    if (o.dim !== undefined && o.dim !== dim)
      throw new Error(`embedder ${idBase}: the model gives vectors of dimension ${dim}, but dim is ${o.dim}`);
  } catch (e) {
    await pool.close();
    throw e;
  }
  return pooledEmbedder(pool, `${idBase}/d${dim}/m${o.max_chars}`, dim, o.max_chars);
}

export default defineEmbedder({
  type: 'onnx',
  options: OnnxOptions,
  create: (opts, ctx) => createOnnxEmbedder(opts, ctx),
});
