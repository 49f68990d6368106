// P3's guard threshold: picked on the held-out rows as the inner model scores them, or (thresholdPick:
// 'both') on every train row, each scored by the model that did not train on it.
import { describe, expect, it } from 'vitest';
import { bestHarmonicThreshold } from '../../src/training/calibrate-router.js';
import type { P3Label } from '../../src/training/dataset.js';
import type { TrainedMlp } from '../../src/training/mlp-train.js';
import { harmonicThreshold, type Item } from '../../src/training/protocols/p3.js';

/** A row whose label is `label`, and the probabilities (law, finance, health, ood) a model gives it. */
const row = (id: string, label: P3Label, probs: number[]): { it: Item; probs: Float32Array } => ({
  it: {
    row: { id, prompt: id, benchmark: 'mmlu', category: 'x', scores: {} } as unknown as Item['row'],
    label,
    x: Float32Array.of(Number(id)),
  },
  probs: Float32Array.from(probs),
});

/** Probabilities come as float32, as a model's output does. */
const f = Math.fround;

/** A stand-in model: the probabilities listed for each row, looked up by the row's x. */
const model = (rows: ReadonlyArray<{ it: Item; probs: Float32Array }>): TrainedMlp =>
  ({ predict: (x: Float32Array) => rows.find((r) => r.it.x[0] === x[0])!.probs }) as unknown as TrainedMlp;

describe('harmonicThreshold', () => {
  const a = [
    row('1', 'law', [0.9, 0.05, 0.03, 0.02]),
    row('2', 'finance', [0.1, 0.6, 0.1, 0.2]),
    row('3', 'ood', [0.5, 0.1, 0.1, 0.3]),
    row('4', 'ood', [0.1, 0.1, 0.1, 0.7]), // 'ood' wins: rejected at any threshold
  ];
  const b = [row('5', 'health', [0.05, 0.05, 0.55, 0.35]), row('6', 'ood', [0.2, 0.58, 0.1, 0.12]), row('7', 'law', [0.4, 0.3, 0.2, 0.1])];

  it('picks on one set as one model scores it', () => {
    const t = harmonicThreshold(
      model(a),
      a.map((r) => r.it),
    );
    expect(t).toEqual(
      bestHarmonicThreshold(
        [
          { score: f(0.9), correct: true },
          { score: f(0.6), correct: true },
        ],
        [f(0.5), -1],
        0,
      ),
    );
    expect(t.score).toBe(1); // 0.5 < t <= 0.6 separates them
  });

  it('pools a second set scored by a second model into the same pick', () => {
    const pooled = harmonicThreshold(
      model(a),
      a.map((r) => r.it),
      { model: model(b), items: b.map((r) => r.it) },
    );
    const expected = bestHarmonicThreshold(
      [
        { score: f(0.9), correct: true },
        { score: f(0.6), correct: true },
        { score: f(0.55), correct: true },
        { score: f(0.4), correct: true },
      ],
      [f(0.5), -1, f(0.58)],
      0,
    );
    expect(pooled).toEqual(expected);
    // The second set's rows move the pick.
    expect(pooled.threshold).not.toBe(
      harmonicThreshold(
        model(a),
        a.map((r) => r.it),
      ).threshold,
    );
  });
});
