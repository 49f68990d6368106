// A scoring thread (scoring-threads.ts): compiles the policies it serves from the config, then answers
// each text with the engine's own scoreText(). Nothing here is shared with the event loop's copies.
import { isAbsolute, resolve } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type { CachedEmbedder } from '../embedders/cache.js';
import { compilePolicy, type CompiledPolicy } from './compile.js';
import { scoreText } from './engine.js';
import type { ScoringWorkerData } from './scoring-threads.js';
import { BATCH_STRIDE, ScoredEncoder, toWire, type ScoreBatch, type ScoreReply, type ScoredWire } from './scoring-wire.js';
import type { RouteQuery } from './types.js';

const port = parentPort;
if (port === null) throw new Error('scoring.worker runs inside a worker thread');
const send = (m: ScoreReply): void => port.postMessage(m);

async function load(data: ScoringWorkerData): Promise<CompiledPolicy[]> {
  const resolvePath = (p: string) => (isAbsolute(p) ? p : resolve(data.baseDir, p));
  // Policies with equal embedder settings share one instance, as on the event loop. Without vector caches:
  // a text only gets here when the event loop's score cache missed it (text-only routers), so a cache
  // here would mostly hold vectors never asked for again, and each one kept outlives the young
  // generation (the 4352-d concat's are 17 KB): with them, V8's GC helper threads spent ~40 µs of CPU per
  // `expert` request at c=16, without ~11. Routers that read request metadata (rules with `when.meta`)
  // re-embed a repeated text here: the embedders served on threads take microseconds.
  const embedders = new Map<string, Promise<CachedEmbedder>>();
  const hold = (key: string, create: () => Promise<CachedEmbedder>) => {
    let e = embedders.get(key);
    if (e === undefined) embedders.set(key, (e = create()));
    return e;
  };
  const out: CompiledPolicy[] = [];
  for (const p of data.policies) out.push(await compilePolicy(p, resolvePath, hold, false));
  return out;
}

load(workerData as ScoringWorkerData).then(
  (policies) => {
    const wire = new ScoredEncoder();
    const NO_META: RouteQuery['meta'] = Object.freeze({});
    const one = (id: number, p: number, text: string, meta: RouteQuery['meta'] | null): Promise<ScoredWire> =>
      scoreText(policies[p]!, text, meta ?? NO_META).then(
        (r) => wire.encode(id, p, r),
        (e: unknown): ScoredWire => [id, p, null, toWire(e)],
      );
    // Each text is answered as soon as it is scored, one after the other, not with the rest of its batch:
    // a batch is every text of an event-loop turn (at c=16 often 8-16 of them), and answering them
    // together kept the event loop, the upstream and the clients idle until the last was scored (a
    // convoy). Now the event loop forwards the first request while the next text is scored.
    // One text at a time, batches in arrival order, even while a router awaits onnxruntime: the policies'
    // embedders write each vector over the last (compilePolicy with embedCache false).
    const queue: ScoreBatch[] = [];
    let draining = false;
    const drain = async (): Promise<void> => {
      draining = true;
      try {
        for (let batch = queue.shift(); batch !== undefined; batch = queue.shift()) {
          for (let i = 0; i < batch.length; i += BATCH_STRIDE) {
            const meta = batch[i + 3] as RouteQuery['meta'] | null;
            send(await one(batch[i] as number, batch[i + 1] as number, batch[i + 2] as string, meta));
          }
        }
      } finally {
        // A throw here (a reply that cannot be posted) ends this thread; never leave later batches unread.
        draining = false;
      }
    };
    port.on('message', (batch: ScoreBatch) => {
      queue.push(batch);
      if (!draining) void drain();
    });
    send({ kind: 'ready' });
  },
  (e: unknown) => send({ kind: 'init_error', message: e instanceof Error ? e.message : String(e) }),
);
