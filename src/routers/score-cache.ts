// Repeated prompts (retries, templated traffic, health probes) skip embedding, guard and scoring:
// for a text-only router those are a pure function of the text, so their results are cached per text.
// decide() still runs every time, since steering and per-request bias change the outcome.
import { hashText53 } from '../util/hash.js';
import { Lru } from '../util/lru.js';
import type { CandidateScore, GuardResult } from './types.js';

export interface ScoredText {
  scores: readonly CandidateScore[];
  guard: GuardResult | null;
}

/** A bounded LRU keyed by a 53-bit hash of the text. One per compiled policy: a reload starts afresh. */
export class ScoreCache {
  private readonly lru: Lru<number, ScoredText>;

  constructor(capacity: number) {
    this.lru = new Lru(capacity);
  }

  key(text: string): number {
    return hashText53(text);
  }

  get(key: number): ScoredText | undefined {
    return this.lru.get(key);
  }

  set(key: number, value: ScoredText): void {
    this.lru.set(key, value);
  }
}
