// Online learning's Redis side (keys: learn-keys.ts). Embeddings awaiting feedback are written in batches,
// one pipeline per batch, never on the request path and never queued while Redis is down (dropped and
// counted instead). Learned rows go to one capped stream per policy, which a dedicated blocking
// connection tails with XREAD BLOCK, so rows written by any replica reach every replica.
import { Cluster } from 'ioredis';
import type { RedisClient } from '../telemetry/redis-client.js';
import { compareIds, decodeEntry, embeddingBytes, entryFields, learnKeys, type LearnedEntry, type LearnKeys } from './learn-keys.js';

export interface LearnLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Embeddings queued for the next batch at most; past it new ones are dropped (Redis slow or down). */
const MAX_QUEUED = 10_000;
const FLUSH_MS = 5;
const PAGE = 1_000;
/** How long a failing tail waits before trying again, at most. */
const MAX_BACKOFF_MS = 2_000;

// KEYS[1] the policy's pending index. ARGV: 1 max kept, 2 drop ids older than this (ms), 3 embedding key
// prefix, 4 index TTL (s). The evicted ids' embedding keys are deleted with them, so at most max_pending
// embeddings per policy exist whatever the request rate.
const TRIM_LUA = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if over <= 0 then return 0 end
local old = redis.call('ZPOPMIN', KEYS[1], over)
for i = 1, #old, 2 do redis.call('UNLINK', ARGV[3] .. old[i]) end
return over
`;

interface Queued {
  policy: string;
  requestId: string;
  bytes: Buffer;
  ts: number;
  ttlS: number;
  maxPending: number;
}

export interface RedisLearnStoreOptions {
  client: RedisClient;
  prefix: string;
  log: LearnLogger;
  /** XREAD BLOCK time: a newly tailed stream joins the read within this (default 1000 ms). */
  blockMs?: number;
  /** Called with each policy's new rows, in stream order. */
  deliver(policy: string, entries: LearnedEntry[]): void;
}

export class RedisLearnStore {
  private readonly client: RedisClient;
  private readonly keys: LearnKeys;
  private readonly log: LearnLogger;
  private readonly blockMs: number;
  private readonly deliver: RedisLearnStoreOptions['deliver'];
  private queue: Queued[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  /** Policy -> the last stream id the tail has read. */
  private readonly cursors = new Map<string, string>();
  private blocking: RedisClient | null = null;
  private tailing: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private closed = false;
  private tailFailing = false;
  /** Embeddings not kept (queue full, Redis not ready, batch failed). */
  dropped = 0;
  remembered = 0;

  constructor(o: RedisLearnStoreOptions) {
    this.client = o.client;
    this.keys = learnKeys(o.prefix);
    this.log = o.log;
    this.blockMs = o.blockMs ?? 1_000;
    this.deliver = o.deliver;
  }

  /** Queues an embedding for the next batch; false when it was dropped. O(1), never throws. */
  remember(policy: string, requestId: string, embedding: Float32Array, o: { ttlS: number; maxPending: number }): boolean {
    if (this.closed || this.queue.length >= MAX_QUEUED || this.client.status !== 'ready') {
      this.dropped++;
      return false;
    }
    this.queue.push({ policy, requestId, bytes: embeddingBytes(embedding), ts: Date.now(), ttlS: o.ttlS, maxPending: o.maxPending });
    this.timer ??= setTimeout(() => void this.flush(), FLUSH_MS).unref();
    return true;
  }

  /** The embedding kept for a request: still queued here, or in Redis (any replica may have kept it). */
  async embedding(requestId: string): Promise<Buffer | null> {
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i]!.requestId === requestId) return this.queue[i]!.bytes;
    return this.client.getBuffer(this.keys.emb(requestId));
  }

  async append(policy: string, maxRows: number, requestId: string, backend: string, score: number, embedding: Buffer): Promise<string> {
    const id = await this.client.xadd(
      this.keys.rows(policy),
      'MAXLEN',
      '~',
      maxRows,
      '*',
      ...entryFields(requestId, backend, score, embedding),
    );
    if (id === null) throw new Error('XADD returned no id');
    return id;
  }

  /** Every row of a policy's stream, oldest first. */
  async readAll(policy: string): Promise<LearnedEntry[]> {
    const out: LearnedEntry[] = [];
    let start = '-';
    for (;;) {
      const page = await this.client.xrangeBuffer(this.keys.rows(policy), start, '+', 'COUNT', PAGE);
      for (const [id, fields] of page) {
        const e = decodeEntry(id, fields);
        if (e !== null) out.push(e);
      }
      if (page.length < PAGE) return out;
      start = `(${page[page.length - 1]![0].toString()}`;
    }
  }

  /** Tails the policy's stream after `fromId` (kept if it is tailed already); starts the tail loop. */
  tail(policy: string, fromId: string): void {
    if (!this.cursors.has(policy)) this.cursors.set(policy, fromId);
    if (this.tailing === null && !this.closed) this.tailing = this.tailLoop();
    this.wake?.();
  }

  untail(policy: string): void {
    this.cursors.delete(policy);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer !== null) clearTimeout(this.timer);
    await this.flush();
    this.closed = true;
    this.wake?.();
    this.blocking?.disconnect(); // fails the pending XREAD, which ends the loop
    await this.tailing;
  }

  private async flush(): Promise<void> {
    this.timer = null;
    if (this.flushing !== null) {
      // One batch in flight at a time; what queued meanwhile goes next.
      await this.flushing;
      if (this.queue.length > 0) return this.flush();
      return;
    }
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    this.flushing = this.writeBatch(batch).finally(() => {
      this.flushing = null;
    });
    await this.flushing;
  }

  private async writeBatch(batch: Queued[]): Promise<void> {
    const p = this.client.pipeline();
    const trims = new Map<string, Queued>();
    for (const q of batch) {
      p.set(this.keys.emb(q.requestId), q.bytes, 'EX', q.ttlS);
      p.zadd(this.keys.pending(q.policy), q.ts, q.requestId);
      trims.set(q.policy, q);
    }
    for (const [policy, q] of trims) {
      p.eval(TRIM_LUA, 1, this.keys.pending(policy), q.maxPending, q.ts - q.ttlS * 1000, this.keys.emb(''), q.ttlS);
    }
    try {
      const replies = (await p.exec()) ?? [];
      let failed = 0;
      for (let i = 0; i < batch.length; i++) {
        const reply = replies[2 * i]; // the SET of embedding i
        if (reply === undefined || reply[0] !== null) failed++;
      }
      this.dropped += failed;
      this.remembered += batch.length - failed;
      const err = replies.find(([e]) => e !== null)?.[0];
      if (err) this.log.warn({ err: err.message }, 'online learning: some embeddings were not kept');
    } catch (err) {
      this.dropped += batch.length;
      this.log.warn({ err: (err as Error).message, dropped: batch.length }, 'online learning: embeddings not kept');
    }
  }

  private async tailLoop(): Promise<void> {
    this.blocking = blockingDuplicate(this.client, this.blockMs);
    this.blocking.on('error', () => {}); // reported through the failing XREAD below
    // A lazily connecting client without an offline queue would fail the first read: connect first.
    if (this.blocking.status === 'wait') await this.blocking.connect().catch(() => {});
    let failures = 0;
    while (!this.closed) {
      if (this.cursors.size === 0) {
        await new Promise<void>((r) => (this.wake = r));
        this.wake = null;
        continue;
      }
      const policies = [...this.cursors.keys()];
      const keys = policies.map((p) => this.keys.rows(p));
      const policyOf = new Map(keys.map((k, i) => [k, policies[i]!]));
      try {
        const ids = policies.map((p) => this.cursors.get(p)!);
        const reply = await this.blocking.xreadBuffer('COUNT', PAGE, 'BLOCK', this.blockMs, 'STREAMS', ...keys, ...ids);
        if (this.tailFailing) this.log.info({}, 'online learning: tailing learned rows again');
        this.tailFailing = false;
        failures = 0;
        for (const [key, items] of reply ?? []) this.take(policyOf.get(key.toString()), items);
      } catch (err) {
        if (this.closed) break;
        if (!this.tailFailing) this.log.warn({ err: (err as Error).message }, 'online learning: cannot tail learned rows; retrying');
        this.tailFailing = true;
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** Math.min(failures++, 5), MAX_BACKOFF_MS)));
      }
    }
  }

  private take(policy: string | undefined, items: Array<[Buffer, Buffer[]]>): void {
    if (policy === undefined || items.length === 0) return;
    const last = items[items.length - 1]![0].toString();
    const cursor = this.cursors.get(policy);
    // Untailed (or re-tailed from further on) while the read was in flight: this read is stale.
    if (cursor === undefined || compareIds(last, cursor) <= 0) return;
    this.cursors.set(policy, last);
    const entries: LearnedEntry[] = [];
    for (const [id, fields] of items) {
      const e = decodeEntry(id, fields);
      if (e !== null) entries.push(e);
    }
    this.deliver(policy, entries);
  }
}

/**
 * The connection that blocks in XREAD: the shared client's settings, minus a command timeout shorter than
 * the block (ioredis applies it to blocking commands too); a dead server still fails the read after
 * BLOCK + grace.
 */
function blockingDuplicate(client: RedisClient, blockMs: number): RedisClient {
  const timeouts = { commandTimeout: undefined, blockingTimeout: blockMs, blockingTimeoutGrace: 2_000 };
  if (client instanceof Cluster) return client.duplicate([], { redisOptions: { ...client.options.redisOptions, ...timeouts } });
  return client.duplicate(timeouts);
}
