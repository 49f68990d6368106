import { describe, expect, it } from 'vitest';
import { P3_LABELS, p3DomainOf, readDataset } from '../../src/training/dataset.js';

// data/chat/: the project's own labelled chat prompts (data/chat/README.md). The held-out file scores
// what training on the other taught, so no train prompt may be a near copy of a held-out one.

const STOP = new Set(
  (
    "a an the and or of to in on for with my me i i'm im is are was be do does did can could should would will what what's whats how " +
    'why when which who it its this that there their they you your we our if at by as from about vs versus difference between explain ' +
    "tell please hey hi quick question so just really actually any some much many get got have has had not no don't dont am been being " +
    'than then too also like'
  ).split(' '),
);
const contentWords = (s: string): Set<string> => new Set((s.toLowerCase().match(/[a-z0-9']+/g) ?? []).filter((w) => !STOP.has(w)));
const jaccard = (a: Set<string>, b: Set<string>): number => {
  let both = 0;
  for (const w of a) if (b.has(w)) both++;
  return both / Math.max(1, a.size + b.size - both);
};

describe('data/chat', () => {
  it('labels each row once, by its category, and keeps train and held-out prompts apart', async () => {
    const train = await readDataset('data/chat/train.jsonl');
    const held = await readDataset('data/chat/heldout.jsonl');
    for (const ds of [train, held]) {
      for (const row of ds.rows) {
        expect(row.benchmark).toBe('chat');
        expect(P3_LABELS).toContain(row.category);
        expect(Object.entries(row.scores).filter(([, v]) => v === 1)).toEqual([[row.category, 1]]);
        expect(p3DomainOf(row) ?? 'ood').toBe(row.category);
      }
      // Every label is there, ood the largest part.
      const per = P3_LABELS.map((l) => ds.rows.filter((r) => r.category === l).length);
      for (const n of per) expect(n).toBeGreaterThanOrEqual(50);
      expect(per[3]).toBe(Math.max(...per));
    }
    const heldWords = held.rows.map((r) => contentWords(r.prompt));
    const near = train.rows.filter((r) => {
      const w = contentWords(r.prompt);
      return heldWords.some((h) => jaccard(w, h) >= 0.4);
    });
    expect(near.map((r) => r.id)).toEqual([]);
    const ids = new Set(train.rows.map((r) => r.id));
    for (const r of held.rows) expect(ids.has(r.id)).toBe(false);
  });
});
