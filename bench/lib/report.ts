// Output: fixed-width tables on stdout and one JSON file per run under bench/results/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export type Cell = string | number | null;

/** Prints rows as an aligned table; numbers right-aligned, null shown as '-'. */
export function printTable(title: string, columns: readonly string[], rows: readonly Cell[][]): void {
  const text = rows.map((r) => r.map((c) => (c === null ? '-' : String(c))));
  const width = columns.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]?.length ?? 0)));
  const numeric = columns.map((_, i) => rows.every((r) => r[i] === null || typeof r[i] === 'number' || /^[-+]?[\d.]+/.test(String(r[i]))));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (numeric[i] && i > 0 ? c.padStart(width[i]!) : c.padEnd(width[i]!))).join('  ');
  console.log(`\n${title}`);
  console.log(line(columns));
  console.log(width.map((w) => '-'.repeat(w)).join('  '));
  for (const r of text) console.log(line(r));
}

export const fmt = {
  ms: (v: number | null | undefined, digits = 3): string | null => (v == null || Number.isNaN(v) ? null : v.toFixed(digits)),
  signedMs: (v: number | null | undefined): string | null => (v == null || Number.isNaN(v) ? null : `${v >= 0 ? '+' : ''}${v.toFixed(3)}`),
  signedUs: (v: number | null | undefined): string | null => (v == null || Number.isNaN(v) ? null : `${v >= 0 ? '+' : ''}${v.toFixed(1)}`),
  int: (v: number | null | undefined): string | null => (v == null || Number.isNaN(v) ? null : Math.round(v).toString()),
  ratio: (v: number | null | undefined): string | null => (v == null || Number.isNaN(v) ? null : `${v.toFixed(2)}x`),
  mib: (bytes: number | null | undefined): string | null => (bytes == null || Number.isNaN(bytes) ? null : (bytes / 2 ** 20).toFixed(0)),
};

export function median(values: readonly number[]): number {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export const RESULTS_DIR = resolve(import.meta.dirname, '..', '..', '..', 'bench', 'results'); // from dist/bench/lib

/** Writes `<suite>-<stamp>.json` and overwrites `latest-<suite>.json`; returns the first path. */
export function writeResults(suite: string, stampText: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const json = JSON.stringify(data, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n';
  const file = join(RESULTS_DIR, `${suite}-${stampText}.json`);
  writeFileSync(file, json);
  writeFileSync(join(RESULTS_DIR, `latest-${suite}.json`), json);
  return file;
}
