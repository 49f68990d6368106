// Online learning without Redis (one process): embeddings awaiting feedback in a bounded map per policy
// (oldest dropped first, expired on read), learned rows in a bounded list per policy so a config reload
// can replay them into the new router. Nothing survives a restart and nothing is shared between replicas.
import type { LearnedEntry } from './learn-keys.js';
import { Lru } from '../util/lru.js';

interface Kept {
  embedding: Float32Array;
  expires: number;
}

export class MemoryLearnStore {
  /** Policy -> request id -> embedding, oldest first (read with peek, so the order stays insertion order). */
  private readonly pending = new Map<string, Lru<string, Kept>>();
  private readonly rows = new Map<string, LearnedEntry[]>();
  private seq = 0;
  remembered = 0;

  remember(policy: string, requestId: string, embedding: Float32Array, o: { ttlS: number; maxPending: number }, now = Date.now()): void {
    let kept = this.pending.get(policy);
    // Bounded by hand below: max_pending may change with a reload while the store lives on.
    if (kept === undefined) this.pending.set(policy, (kept = new Lru(Number.MAX_SAFE_INTEGER)));
    for (let id = kept.oldest(); id !== undefined; id = kept.oldest()) {
      // Drop the expired and, past the bound, the oldest: both sit at the front.
      if ((kept.peek(id) as Kept).expires > now && kept.size < o.maxPending) break;
      kept.delete(id);
    }
    kept.set(requestId, { embedding: Float32Array.from(embedding), expires: now + o.ttlS * 1000 });
    this.remembered++;
  }

  embedding(policy: string, requestId: string, now = Date.now()): Float32Array | null {
    const k = this.pending.get(policy)?.peek(requestId);
    return k === undefined || k.expires <= now ? null : k.embedding;
  }

  /** Keeps a learned row (at most maxRows per policy, oldest dropped) and returns it with its id. */
  append(policy: string, maxRows: number, backend: string, score: number, embedding: Float32Array): LearnedEntry {
    let list = this.rows.get(policy);
    if (list === undefined) this.rows.set(policy, (list = []));
    // Ids in stream-id form so one comparison (learn-keys.ts compareIds) orders both stores.
    const entry: LearnedEntry = { id: `${++this.seq}-0`, row: { embedding, scores: new Map([[backend, score]]) } };
    list.push(entry);
    if (list.length > maxRows) list.splice(0, list.length - maxRows);
    return entry;
  }

  readAll(policy: string): LearnedEntry[] {
    return [...(this.rows.get(policy) ?? [])];
  }
}
