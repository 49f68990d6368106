// Router artifacts for the routing bench, built from generated prompts (lib/prompts.ts) with the real
// embedders and the real writers: a kNN (exact + prebuilt HNSW graph), an MLP, and a small kNN for the
// use-lite embedder. The scores are random 0/1 outcomes: the bench measures time, not routing quality.
// Built artifacts are kept under the OS temp dir keyed by everything they depend on, so a rerun skips
// the slow part (use-lite embeds ~20-50 ms a prompt here); REBUILD=1 throws the cache away.
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createLexicalEmbedder, LexicalOptions } from '../../src/embedders/lexical.js';
import { createUseLiteEmbedder, UseLiteOptions } from '../../src/embedders/use-lite.js';
import { createStaticEmbedder, StaticOptions } from '../../src/embedders/static.js';
import type { Embedder } from '../../src/embedders/types.js';
import { MANIFEST_FILE, HNSW_FILE, type ManifestInput } from '../../src/routers/artifacts.js';
import { writeHnswIndex, writeKnnArtifact } from '../../src/training/knn-build.js';
import { trainMlp } from '../../src/training/mlp-train.js';
import { seededRandom } from '../../src/util/random.js';
import { writeMlpArtifact } from '../../src/training/onnx-export.js';
import { STREAM, syntheticPrompt } from './prompts.js';

/** Bump when prompts, scores or training settings change: old cached artifacts are then ignored. */
const GENERATION = 1;
export const MODELS = ['strong', 'weak'] as const;
export const LEXICAL_DIM = 512;
/** The embedder settings every policy of the bench uses; artifacts are bound to their ids. */
export const LEXICAL_OPTS = { type: 'lexical', dim: LEXICAL_DIM } as const;
export const USE_LITE_OPTS = { type: 'use-lite', workers: 1 } as const;
/** The shipped distilled table (absolute: the bench's YAML lives in a temp folder). */
export const STATIC_OPTS = { type: 'static', artifact: resolve('embedders/static-use-lite') } as const;

export interface ArtifactKnobs {
  rows: number;
  useLiteRows: number;
  /** Extra kNN over this many rows (exact vs hnsw scaling); 0 = skip. */
  largeRows: number;
  mlpEpochs: number;
  rebuild: boolean;
}

export interface BuiltArtifact {
  dir: string;
  rows: number;
  /** Wall time to build now, or null when reused from the cache. */
  buildMs: number | null;
}

export interface BenchArtifacts {
  cacheDir: string;
  knn: BuiltArtifact;
  mlp: BuiltArtifact;
  knnLarge: BuiltArtifact | null;
  useLiteKnn: BuiltArtifact | null;
  staticKnn: BuiltArtifact | null;
  notes: string[];
}

export const lexicalEmbedder = () => createLexicalEmbedder(LexicalOptions.parse(LEXICAL_OPTS));

function manifest(e: Pick<Embedder, 'id' | 'dim'>, rows: number): ManifestInput {
  return {
    embedder: { id: e.id, dim: e.dim },
    models: [...MODELS],
    trained_on: { file: 'synthetic (bench/lib/prompts.ts)', sha256: '0'.repeat(64), split: 'train', seed: GENERATION, rows },
    metrics: {},
    command: 'bench/routing.ts',
    created_at: new Date().toISOString(),
  };
}

/** Random outcomes: 'strong' solves ~85 % of prompts, 'weak' ~55 %. */
function scoreRows(rows: number): Float32Array[] {
  const r = seededRandom(0xbe7c4 + rows);
  return Array.from({ length: rows }, () => Float32Array.of(r() < 0.85 ? 1 : 0, r() < 0.55 ? 1 : 0));
}

const safe = (s: string) => s.replace(/[^A-Za-z0-9.-]+/g, '_');

/** Runs `build` into `dir` unless a complete artifact (manifest written last, plus `marker`) is there. */
async function cached(dir: string, marker: string, rows: number, rebuild: boolean, build: () => Promise<void>): Promise<BuiltArtifact> {
  if (!rebuild && existsSync(join(dir, MANIFEST_FILE)) && existsSync(join(dir, marker))) return { dir, rows, buildMs: null };
  rmSync(dir, { recursive: true, force: true });
  const t0 = performance.now();
  await build();
  return { dir, rows, buildMs: performance.now() - t0 };
}

async function lexicalKnn(root: string, rows: number, rebuild: boolean): Promise<BuiltArtifact> {
  const e = lexicalEmbedder();
  const dir = join(root, `knn-${safe(e.id)}-r${rows}-g${GENERATION}`);
  return cached(dir, HNSW_FILE, rows, rebuild, async () => {
    const vectors = Array.from({ length: rows }, (_, i) => e.embedSync(syntheticPrompt(STREAM.train, i)));
    await writeKnnArtifact(dir, vectors, scoreRows(rows), manifest(e, rows));
    // Prebuilt, as a deployment would ship it: otherwise every gateway start rebuilds the graph.
    await writeHnswIndex(dir);
  });
}

async function lexicalMlp(root: string, rows: number, epochs: number, rebuild: boolean): Promise<BuiltArtifact> {
  const e = lexicalEmbedder();
  const dir = join(root, `mlp-${safe(e.id)}-r${rows}-e${epochs}-g${GENERATION}`);
  return cached(dir, 'model.onnx', rows, rebuild, async () => {
    const X = Array.from({ length: rows }, (_, i) => e.embedSync(syntheticPrompt(STREAM.train, i)));
    // 512-64-2 as the issue sizes it; a few epochs: only the graph's shape matters for timing.
    const mlp = await trainMlp(X, scoreRows(rows), { hidden: [64], output: 'sigmoid', epochs, lr: 0.005, batchSize: 64, seed: 7 });
    await writeMlpArtifact(dir, mlp, manifest(e, rows));
  });
}

async function useLiteKnn(root: string, rows: number, rebuild: boolean): Promise<BuiltArtifact> {
  const opts = UseLiteOptions.parse(USE_LITE_OPTS);
  const id = `use-lite-d512-m${opts.max_chars}`; // the embedder's id, known before paying for its load
  const dir = join(root, `knn-${safe(id)}-r${rows}-g${GENERATION}`);
  return cached(dir, 'vectors.f32', rows, rebuild, async () => {
    const e = await createUseLiteEmbedder(opts);
    try {
      const vectors = await e.embedMany(Array.from({ length: rows }, (_, i) => syntheticPrompt(STREAM.trainUseLite, i)));
      await writeKnnArtifact(dir, vectors, scoreRows(rows), manifest(e, rows));
    } finally {
      await e.close();
    }
  });
}

async function staticKnn(root: string, rows: number, rebuild: boolean): Promise<BuiltArtifact> {
  const e = await createStaticEmbedder(StaticOptions.parse(STATIC_OPTS), STATIC_OPTS.artifact);
  // The id carries the table's hash, so a rebuilt table gets a fresh artifact.
  const dir = join(root, `knn-${safe(e.id)}-r${rows}-g${GENERATION}`);
  return cached(dir, 'vectors.f32', rows, rebuild, async () => {
    const vectors = Array.from({ length: rows }, (_, i) => e.embedSync(syntheticPrompt(STREAM.train, i)));
    await writeKnnArtifact(dir, vectors, scoreRows(rows), manifest(e, rows));
  });
}

export async function buildArtifacts(k: ArtifactKnobs, log: (line: string) => void): Promise<BenchArtifacts> {
  const cacheDir = join(tmpdir(), 'signalman-bench-routing');
  const notes: string[] = [];
  const step = async <T extends BuiltArtifact | null>(what: string, f: () => Promise<T>): Promise<T> => {
    const a = await f();
    if (a !== null)
      log(`artifact ${what}: ${a.buildMs === null ? 'reused from cache' : `built in ${(a.buildMs / 1000).toFixed(1)} s`} (${a.dir})`);
    return a;
  };
  const knn = await step(`lexical kNN ${k.rows} rows + HNSW graph`, () => lexicalKnn(cacheDir, k.rows, k.rebuild));
  const mlp = await step(`lexical MLP 512-64-2, ${k.mlpEpochs} epochs over ${k.rows} rows`, () =>
    lexicalMlp(cacheDir, k.rows, k.mlpEpochs, k.rebuild),
  );
  const knnLarge =
    k.largeRows > 0 ? await step(`lexical kNN ${k.largeRows} rows + HNSW graph`, () => lexicalKnn(cacheDir, k.largeRows, k.rebuild)) : null;
  let useLite: BuiltArtifact | null = null;
  if (k.useLiteRows > 0) {
    try {
      useLite = await step(`use-lite kNN ${k.useLiteRows} rows`, () => useLiteKnn(cacheDir, k.useLiteRows, k.rebuild));
    } catch (err) {
      notes.push(`use-lite skipped: its model did not load (${(err as Error).message.split('\n')[0]})`);
    }
  }
  let staticArt: BuiltArtifact | null = null;
  try {
    staticArt = await step(`static kNN ${k.rows} rows`, () => staticKnn(cacheDir, k.rows, k.rebuild));
  } catch (err) {
    notes.push(`static skipped: its artifact did not load (${(err as Error).message.split('\n')[0]})`);
  }
  return { cacheDir, knn, mlp, knnLarge, useLiteKnn: useLite, staticKnn: staticArt, notes };
}
