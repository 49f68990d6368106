import { serveWorkerModel } from './worker-pool.js';

// Runs inside a worker thread (see onnx.ts). transformers' `env` is per module instance, hence per
// worker: setting it here affects no other embedder.

export interface OnnxWorkerData {
  /** Parent folder of a local model (env.localModelPath), or null for a hub id. */
  root: string | null;
  /** Folder name under root, or the hub id. */
  model: string;
  allowRemote: boolean;
  dtype: string;
  pooling: 'mean' | 'cls' | 'last_token';
  threads: number;
}

serveWorkerModel(async (raw) => {
  const d = raw as OnnxWorkerData;
  const { pipeline, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = d.allowRemote;
  env.allowLocalModels = d.root !== null;
  if (d.root !== null) env.localModelPath = d.root.endsWith('/') ? d.root : `${d.root}/`;
  env.useBrowserCache = false;
  env.useFSCache = d.allowRemote; // a local model needs no cache copy
  const extractor = await pipeline('feature-extraction', d.model, {
    dtype: d.dtype as 'fp32',
    device: 'cpu',
    local_files_only: !d.allowRemote,
    session_options: { intraOpNumThreads: d.threads, interOpNumThreads: 1 },
  });
  const run = async (texts: string[]): Promise<Float32Array[]> => {
    const out = await extractor(texts, { pooling: d.pooling, normalize: true });
    const [rows, dim] = out.dims;
    if (out.dims.length !== 2 || rows !== texts.length || dim === undefined)
      throw new Error(`the model answered a tensor of shape [${out.dims.join(', ')}], expected [${texts.length}, dim]`);
    const flat = out.data as Float32Array;
    const res: Float32Array[] = [];
    for (let k = 0; k < rows; k++) {
      const v = flat.slice(k * dim, (k + 1) * dim);
      let s = 0;
      for (let i = 0; i < dim; i++) s += v[i]! * v[i]!;
      // A tokenizer without [CLS]/[SEP] gives no token for '' and mean pooling divides by zero.
      if (!(s > 0.5 && s < 1.5)) throw new Error(`the model gave no usable vector for text ${k} (is it empty?)`);
      res.push(v);
    }
    return res;
  };
  const probe = await run(['probe']);
  return { dim: probe[0]!.length, embedBatch: run };
});
