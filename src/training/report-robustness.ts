import { type Run, f3, table } from './report.js';
import type { Agreement } from './robustness.js';

// The robustness-to-prompt-shape table `signalman eval` prints under each protocol's own table: per
// router and shape, how often the decision stays the same and the protocol's metric on the original
// rows beside the same on their shaped copies.

const agree = (a: Agreement): string => `${f3(a.rate)} ± ${f3(a.se)}`;

/** '' when no run of the list carries robustness figures. */
export function robustnessTable(runs: readonly Run[]): string {
  const rows: string[][] = [];
  const first = runs[0];
  if (first === undefined) return '';
  if (first.protocol === 'p1') {
    for (const r of runs)
      if (r.protocol === 'p1')
        for (const b of r.robustness ?? [])
          for (const s of b.shapes)
            rows.push([
              `${b.benchmark}: ${r.recipe}`,
              s.shape,
              String(s.n),
              agree(s.agreement),
              `${(s.strongShare * 100).toFixed(1)}%`,
              `${f3(s.plain.apgr)} ± ${f3(s.plain.apgrSe)}`,
              `${f3(s.shaped.apgr)} ± ${f3(s.shaped.apgrSe)}`,
            ]);
    if (rows.length === 0) return '';
    return `P1 robustness to prompt shape (src/training/shapes.ts, 'eval' templates): decision = strong when score >= the median score of the original rows\n${table(
      ['set: router', 'shape', 'n', 'agreement', 'strong share', 'APGR original', 'APGR shaped'],
      rows,
    )}`;
  }
  if (first.protocol === 'p2') {
    for (const r of runs)
      if (r.protocol === 'p2')
        for (const s of r.robustness?.shapes ?? [])
          rows.push([r.recipe, s.shape, String(s.n), agree(s.agreement), agree(s.agreementKnob0), f3(s.plain.aiq), f3(s.shaped.aiq)]);
    if (rows.length === 0) return '';
    return `P2 robustness to prompt shape: agreement = same chosen model, mean over the ${first.knobs.length} knobs (and at knob 0)\n${table(
      ['router', 'shape', 'n', 'agreement', 'at knob 0', 'AIQ original', 'AIQ shaped'],
      rows,
    )}`;
  }
  for (const r of runs)
    if (r.protocol === 'p3')
      for (const s of r.robustness?.shapes ?? [])
        rows.push([
          r.recipe,
          s.shape,
          String(s.n),
          agree(s.agreement),
          f3(s.plain.score),
          f3(s.shaped.score),
          `${f3(s.shaped.idAccuracy)} / ${f3(s.shaped.oodAccuracy)}`,
        ]);
  if (rows.length === 0) return '';
  return `P3 robustness to prompt shape: agreement = same label (law / finance / health / ood)\n${table(
    ['router', 'shape', 'n', 'agreement', 'score original', 'score shaped', 'shaped ID / OOD'],
    rows,
  )}`;
}
