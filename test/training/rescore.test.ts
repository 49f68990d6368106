// eval/results.json against an independent re-scoring of eval/dumps: eval/rescore.py reads only the
// dumps, the datasets and PROTOCOLS.md's definitions (no project code), so the published figures, the
// dumps they come from and the protocol text must agree, and a metric bug would have to be made twice.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..');
const DATA = resolve(ROOT, '..', 'shared', 'datasets');
const haveData = existsSync(join(DATA, 'routellm', 'mmlu.jsonl'));

interface Rescored {
  p1: Record<string, { n: number; apgr: number; cpt50: number }>;
  p2: { aiq: number; zeroRouterAiq: number; costToMatch: number };
  p3: { idAccuracy: number; oodAccuracy: number; score: number };
}
interface Results {
  runs: Array<
    | { protocol: 'p1'; benchmarks: Array<{ benchmark: string; router: { n: number; apgr: number; cpt50: number } }> }
    | { protocol: 'p2'; router: { aiq: number; costToMatch: number }; zeroRouter: { aiq: number } }
    | { protocol: 'p3'; result: { idAccuracy: number; oodAccuracy: number; score: number } }
  >;
}

describe.runIf(haveData)('eval/results.json', () => {
  it('holds the figures an independent re-scoring of eval/dumps gives (eval/rescore.py, PROTOCOLS.md)', async () => {
    const { stdout } = await promisify(execFile)('python3', ['eval/rescore.py', '--data', DATA, '--dumps', 'eval/dumps', '--json'], {
      cwd: ROOT,
    });
    const got = JSON.parse(stdout) as Rescored;
    const results = JSON.parse(await readFile(join(ROOT, 'eval', 'results.json'), 'utf8')) as Results;
    let checked = 0;
    for (const run of results.runs) {
      if (run.protocol === 'p1') {
        for (const b of run.benchmarks) {
          const r = got.p1[b.benchmark]!;
          expect(r.n).toBe(b.router.n);
          expect(r.apgr).toBeCloseTo(b.router.apgr, 9);
          expect(r.cpt50).toBeCloseTo(b.router.cpt50, 9);
          checked++;
        }
      } else if (run.protocol === 'p2') {
        expect(got.p2.aiq).toBeCloseTo(run.router.aiq, 9);
        expect(got.p2.zeroRouterAiq).toBeCloseTo(run.zeroRouter.aiq, 9);
        expect(got.p2.costToMatch).toBeCloseTo(run.router.costToMatch, 9);
        checked++;
      } else {
        expect(got.p3.idAccuracy).toBeCloseTo(run.result.idAccuracy, 12);
        expect(got.p3.oodAccuracy).toBeCloseTo(run.result.oodAccuracy, 12);
        expect(got.p3.score).toBeCloseTo(run.result.score, 12);
        checked++;
      }
    }
    expect(checked).toBe(5); // three P1 test sets, P2, P3
  }, 60_000);
});
