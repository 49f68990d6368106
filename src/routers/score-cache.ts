// Repeated prompts (retries, templated traffic, health probes) skip embedding, guard and scoring:
// for a text-only router those are a pure function of the text, so their results are cached per text.
// decide() still runs every time, since steering and per-request bias change the outcome.
import { hashText53 } from '../util/hash.js';
import type { CandidateScore, GuardResult } from './types.js';

export interface ScoredText {
  scores: readonly CandidateScore[];
  guard: GuardResult | null;
}

/** A bounded LRU keyed by a 53-bit hash of the text. One per compiled policy: a reload starts afresh. */
export class ScoreCache {
  private readonly map = new Map<number, ScoredText>();

  constructor(private readonly capacity: number) {}

  key(text: string): number {
    return hashText53(text);
  }

  get(key: number): ScoredText | undefined {
    const hit = this.map.get(key);
    if (hit !== undefined) {
      this.map.delete(key);
      this.map.set(key, hit);
    }
    return hit;
  }

  set(key: number, value: ScoredText): void {
    if (this.capacity === 0) return;
    this.map.set(key, value);
    if (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value as number);
  }
}
