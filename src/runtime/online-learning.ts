// Online learning for kNN policies that opt in (`router.learn.online`). One instance per process:
//  - remember(): the pipeline hands over each routed request's embedding (RouteInput.onEmbedding); it is
//    kept, bounded and with a TTL, until feedback on that request arrives.
//  - learn(): POST /v1/feedback turns the kept embedding into a row scoring the backend that answered and
//    appends it to the policy's Redis stream (learn-redis.ts), capped at max_rows.
//  - attach(): on every config (re)load, each learning router gets the stored rows replayed, then the
//    rows every replica learns from then on, through one blocking XREAD on a dedicated connection.
// Without Redis the same happens in this process only (learn-memory.ts).
//
// A request can yield several rows: one per feedback source (the feedback store keeps one value per
// request and source, so retries from one source never reach here twice, but two sources each add a row).
import type { KnnLearnOptions } from '../routers/knn.js';
import type { Router } from '../routers/types.js';
import type { RedisClient } from '../telemetry/redis-client.js';
import type { Runtime } from './compile.js';
import { bytesEmbedding, compareIds, type LearnedEntry } from './learn-keys.js';
import { MemoryLearnStore } from './learn-memory.js';
import { RedisLearnStore, type LearnLogger } from './learn-redis.js';

export type LearnResult = 'learned' | 'no_embedding' | 'not_learning';

export interface OnlineLearningOptions {
  /** The shared telemetry connection, or null to learn in this process only. */
  redis: RedisClient | null;
  /** Key prefix (the telemetry key_prefix, default `signalman:`). */
  prefix: string;
  logger: LearnLogger;
  /** XREAD BLOCK time in ms (default 1000): how soon a policy added by a reload starts being tailed. */
  blockMs?: number;
}

/** Per router: the last row id it got, and rows that arrived while its replay was still reading. */
interface Feed {
  lastId: string;
  pending: LearnedEntry[] | null;
}

interface LearningPolicy {
  name: string;
  router: Router & { addRows: NonNullable<Router['addRows']> };
  learn: KnnLearnOptions;
}

function learningPolicies(rt: Runtime): LearningPolicy[] {
  const out: LearningPolicy[] = [];
  for (const [name, p] of rt.policies) {
    const r = p.config.router;
    const router = p.router;
    if (r.type === 'knn' && r.learn.online && router.addRows !== undefined) {
      out.push({ name, router: router as LearningPolicy['router'], learn: r.learn });
    }
  }
  return out;
}

export class OnlineLearning {
  private learning = new Map<string, LearningPolicy>();
  /** Policies whose stream the tail reads. */
  private tailed = new Set<string>();
  private readonly feeds = new WeakMap<Router, Feed>();
  private readonly redis: RedisLearnStore | null;
  private readonly memory: MemoryLearnStore | null;
  private readonly log: LearnLogger;
  private droppedHere = 0;
  private learned = 0;
  private rowsAdded = 0;
  private rowsRefused = 0;

  constructor(o: OnlineLearningOptions) {
    this.log = o.logger;
    this.redis =
      o.redis === null
        ? null
        : new RedisLearnStore({
            client: o.redis,
            prefix: o.prefix,
            log: o.logger,
            ...(o.blockMs === undefined ? {} : { blockMs: o.blockMs }),
            deliver: (policy, entries) => this.deliver(policy, entries),
          });
    this.memory = o.redis === null ? new MemoryLearnStore() : null;
  }

  /**
   * Makes `rt` the runtime rows are learned into: replays each learning policy's stored rows into its
   * router, then keeps it fed. Call on every config (re)load, before the runtime serves if possible.
   */
  async attach(rt: Runtime): Promise<void> {
    const policies = learningPolicies(rt);
    this.learning = new Map(policies.map((p) => [p.name, p]));
    if (this.redis !== null) {
      for (const name of this.tailed) if (!this.learning.has(name)) this.redis.untail(name);
      this.tailed = new Set(this.learning.keys());
    }
    await Promise.all(policies.filter((p) => !this.feeds.has(p.router)).map((p) => this.replay(p)));
  }

  /** Whether requests to `policy` are worth remembering (the pipeline asks before routing). */
  isLearning(policy: string): boolean {
    return this.learning.has(policy);
  }

  /** Keeps a routed request's embedding for its feedback. Synchronous, never throws, never waits. */
  remember(policy: string, requestId: string, embedding: Float32Array): void {
    try {
      const p = this.learning.get(policy);
      if (p === undefined) return;
      const o = { ttlS: p.learn.embedding_ttl_s, maxPending: p.learn.max_pending };
      if (this.redis !== null) this.redis.remember(policy, requestId, embedding, o);
      else this.memory?.remember(policy, requestId, embedding, o);
    } catch {
      this.droppedHere++;
    }
  }

  /**
   * Feedback `score` (0..1) on request `requestId`, answered by `backend`: a new row for the policy on every
   * replica. 'no_embedding' when none is kept (expired, evicted, never routed by a learning policy).
   */
  async learn(policy: string, requestId: string, backend: string, score: number): Promise<LearnResult> {
    if (!(score >= 0 && score <= 1)) throw new RangeError(`learn: score must be in 0..1, got ${score}`);
    const p = this.learning.get(policy);
    if (p === undefined) return 'not_learning';
    if (this.redis !== null) {
      const bytes = await this.redis.embedding(requestId);
      if (bytes === null || bytesEmbedding(bytes) === null) return 'no_embedding';
      // Every replica, this one included, adds the row when its tail reads it.
      await this.redis.append(policy, p.learn.max_rows, requestId, backend, score, bytes);
    } else {
      const memory = this.memory as MemoryLearnStore;
      const embedding = memory.embedding(policy, requestId);
      if (embedding === null) return 'no_embedding';
      this.deliver(policy, [memory.append(policy, p.learn.max_rows, backend, score, embedding)]);
    }
    this.learned++;
    return 'learned';
  }

  stats(): { remembered: number; dropped: number; learned: number; rows_added: number; rows_refused: number } {
    return {
      remembered: this.redis?.remembered ?? this.memory?.remembered ?? 0,
      dropped: this.droppedHere + (this.redis?.dropped ?? 0),
      learned: this.learned,
      rows_added: this.rowsAdded,
      rows_refused: this.rowsRefused,
    };
  }

  /** Stops tailing and closes the blocking connection (the shared client stays the caller's). */
  async close(): Promise<void> {
    await this.redis?.close();
  }

  /** The stored rows into a fresh router; rows the tail delivers meanwhile wait in its feed, in order. */
  private async replay(p: LearningPolicy): Promise<void> {
    if (this.memory !== null) {
      const feed: Feed = { lastId: '0-0', pending: null };
      this.feeds.set(p.router, feed);
      this.apply(p, feed, this.memory.readAll(p.name));
      return;
    }
    const redis = this.redis as RedisLearnStore;
    const feed: Feed = { lastId: '0-0', pending: [] };
    this.feeds.set(p.router, feed);
    try {
      this.apply(p, feed, await redis.readAll(p.name));
    } catch (err) {
      // The tail starts from the beginning of the stream for a policy it does not read yet.
      this.log.error({ err: (err as Error).message, policy: p.name }, 'online learning: cannot replay learned rows');
    }
    redis.tail(p.name, feed.lastId);
    const waiting = feed.pending ?? [];
    feed.pending = null;
    this.apply(p, feed, waiting);
  }

  private deliver(policy: string, entries: LearnedEntry[]): void {
    const p = this.learning.get(policy);
    const feed = p === undefined ? undefined : this.feeds.get(p.router);
    if (p === undefined || feed === undefined) return;
    if (feed.pending !== null) feed.pending.push(...entries);
    else this.apply(p, feed, entries);
  }

  /** Adds the entries after the router's last one (a row is never added twice to one router). */
  private apply(p: LearningPolicy, feed: Feed, entries: readonly LearnedEntry[]): void {
    const fresh = entries.filter((e) => compareIds(e.id, feed.lastId) > 0);
    if (fresh.length === 0) return;
    feed.lastId = fresh[fresh.length - 1]!.id;
    const kept = p.router.addRows(fresh.map((e) => e.row));
    this.rowsAdded += kept;
    if (kept < fresh.length) {
      this.rowsRefused += fresh.length - kept;
      this.log.warn(
        { policy: p.name, refused: fresh.length - kept },
        'online learning: rows refused (other embedder, or no candidate scored)',
      );
    }
  }
}
