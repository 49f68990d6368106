import { describe, expect, it } from 'vitest';
import { Lru } from '../../src/util/lru.js';
import { seededRandom } from '../../src/util/random.js';
import { StickyStore } from '../../src/routers/sticky.js';

/** The obvious LRU (an array, most recent last) that Lru must agree with, operation by operation. */
class Reference<K, V> {
  entries: [K, V][] = [];
  constructor(readonly capacity: number) {}
  private at(k: K): number {
    return this.entries.findIndex((e) => e[0] === k);
  }
  get(k: K): V | undefined {
    const i = this.at(k);
    if (i < 0) return undefined;
    const [e] = this.entries.splice(i, 1);
    this.entries.push(e!);
    return e![1];
  }
  peek(k: K): V | undefined {
    const i = this.at(k);
    return i < 0 ? undefined : this.entries[i]![1];
  }
  set(k: K, v: V): void {
    if (this.capacity === 0) return;
    const i = this.at(k);
    if (i >= 0) this.entries.splice(i, 1);
    else if (this.entries.length >= this.capacity) this.entries.shift();
    this.entries.push([k, v]);
  }
  delete(k: K): boolean {
    const i = this.at(k);
    if (i >= 0) this.entries.splice(i, 1);
    return i >= 0;
  }
}

describe('Lru', () => {
  it('agrees with a reference LRU over random get/peek/set/delete, at every capacity edge', () => {
    for (const capacity of [0, 1, 2, 7, 64]) {
      const rnd = seededRandom(capacity + 1);
      const lru = new Lru<number, string>(capacity);
      const ref = new Reference<number, string>(capacity);
      for (let step = 0; step < 5000; step++) {
        // Keys from a range a little wider than the capacity: hits, misses and evictions all happen.
        const k = Math.floor(rnd() * (capacity * 2 + 3));
        const op = rnd();
        if (op < 0.35) expect(lru.get(k)).toBe(ref.get(k));
        else if (op < 0.45) expect(lru.peek(k)).toBe(ref.peek(k));
        else if (op < 0.85) {
          lru.set(k, `v${step}`);
          ref.set(k, `v${step}`);
        } else expect(lru.delete(k)).toBe(ref.delete(k));
        expect(lru.size).toBe(ref.entries.length);
        expect(lru.oldest()).toBe(ref.entries[0]?.[0]);
        expect(lru.has(k)).toBe(ref.peek(k) !== undefined);
      }
    }
  });

  it('evicts the least recently used: a get saves an entry, a peek does not', () => {
    const lru = new Lru<string, number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    expect(lru.get('a')).toBe(1);
    lru.set('c', 3); // 'b' was least recently used
    expect([lru.peek('a'), lru.peek('b'), lru.peek('c')]).toEqual([1, undefined, 3]);
    expect(lru.peek('a')).toBe(1);
    lru.set('d', 4); // peek left 'a' oldest
    expect([lru.has('a'), lru.has('c'), lru.has('d')]).toEqual([false, true, true]);
    lru.clear();
    expect([lru.size, lru.oldest()]).toEqual([0, undefined]);
    lru.set('e', 5);
    expect(lru.get('e')).toBe(5);
  });

  it('refuses a capacity that is not a non-negative integer', () => {
    expect(() => new Lru(-1)).toThrow(/non-negative integer, got -1/);
    expect(() => new Lru(1.5)).toThrow(/non-negative integer/);
  });
});

describe('StickyStore', () => {
  it('keeps at most max_entries conversations, dropping the least recently set, and forgets expired ones', () => {
    const s = new StickyStore(3);
    for (const k of ['a', 'b', 'c']) s.set(k, `to-${k}`, 100);
    s.set('a', 'to-a2', 100); // 'a' renewed: 'b' is now the oldest
    s.set('d', 'to-d', 100);
    expect([s.get('a', 0), s.get('b', 0), s.get('c', 0), s.get('d', 0)]).toEqual(['to-a2', undefined, 'to-c', 'to-d']);
    expect(s.size).toBe(3);
    expect(s.get('c', 100)).toBeUndefined(); // expired at its deadline, and gone
    expect(s.size).toBe(2);
  });
});
