import { describe, expect, it } from 'vitest';
import { SignalmanError } from '../../src/errors.js';
import type { Scored } from '../../src/routers/engine.js';
import { fromWire, ScoredDecoder, ScoredEncoder, toWire, type ScoredWire } from '../../src/routers/scoring-wire.js';

// Scores cross threads as numbers plus, only when it changed, the rest as JSON (scoring-wire.ts). Every
// message here goes through structuredClone, as postMessage copies it, and must come back equal.

const mlpLike = (q: number[]): Scored => ({
  guard: { score: 0.8123456789, threshold: 0.607, inDomain: true },
  scores: q.map((quality, i) => ({ backend: `b${i}`, quality, evidence: { model: `model-${i}` } })),
  embedCacheHit: false,
  embedMs: 0.021,
  guardMs: 0.013,
  scoreMs: 0.05,
});

const knnLike = (n: number): Scored => ({
  guard: null,
  scores: [0.25, 0.75].map((quality, i) => ({
    backend: `k${i}`,
    quality,
    evidence: { model: `m${i}`, neighbours: n, topSimilarity: 0.9 - n / 100 },
  })),
  embedCacheHit: true,
  embedMs: 0,
  guardMs: 0,
  scoreMs: 0.3,
});

/** A classifier guard that turned the prompt away: a label, no scores. */
const turnedAway = (label: string): Scored => ({
  guard: { score: 0.31, threshold: 0.64, inDomain: false, label },
  scores: [],
  embedCacheHit: false,
  embedMs: 0.02,
  guardMs: 0.1,
  scoreMs: 0,
});

describe('scoring wire', () => {
  it('gives back what was scored, sending the names and evidence again only when they change', () => {
    const enc = new ScoredEncoder();
    const dec = new ScoredDecoder();
    const sent: Array<[number, Scored]> = [
      [0, mlpLike([0.1, 0.2, 0.3])],
      [0, mlpLike([0.4, 1 / 3, 0.6])], // same shape
      [1, knnLike(3)], // another policy: its own shape
      [0, mlpLike([0.7, 0.8, Math.PI / 10])], // policy 0 still "as last time"
      [1, knnLike(4)], // evidence differs: resent
      [1, knnLike(4)],
      [2, turnedAway('ood')],
      [2, turnedAway('law')], // the label is part of the shape
      [2, { ...mlpLike([0.5, 0.5, 0.5]), guard: { score: 0.9, threshold: 0.64, inDomain: true, label: 'law' } }],
    ];
    const shapesSent: boolean[] = [];
    sent.forEach(([p, r], id) => {
      const m = structuredClone(enc.encode(id, p, r));
      expect(m[0]).toBe(id);
      expect(m[1]).toBe(p);
      if (m[2] === null) throw new Error('encoded as an error');
      shapesSent.push(m[3] !== null);
      expect(dec.decode(m[1], m[2], m[3])).toEqual(r);
    });
    expect(shapesSent).toEqual([true, false, true, false, true, false, true, true, true]);
  });

  it('carries a SignalmanError with its code, status and type', () => {
    const e = new SignalmanError('out_of_domain', 400, 'invalid_request_error', 'not like the training set', 'messages');
    const back = fromWire(structuredClone(toWire(e)));
    expect(back).toBeInstanceOf(SignalmanError);
    expect(back).toMatchObject({
      code: 'out_of_domain',
      status: 400,
      type: 'invalid_request_error',
      message: e.message,
      param: 'messages',
    });
    expect(fromWire(toWire(new Error('plain')))).toEqual(new Error('plain'));
  });

  it('refuses scores whose shape it never received (a decoder out of step with its encoder)', () => {
    const m = new ScoredEncoder().encode(1, 0, mlpLike([0.1, 0.2, 0.3])) as Extract<ScoredWire, [number, number, number[], unknown]>;
    expect(() => new ScoredDecoder().decode(0, m[2], null)).toThrow(/before their shape/);
  });
});
