import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { PromptTextOptions, extractPromptText } from '../routers/prompt-text.js';

// Routing-outcome datasets (schema: ../shared/datasets/README.md) and the fixed splits of
// ../shared/datasets/PROTOCOLS.md. Splits are by sha256 so that any language picks the same rows.

export const OutcomeRow = z.object({
  id: z.string().min(1),
  benchmark: z.string().min(1),
  category: z.string(),
  prompt: z.string(),
  turns: z.array(z.string()).optional(),
  scores: z.record(z.string(), z.number().finite()).refine((s) => Object.keys(s).length > 0, 'needs at least one model'),
  score_scale: z.string().optional(),
  // README: every row has it; a file without it is treated as clean rather than refused.
  contaminated: z.boolean().default(false),
});
export type OutcomeRow = z.infer<typeof OutcomeRow>;

export const ModelPrices = z.record(
  z.string(),
  z.object({ input_per_mtok: z.number().nonnegative(), output_per_mtok: z.number().nonnegative() }).loose(),
);
export type ModelPrices = z.infer<typeof ModelPrices>;

export class DatasetError extends Error {
  constructor(
    readonly file: string,
    readonly line: number | null,
    reason: string,
  ) {
    super(`${file}${line === null ? '' : `:${line}`}: ${reason}`);
    this.name = 'DatasetError';
  }
}

export interface Dataset {
  file: string;
  sha256: string;
  /** Clean rows, file order. */
  rows: OutcomeRow[];
  /** Rows left out because `contaminated: true`. */
  contaminated: number;
}

/** PROTOCOLS.md: `int(sha256(utf8(s)).hexdigest()[0:8], 16) % 2`; 0 trains, 1 tests. */
export function bucket(s: string): 0 | 1 {
  const h = createHash('sha256').update(s, 'utf8').digest();
  return (h[3]! & 1) === 1 ? 1 : 0; // the low bit of the first 4 bytes decides the parity
}

export const sha256Hex = (buf: Buffer | string): string => createHash('sha256').update(buf).digest('hex');

const describeIssue = (i: z.core.$ZodIssue): string => {
  const path = i.path.length === 0 ? 'row' : `field '${i.path.map(String).join('.')}'`;
  return `${path}: ${i.message}`;
};

/** Parses JSONL text; every problem names the line and the field. Contaminated rows are dropped. */
/** `sameModels` (default true): every row must score the same models as the first. */
export function parseJsonl(text: string, file: string, opts: { sameModels?: boolean } = {}): Omit<Dataset, 'sha256'> {
  const rows: OutcomeRow[] = [];
  const seen = new Set<string>();
  let contaminated = 0;
  let models: string | null = null;
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!.trim();
    if (line === '') continue;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch (err) {
      throw new DatasetError(file, n + 1, `not valid JSON (${(err as Error).message})`);
    }
    const parsed = OutcomeRow.safeParse(raw);
    if (!parsed.success) throw new DatasetError(file, n + 1, parsed.error.issues.map(describeIssue).join('; '));
    const row = parsed.data;
    if (seen.has(row.id)) throw new DatasetError(file, n + 1, `duplicate id '${row.id}'`);
    seen.add(row.id);
    const key = Object.keys(row.scores).sort().join(',');
    if (opts.sameModels ?? true) {
      if (models === null) models = key;
      else if (key !== models)
        throw new DatasetError(file, n + 1, `field 'scores': expected models [${models}] as on the first row, got [${key}]`);
    }
    if (row.contaminated) contaminated++;
    else rows.push(row);
  }
  if (rows.length === 0) throw new DatasetError(file, null, 'no clean rows (empty file, or every row contaminated)');
  return { file, rows, contaminated };
}

/**
 * `partial: true` lets rows score different subsets of the models (production feedback scores the one
 * backend that answered); only kNN training takes such files. Default: every row scores the same models.
 */
export async function readDataset(file: string, opts: { partial?: boolean } = {}): Promise<Dataset> {
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch (err) {
    throw new DatasetError(
      file,
      null,
      `cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)}); pass --data DIR or --test FILE`,
    );
  }
  return { ...parseJsonl(buf.toString('utf8'), file, { sameModels: opts.partial !== true }), sha256: sha256Hex(buf) };
}

export async function readPrices(file: string): Promise<ModelPrices> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new DatasetError(file, null, `cannot read model prices: ${(err as Error).message}`);
  }
  const parsed = ModelPrices.safeParse(raw);
  if (!parsed.success) throw new DatasetError(file, null, parsed.error.issues.map(describeIssue).join('; '));
  return parsed.data;
}

const defaultTextOpts = PromptTextOptions.parse({});

/** The text a router sees for a row: the same extraction the gateway applies to a one-message chat. */
export const rowText = (row: OutcomeRow, opts: PromptTextOptions = defaultTextOpts): string =>
  extractPromptText({ messages: [{ role: 'user', content: row.prompt }] }, opts);

/** Model names of a dataset (every model any row scores), sorted: the order of every score vector and MLP output. */
export const modelsOf = (rows: readonly OutcomeRow[]): string[] => [...new Set(rows.flatMap((r) => Object.keys(r.scores)))].sort();

export const DATA_FILES = {
  mmlu: 'routellm/mmlu.jsonl',
  gsm8k: 'routellm/gsm8k.jsonl',
  mtBench: 'routellm/mt-bench.jsonl',
  llmrouter: 'llmrouter/train.jsonl',
  prices: 'llmrouter/models.json',
} as const;

export const dataPath = (dir: string, f: keyof typeof DATA_FILES): string => join(dir, DATA_FILES[f]);

export const splitById = (rows: readonly OutcomeRow[]): { train: OutcomeRow[]; test: OutcomeRow[] } => ({
  train: rows.filter((r) => bucket(r.id) === 0),
  test: rows.filter((r) => bucket(r.id) === 1),
});

export const P3_DOMAINS = {
  law: ['professional_law', 'jurisprudence', 'international_law'],
  finance: ['professional_accounting', 'econometrics', 'high_school_macroeconomics', 'high_school_microeconomics'],
  health: [
    'clinical_knowledge',
    'college_medicine',
    'professional_medicine',
    'anatomy',
    'medical_genetics',
    'nutrition',
    'virology',
    'human_aging',
  ],
} as const;
export type P3Domain = keyof typeof P3_DOMAINS;
export type P3Label = P3Domain | 'ood';
export const P3_LABELS: readonly P3Label[] = ['law', 'finance', 'health', 'ood'];

const domainOfCategory = new Map<string, P3Domain>(
  (Object.entries(P3_DOMAINS) as [P3Domain, readonly string[]][]).flatMap(([d, cats]) => cats.map((c) => [c, d] as const)),
);

const isP3Domain = (s: string): s is P3Domain => Object.hasOwn(P3_DOMAINS, s);

/**
 * The P3 domain of a row, or null when it is out of domain: an MMLU row by its subject; a row of the
 * project's own chat prompts (benchmark 'chat', data/chat/) by its category, which is its label.
 */
export const p3DomainOf = (row: OutcomeRow): P3Domain | null =>
  row.benchmark === 'mmlu'
    ? (domainOfCategory.get(row.category) ?? null)
    : row.benchmark === 'chat' && isP3Domain(row.category)
      ? row.category
      : null;

export interface LabeledRow {
  row: OutcomeRow;
  label: P3Label;
}

export interface P3Split {
  /** In-domain train rows plus the allowed negatives. */
  train: LabeledRow[];
  /** In-domain test rows plus every out-of-domain test set. */
  test: LabeledRow[];
}

/** PROTOCOLS.md P3: in-domain split by bucket(id); MMLU negatives by bucket(category); llmrouter by bucket(id). */
export function p3Split(mmlu: readonly OutcomeRow[], llmrouter: readonly OutcomeRow[], oodOnly: readonly OutcomeRow[]): P3Split {
  const train: LabeledRow[] = [];
  const test: LabeledRow[] = [];
  for (const row of mmlu) {
    const d = p3DomainOf(row);
    if (d !== null) (bucket(row.id) === 0 ? train : test).push({ row, label: d });
    else (bucket(row.category) === 0 ? train : test).push({ row, label: 'ood' });
  }
  for (const row of llmrouter) (bucket(row.id) === 0 ? train : test).push({ row, label: 'ood' });
  for (const row of oodOnly) test.push({ row, label: 'ood' });
  return { train, test };
}

const normalizeForOverlap = (s: string): string => s.toLowerCase().replace(/\s+/g, ' ').trim();
const OVERLAP_KEY = 48;

/**
 * A test for "this training prompt contains one of these test prompts" (after lower-casing and
 * collapsing white space), so that no protocol trains on GSM8K or MT-Bench questions that other
 * datasets quote (llmrouter embeds a few hundred GSM8K questions in its own prompts).
 */
export function overlapChecker(testRows: readonly OutcomeRow[]): (row: OutcomeRow) => boolean {
  const keys = new Set<string>();
  const short = new Set<string>();
  for (const r of testRows) {
    const t = normalizeForOverlap(r.prompt);
    if (t.length >= OVERLAP_KEY) keys.add(t.slice(0, OVERLAP_KEY));
    else if (t.length > 0) short.add(t);
  }
  return (row) => {
    const t = normalizeForOverlap(row.prompt);
    if (short.has(t)) return true;
    // Quoted questions start at a word boundary; checking only there keeps this linear and quick.
    for (let p = 0; p + OVERLAP_KEY <= t.length; p++) {
      if ((p === 0 || t.charCodeAt(p - 1) === 32) && keys.has(t.slice(p, p + OVERLAP_KEY))) return true;
    }
    return false;
  };
}

/** A score mapped to 0..1 for training targets: MT-Bench-style 1-10 judgements become (s - 1) / 9. */
export function unitScore(row: OutcomeRow, model: string): number {
  const v = row.scores[model];
  if (v === undefined) throw new DatasetError(row.id, null, `no score for model '${model}'`);
  const s = row.score_scale === '1-10' || v > 1 ? (v - 1) / 9 : v;
  return Math.min(1, Math.max(0, s));
}

/** Checks every named model has a score on every row; the error names the file and what it holds. */
export function requireModels(ds: Pick<Dataset, 'file' | 'rows'>, models: readonly string[]): void {
  const have = modelsOf(ds.rows);
  const missing = models.filter((m) => !have.includes(m));
  if (missing.length > 0)
    throw new DatasetError(
      ds.file,
      null,
      `field 'scores': expected models [${models.join(', ')}], missing [${missing.join(', ')}]; the file has [${have.join(', ')}]`,
    );
}
