import { describe, expect, it, onTestFinished } from 'vitest';
import rules from '../../src/routers/rules.js';
import type { Router } from '../../src/routers/types.js';
import { ctxFor, embedder, makeClassifierArtifact, prompt } from './helpers.js';

const CANDIDATES = [
  { backend: 'strong', as: 'strong' },
  { backend: 'weak', as: 'weak' },
  { backend: 'coder', as: 'coder' },
];
const NAMES = CANDIDATES.map((c) => c.backend);

async function make(options: unknown): Promise<Router> {
  const r = await rules.create(rules.options.parse(options), ctxFor(CANDIDATES));
  onTestFinished(() => r.close?.());
  return r;
}

async function winner(r: Router, text: string, meta: Record<string, string | number | boolean> = {}) {
  const s = await r.score({ text, embedding: r.needsEmbedding ? embedder.embedSync(text) : null, candidates: NAMES, meta });
  expect(s.map((x) => x.backend)).toEqual(NAMES);
  const best = s.reduce((a, b) => (b.quality > a.quality ? b : a));
  return { backend: best.backend, rule: best.evidence['rule'], scores: s };
}

describe('rules router', () => {
  const base = {
    type: 'rules',
    rules: [
      { name: 'premium', when: { meta: { tier: 'gold' } }, prefer: 'strong' },
      { name: 'code', when: { any_keywords: ['python', 'stack trace', 'c++'] }, prefer: 'coder' },
      { name: 'proof', when: { all_keywords: ['prove', 'theorem'] }, scores: { strong: 0.9, weak: 0.3 } },
      { name: 'sql', when: { regex: '/\\bselect\\b.+\\bfrom\\b/i' }, prefer: 'coder' },
      { name: 'long', when: { min_chars: 200 }, prefer: 'strong' },
      { name: 'tiny', when: { max_chars: 5 }, prefer: 'weak' },
    ],
    default: { scores: { weak: 0.7, strong: 0.6 } },
  };

  it('is text-only (its scores cached per prompt text) unless a rule reads request metadata', async () => {
    expect((await make(base)).textOnly).toBe(false); // 'premium' reads meta.tier
    const textRules = base.rules.filter((r) => !('meta' in r.when));
    expect((await make({ ...base, rules: textRules })).textOnly).toBe(true);
    expect((await make({ type: 'rules', default: { prefer: 'weak' } })).textOnly).toBe(true);
  });

  it('takes the first rule whose conditions all hold', async () => {
    const r = await make(base);
    expect(r.needsEmbedding).toBe(false);
    expect(await winner(r, 'Fix this Python loop')).toMatchObject({ backend: 'coder', rule: 'code' });
    expect(await winner(r, 'I got a STACK TRACE in C++')).toMatchObject({ backend: 'coder', rule: 'code' });
    expect(await winner(r, 'Fix this Python loop', { tier: 'gold' })).toMatchObject({ backend: 'strong', rule: 'premium' });
    expect(await winner(r, 'Fix this loop', { tier: 'silver' })).toMatchObject({ backend: 'weak', rule: 'default' });
    const proof = await winner(r, 'Prove the theorem of Pythagoras');
    expect(proof).toMatchObject({ backend: 'strong', rule: 'proof' });
    expect(proof.scores.map((s) => s.quality)).toEqual([0.9, 0.3, 0]);
    expect(await winner(r, 'Prove it, please')).toMatchObject({ rule: 'default' }); // all_keywords needs both
    expect(await winner(r, 'Select name FROM users')).toMatchObject({ backend: 'coder', rule: 'sql' });
    expect(await winner(r, 'x'.repeat(250))).toMatchObject({ backend: 'strong', rule: 'long' });
    expect(await winner(r, 'hi')).toMatchObject({ backend: 'weak', rule: 'tiny' });
  });

  it('matches keywords as whole words only', async () => {
    const r = await make(base);
    expect(await winner(r, 'I love pythons at the zoo')).toMatchObject({ rule: 'default' });
    expect(await winner(r, 'write it in python.')).toMatchObject({ rule: 'code' });
  });

  it('rejects bad rules at config load with a clear message', () => {
    const bad = (rule: unknown, extra: object = {}) => rules.options.safeParse({ ...base, rules: [rule], ...extra });
    expect(bad({ name: 'x', when: { regex: '([a-z' }, prefer: 'weak' }).error?.issues[0]?.message).toMatch(/invalid regular expression/);
    expect(bad({ name: 'x', when: { regex: '/a/g' }, prefer: 'weak' }).error?.issues[0]?.message).toMatch(/'g' and 'y' are not allowed/);
    expect(bad({ name: 'x', when: {}, prefer: 'weak' }).error?.issues[0]?.message).toMatch(/at least one condition/);
    expect(bad({ name: 'x', when: { min_chars: 1 }, prefer: 'weak', scores: { weak: 1 } }).error?.issues[0]?.message).toMatch(
      /exactly one of/,
    );
    expect(bad({ name: 'x', when: { min_chars: 1 }, prefer: 'weak' }, { default: { scores: { weak: 2 } } }).success).toBe(false);
  });

  it('refuses a rule that names a backend outside the policy', async () => {
    await expect(make({ ...base, rules: [{ name: 'r', when: { min_chars: 1 }, prefer: 'gpt-9' }] })).rejects.toThrow(
      /rule 0 'r' names backend 'gpt-9'.*strong, weak, coder/,
    );
    await expect(make({ ...base, default: { prefer: 'nobody' } })).rejects.toThrow(/default names backend 'nobody'/);
  });

  it('maps a classifier label to its expert backend, after the rules', async () => {
    const { dir } = await makeClassifierArtifact();
    const r = await make({
      type: 'rules',
      rules: [{ name: 'gold', when: { meta: { tier: 'gold' } }, prefer: 'strong' }],
      classifier: { artifact: dir, map: { code: 'coder', math: 'strong' }, min_confidence: 0.5 },
      default: { prefer: 'weak' },
    });
    expect(r.needsEmbedding).toBe(true);
    const code = await winner(r, prompt('code', 555));
    expect(code).toMatchObject({ backend: 'coder', rule: 'classifier' });
    expect(code.scores[2]!.evidence).toMatchObject({ label: 'code' });
    expect(await winner(r, prompt('math', 556))).toMatchObject({ backend: 'strong', rule: 'classifier' });
    expect(await winner(r, prompt('geo', 557))).toMatchObject({ backend: 'weak', rule: 'default' }); // unmapped label
    expect(await winner(r, prompt('code', 558), { tier: 'gold' })).toMatchObject({ backend: 'strong', rule: 'gold' });
  });

  it('falls back to default when the classifier is not confident enough', async () => {
    const { dir } = await makeClassifierArtifact();
    const r = await make({
      type: 'rules',
      classifier: { artifact: dir, map: { code: 'coder' }, min_confidence: 1 },
      default: { prefer: 'weak' },
    });
    const w = await winner(r, prompt('code', 559));
    expect(w).toMatchObject({ backend: 'weak', rule: 'default' });
    expect(w.scores[0]!.evidence['label']).toBe('code');
  });

  it('refuses a classifier map with labels the artifact does not have', async () => {
    const { dir } = await makeClassifierArtifact();
    await expect(
      make({ type: 'rules', classifier: { artifact: dir, map: { poetry: 'strong' } }, default: { prefer: 'weak' } }),
    ).rejects.toThrow(/label 'poetry' is not one of the classifier's labels \(math, geo, code, ood\)/);
  });
});
