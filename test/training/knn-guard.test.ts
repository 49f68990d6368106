// `signalman train --kind knn --guard-pass RATE`: a kNN index calibrated as an out-of-domain guard, loaded
// and checked the way a policy's guard is (loadGuard + the policy's embedder).
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { trainCommand } from '../../src/cli/train.js';
import { getEmbedderPlugin } from '../../src/embedders/registry.js';
import { readManifest } from '../../src/routers/artifacts.js';
import { loadGuard } from '../../src/routers/guard.js';
import { readDataset } from '../../src/training/dataset.js';
import { parseConfigText } from '../../src/config/load.js';
import { resolveRoute } from '../../src/routers/resolve.js';
import { RoutingState } from '../../src/routers/state.js';
import { compileRuntime, createSharedPools } from '../../src/runtime/compile.js';
import { writeFixture } from './fixture.js';

let data: string;
let out: string;
beforeAll(() => {
  data = writeFixture();
  out = mkdtempSync(join(tmpdir(), 'sm-guard-'));
});

function capture(): string[] {
  const lines: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
    lines.push(String(s));
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
    lines.push(String(s));
    return true;
  });
  return lines;
}

const train = async (args: string[]): Promise<{ code: number; text: string }> => {
  const lines = capture();
  try {
    const code = await trainCommand(args);
    return { code, text: lines.join('') };
  } finally {
    vi.restoreAllMocks();
  }
};

describe('train --kind knn --guard-pass', () => {
  it('holds a tenth of the rows out, sets the threshold they pass at the asked rate, and the guard keeps in-domain prompts', async () => {
    const file = join(data, 'routellm', 'mmlu.jsonl');
    const dir = join(out, 'g1');
    const args = [
      '--input',
      file,
      '--kind',
      'knn',
      '--split',
      'all',
      '--dim',
      '512',
      '--no-cache',
      '--guard-pass',
      '0.9',
      '--max-rows',
      '200',
    ];
    const r = await train([...args, '--out', dir, '--ood', join(data, 'routellm', 'gsm8k.jsonl')]);
    expect(r.code).toBe(0);
    expect(r.text).toMatch(/guard threshold \d\.\d{4}: \d+\.\d% of \d+ held-out rows/);
    expect(r.text).toMatch(/--ood .*gsm8k\.jsonl: \d+ of \d+ prompts/);

    const m = await readManifest(dir);
    expect(m.guard?.kind).toBe('knn_distance');
    expect(m.trained_on.rows).toBe(200);
    const held = Number(/of (\d+) held-out rows/.exec(m.guard!.calibration)![1]);
    const all = (await readDataset(file)).rows.length;
    // A tenth held out (by hash, so about a tenth), none of them in the index.
    expect(held).toBeGreaterThan(all * 0.05);
    expect(held).toBeLessThan(all * 0.15);

    // Loaded as a policy loads it: in-domain prompts of the same file mostly pass, chat small talk does not.
    const plugin = getEmbedderPlugin('lexical')!;
    const embedder = await plugin.create(plugin.options.parse({ type: 'lexical', dim: 512 }), { resolvePath: (p) => p });
    const guard = await loadGuard(dir, embedder);
    const rows = (await readDataset(file)).rows;
    let pass = 0;
    for (const row of rows) if ((await guard.check(await embedder.embed(row.prompt))).inDomain) pass++;
    expect(pass / rows.length).toBeGreaterThan(0.85);
    const chat = await guard.check(await embedder.embed("hey! how's your weekend going? any fun plans?"));
    expect(chat.inDomain).toBe(false);
    expect(chat.threshold).toBe(m.guard!.threshold);

    // Deterministic: the same command writes the same index and threshold.
    const again = join(out, 'g2');
    expect((await train([...args, '--out', again])).code).toBe(0);
    expect(readFileSync(join(again, 'vectors.f32')).equals(readFileSync(join(dir, 'vectors.f32')))).toBe(true);
    expect((await readManifest(again)).guard?.threshold).toBe(m.guard!.threshold);
  }, 60_000);

  it('refuses a guard for an MLP, a rate outside (0.5, 1) and --max-rows without --guard-pass', async () => {
    const file = join(data, 'routellm', 'mmlu.jsonl');
    const base = ['--input', file, '--no-cache', '--out', join(out, 'bad')];
    const mlp = await train([...base, '--kind', 'mlp', '--guard-pass', '0.9']);
    expect(mlp.code).toBe(1);
    expect(mlp.text).toContain('use it with --kind knn');
    const rate = await train([...base, '--kind', 'knn', '--guard-pass', '1.5']);
    expect(rate.code).toBe(1);
    expect(rate.text).toContain("in (0.5, 1), got '1.5'");
    const rows = await train([...base, '--kind', 'knn', '--max-rows', '100']);
    expect(rows.code).toBe(1);
    expect(rows.text).toContain('--max-rows and --ood go with --guard-pass');
  });
});

describe("guard.embedder: a guard built with one member of the policy's concat embedder", () => {
  const STATIC = `{ type: static, artifact: ${join(import.meta.dirname, '../../embedders/static-use-lite')} }`;
  const config = (dir: string, guardEmbedder: string) => `version: 1
backends:
  - { name: a, base_url: "http://127.0.0.1:1/v1", model: a }
  - { name: b, base_url: "http://127.0.0.1:1/v1", model: b }
policies:
  - name: alone
    candidates: [a, b]
    embedder: ${STATIC}
    router: { type: fixed, backend: a }
    guard: { artifact: ${dir}, fallback: b }
  - name: member
    candidates: [a, b]
    embedder: { type: concat, members: [{ type: lexical, dim: 512 }, ${STATIC}], weights: [2, 1] }
    router: { type: fixed, backend: a }
    guard: { artifact: ${dir}, embedder: ${guardEmbedder}, fallback: b }
`;

  it('judges with that member alone, before the policy vector: the same verdicts and scores as the member alone', async () => {
    const dir = join(out, 'static-guard');
    const embedder = JSON.stringify({ type: 'static', artifact: join(import.meta.dirname, '../../embedders/static-use-lite') });
    const r = await train([
      '--input',
      join(data, 'routellm', 'mmlu.jsonl'),
      '--kind',
      'knn',
      '--split',
      'all',
      '--embedder',
      embedder,
      '--no-cache',
      '--guard-pass',
      '0.9',
      '--out',
      dir,
    ]);
    expect(r.code).toBe(0);
    const shared = createSharedPools();
    const rt = await compileRuntime(parseConfigText(config(dir, STATIC), join(out, 'c.yaml'), {}), shared, 1);
    try {
      const state = new RoutingState();
      const prompts = [
        ...(await readDataset(join(data, 'routellm', 'mmlu.jsonl'))).rows.slice(0, 20).map((x) => x.prompt),
        'hi there!',
        'Ugh, Mondays.',
      ];
      let fallbacks = 0;
      for (const text of prompts) {
        const decide = async (model: string) =>
          (
            await resolveRoute({
              table: rt,
              endpoint: 'chat',
              body: { model, messages: [{ role: 'user', content: text }] },
              headers: {},
              state,
              dryRun: true,
            })
          ).decision!;
        const [alone, member] = [await decide('alone'), await decide('member')];
        expect(member.guard!.score).toBe(alone.guard!.score);
        expect(member.reason).toBe(alone.reason);
        if (member.reason === 'guard_fallback') fallbacks++;
      }
      // The fixed router reads no vector, so the concat was never made: the guard asked its member.
      expect(rt.policies.get('member')!.embedder!.stats().misses).toBe(0);
      // The greeting and the small talk at least; most of the in-domain rows pass.
      expect(fallbacks).toBeGreaterThanOrEqual(2);
      expect(fallbacks).toBeLessThan(8);
    } finally {
      await rt.dispose();
      await shared.pools.closeAll();
      await shared.embedders.closeAll();
    }
    // A guard embedder that is not a member is a config error naming the members.
    const bad = createSharedPools();
    try {
      await expect(
        compileRuntime(parseConfigText(config(dir, '{ type: lexical, dim: 256 }'), join(out, 'c.yaml'), {}), bad, 1),
      ).rejects.toThrow(/not a member of the policy's concat embedder \(members: lexical\/v1\/d512.*static\/v1/);
    } finally {
      await bad.pools.closeAll();
      await bad.embedders.closeAll();
    }
  }, 60_000);
});
