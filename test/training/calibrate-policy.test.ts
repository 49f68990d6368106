// `signalman calibrate-policy`: the knob it finds must make the gateway's own decisions hit the target.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileRuntime, createSharedPools } from '../../src/runtime/compile.js';
import { parseConfigText } from '../../src/config/load.js';
import { calibrateKnob, scorePrompts } from '../../src/training/calibrate-policy.js';
import { writeKnnArtifact } from '../../src/training/knn-build.js';
import { makeRows, manifestFor, prompt, TOPICS } from '../routers/helpers.js';

async function runtimeWith(objective: string) {
  const dir = await mkdtemp(join(tmpdir(), 'signalman-cal-'));
  const rows = makeRows(12, 2);
  // Graded outcomes so that predicted gaps spread out: weak gets math wrong, and some geo.
  await writeKnnArtifact(dir, rows.vectors, rows.scores, manifestFor(['strong', 'weak'], rows.vectors.length));
  const text = `version: 1
backends:
  - { name: strong, base_url: "http://127.0.0.1:1/v1", model: s, price: { input_per_mtok: 10, output_per_mtok: 30 } }
  - { name: weak, base_url: "http://127.0.0.1:1/v1", model: w, price: { input_per_mtok: 0.2, output_per_mtok: 0.6 } }
policies:
  - name: auto
    candidates: [weak, strong]
    embedder: { type: lexical, dim: 64 }
    router: { type: knn, artifact: ${dir}, k: 7 }
    objective: ${objective}
`;
  const shared = createSharedPools();
  const rt = await compileRuntime(parseConfigText(text, join(dir, 'c.yaml'), {}), shared, 1);
  return {
    rt,
    close: async () => {
      await rt.dispose();
      await shared.pools.closeAll();
      await shared.embedders.closeAll();
    },
  };
}

const prompts = TOPICS.flatMap((t) => Array.from({ length: 30 }, (_, i) => prompt(t, 300 + i)));

describe('policy calibration', () => {
  it('finds the lambda that sends the target share to the strong backend', async () => {
    const { rt, close } = await runtimeWith('{ kind: utility, lambda: 1 }');
    try {
      const { scored, guarded } = await scorePrompts(rt, 'auto', prompts);
      expect(scored).toHaveLength(prompts.length);
      // A third of the prompts are math, which only the strong model solves.
      const r = calibrateKnob(rt, 'auto', scored, guarded, { kind: 'share', backend: 'strong', share: 1 / 3 });
      expect(r.knob).toBe('lambda');
      expect(r.share.strong).toBeCloseTo(1 / 3, 1);
      const none = calibrateKnob(rt, 'auto', scored, guarded, { kind: 'share', backend: 'strong', share: 0 });
      expect(none.share.strong ?? 0).toBe(0);
      expect(none.value).toBeGreaterThan(r.value);
      // A cost target between all-weak and the calibrated mix lands between them.
      const cheap = calibrateKnob(rt, 'auto', scored, guarded, { kind: 'cost', usdPer1k: (r.usdPer1k + none.usdPer1k) / 2 });
      expect(cheap.usdPer1k).toBeLessThanOrEqual(r.usdPer1k);
      expect(cheap.usdPer1k).toBeGreaterThanOrEqual(none.usdPer1k);
    } finally {
      await close();
    }
  });

  it('finds min_quality for a threshold objective', async () => {
    const { rt, close } = await runtimeWith('{ kind: threshold, min_quality: 0.5 }');
    try {
      const { scored, guarded } = await scorePrompts(rt, 'auto', prompts);
      const r = calibrateKnob(rt, 'auto', scored, guarded, { kind: 'share', backend: 'strong', share: 1 / 3 });
      expect(r.knob).toBe('min_quality');
      expect(r.share.strong).toBeCloseTo(1 / 3, 1);
      expect(() => calibrateKnob(rt, 'auto', scored, guarded, { kind: 'share', backend: 'nope', share: 0.5 })).toThrow(/not a candidate/);
    } finally {
      await close();
    }
  });
});
