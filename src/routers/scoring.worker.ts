// A scoring thread (scoring-threads.ts): compiles the policies it serves from the config, then answers
// each text with the engine's own scoreText(). Nothing here is shared with the event loop's copies.
import { isAbsolute, resolve } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type { CachedEmbedder } from '../embedders/cache.js';
import { compilePolicy, type CompiledPolicy } from './compile.js';
import { scoreText } from './engine.js';
import { toWire, type ScoreReply, type ScoreRequest, type ScoreResult, type ScoringWorkerData } from './scoring-threads.js';

const port = parentPort;
if (port === null) throw new Error('scoring.worker runs inside a worker thread');
const send = (m: ScoreReply): void => port.postMessage(m);

async function load(data: ScoringWorkerData): Promise<CompiledPolicy[]> {
  const resolvePath = (p: string) => (isAbsolute(p) ? p : resolve(data.baseDir, p));
  // Policies with equal embedder settings share one instance, as on the event loop.
  const embedders = new Map<string, Promise<CachedEmbedder>>();
  const out: CompiledPolicy[] = [];
  for (const p of data.policies) {
    out.push(
      await compilePolicy(p, resolvePath, (key, create) => {
        let e = embedders.get(key);
        if (e === undefined) embedders.set(key, (e = create()));
        return e;
      }),
    );
  }
  return out;
}

load(workerData as ScoringWorkerData).then(
  (policies) => {
    const one = (m: ScoreRequest): Promise<ScoreResult> =>
      scoreText(policies[m.p]!, m.text, m.meta).then(
        (r) => ({ id: m.id, r }),
        (e: unknown) => ({ id: m.id, e: toWire(e) }),
      );
    // Answers a batch in one message (the on-thread stages settle within the same turn).
    port.on('message', (batch: ScoreRequest[]) => {
      void Promise.all(batch.map(one)).then((items) => send({ kind: 'scored', items }));
    });
    send({ kind: 'ready' });
  },
  (e: unknown) => send({ kind: 'init_error', message: e instanceof Error ? e.message : String(e) }),
);
