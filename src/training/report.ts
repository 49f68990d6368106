import type { Panel, Series } from './plot.js';
import type { P1Run } from './protocols/p1.js';
import type { P2Run, P2Summary } from './protocols/p2.js';
import type { P3Run } from './protocols/p3.js';
import type { CvRun } from './cv.js';

// Turns protocol runs into what `signalman eval` prints (plain-text tables), writes (results JSON
// without the per-prompt dumps) and draws (one panel per P1 benchmark and one for P2).

export type Run = P1Run | P2Run | P3Run;

const pct = (x: number | null): string => (x === null ? 'never' : `${(x * 100).toFixed(1)}%`);
export const f3 = (x: number): string => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
const f4 = (x: number): string => (Number.isFinite(x) ? x.toFixed(4) : 'n/a');

export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

export function p1Table(runs: readonly P1Run[]): string {
  const rows: string[][] = [];
  const first = runs[0];
  if (first === undefined) return '';
  for (const b of first.benchmarks) {
    rows.push([`${b.benchmark}: random`, '-', f3(b.random.apgr), pct(b.random.cpt50), pct(b.random.cpt80), '-']);
    for (const r of runs) {
      const x = r.benchmarks.find((y) => y.benchmark === b.benchmark)!;
      rows.push([
        `${b.benchmark}: ${r.recipe}`,
        r.embedder,
        `${f3(x.router.apgr)} ± ${f3(x.router.apgrSe)}`,
        pct(x.router.cpt50),
        pct(x.router.cpt80),
        String(x.router.n),
      ]);
    }
    rows.push([
      `${b.benchmark}: oracle`,
      '-',
      f3(b.oracle.apgr),
      pct(b.oracle.cpt50),
      pct(b.oracle.cpt80),
      `strong ${f3(b.router.strongQuality)} / weak ${f3(b.router.weakQuality)}`,
    ]);
  }
  return `P1 strong (${first.strong}) vs weak (${first.weak}); APGR ± bootstrap SE\n${table(['router', 'embedder', 'APGR', 'CPT(50%)', 'CPT(80%)', 'n'], rows)}`;
}

const p2Row = (name: string, emb: string, s: P2Summary): string[] => [
  name,
  emb,
  f3(s.aiq),
  s.costToMatch === null ? 'never' : f3(s.costToMatch),
  f3(s.accuracyAtBestCost),
];

export function p2Table(runs: readonly P2Run[]): string {
  const first = runs[0];
  if (first === undefined) return '';
  const rows = [p2Row('zero router (single models; random mixes lie on its hull)', '-', first.zeroRouter)];
  for (const r of runs) rows.push(p2Row(r.recipe, r.embedder, r.router));
  rows.push(p2Row('oracle', '-', first.oracle));
  const b = first.bestSingle;
  return `P2 on ${first.test.file} (${first.test.rows} rows); best single model ${b.model}: accuracy ${f3(b.accuracy)} at cost ${b.cost}\n${table(
    ['router', 'embedder', 'AIQ', 'cost to match best', `accuracy at cost ${b.cost}`],
    rows,
  )}`;
}

export function p3Table(runs: readonly P3Run[]): string {
  const rows = runs.map((r) => [
    r.recipe,
    r.embedder,
    `${f3(r.result.idAccuracy)} ± ${f3(r.result.idSe)}`,
    `${f3(r.result.oodAccuracy)} ± ${f3(r.result.oodSe)}`,
    f3(r.result.score),
    f3(r.threshold),
    `${r.decisionMicros.toFixed(0)} µs`,
  ]);
  const first = runs[0];
  const by =
    first === undefined
      ? ''
      : Object.entries(first.oodBySource)
          .map(([k, v]) => `${k} ${f3(v.accuracy)} (n=${v.n})`)
          .join(', ');
  return `P3 guarded routing (ID n=${first?.result.idN ?? 0}, OOD n=${first?.result.oodN ?? 0}); OOD accuracy by source for ${first?.recipe ?? ''}: ${by}\n${table(
    ['router', 'embedder', 'ID accuracy', 'OOD accuracy', 'score (harmonic)', 'threshold', 'decision'],
    rows,
  )}`;
}

/** One row per recipe: each metric's mean over the folds, then the per-fold values. */
export function cvTable(runs: readonly CvRun[]): string {
  const first = runs[0];
  if (first === undefined) return '';
  const keys = Object.keys(first.mean);
  // Four digits: recipes are compared fold by fold, and at three a tie may not be one.
  const fmt = (k: string, x: number | null | undefined): string =>
    x === undefined ? '-' : k.startsWith('cpt') ? pct(x) : x === null ? 'never' : f4(x);
  const rows = runs.map((r) => [
    r.recipe,
    r.embedder,
    ...keys.map((k) => `${fmt(k, r.mean[k])} (${r.perFold.map((f) => fmt(k, f.metrics[k])).join(', ')})`),
  ]);
  return `${first.protocol.toUpperCase()} ${first.folds}-fold cross-validation on ${first.split}; mean (per fold)\n${table(['router', 'embedder', ...keys], rows)}`;
}

/** Everything but the per-prompt dumps and the model weights. */
export function summarize(run: Run): unknown {
  const { dump: _dump, model: _model, ...rest } = run;
  return rest;
}

export function panels(runs: readonly Run[]): Panel[] {
  const out: Panel[] = [];
  const p1 = runs.filter((r): r is P1Run => r.protocol === 'p1');
  const first1 = p1[0];
  if (first1 !== undefined) {
    for (const b of first1.benchmarks) {
      const series: Series[] = p1.map((r) => ({
        label: r.recipe,
        style: 'line' as const,
        points: r.benchmarks.find((x) => x.benchmark === b.benchmark)!.router.curve.map((p) => ({ x: p.share, y: p.quality })),
      }));
      series.push({
        label: 'random',
        style: 'line',
        dashed: true,
        points: [
          { x: 0, y: b.router.weakQuality },
          { x: 1, y: b.router.strongQuality },
        ],
      });
      series.push({ label: 'oracle', style: 'line', dashed: true, points: b.oracle.curve.map((p) => ({ x: p.share, y: p.quality })) });
      out.push({ title: `P1 ${b.benchmark}`, xLabel: 'share of strong-model calls', yLabel: 'quality', series });
    }
  }
  const p2 = runs.filter((r): r is P2Run => r.protocol === 'p2');
  const first2 = p2[0];
  if (first2 !== undefined) {
    const series: Series[] = p2.map((r) => ({
      label: r.recipe,
      style: 'line' as const,
      points: r.router.points.map((p) => ({ x: p.cost, y: p.accuracy })),
    }));
    series.push({ label: 'single models', style: 'dots', points: first2.zeroRouter.points.map((p) => ({ x: p.cost, y: p.accuracy })) });
    series.push({ label: 'oracle', style: 'line', dashed: true, points: first2.oracle.points.map((p) => ({ x: p.cost, y: p.accuracy })) });
    out.push({ title: 'P2 llmrouter test', xLabel: 'mean cost ($ per M input tokens)', yLabel: 'accuracy', series });
  }
  return out;
}
