import type { Embedder } from '../embedders/types.js';
import type { Dataset } from './dataset.js';
import { embedDataset, rowOf, type Matrix } from './embed-cache.js';
import { trainMlp, type TrainedMlp } from './mlp-train.js';
import { trainEnsemble } from './ensemble.js';
import { isConcatEmbedder } from '../embedders/concat.js';
import { startProgress } from './progress.js';
import { type Recipe, createEmbedder } from './recipes.js';

// Glue shared by the three protocols: embed datasets once per embedder (through the disk cache),
// train a recipe's MLP on chosen rows, predict on others.

export interface RunContext {
  dataDir: string;
  /** Embedding cache folder, or null for none. */
  cacheDir: string | null;
  /** Progress bars: undefined = automatic (TTY and not CI). */
  progress?: boolean;
}

/** Lazily created embedders, one per recipe embedder spec, closed together at the end. */
export class EmbedderPool {
  private readonly made = new Map<string, Promise<Embedder>>();
  get(spec: Recipe['embedder']): Promise<Embedder> {
    const key = JSON.stringify(spec);
    let e = this.made.get(key);
    if (e === undefined) {
      e = createEmbedder(spec);
      this.made.set(key, e);
    }
    return e;
  }
  async close(): Promise<void> {
    for (const e of this.made.values()) await (await e).close();
    this.made.clear();
  }
}

export async function embedAll(embedder: Embedder, ds: Dataset, ctx: RunContext): Promise<Matrix> {
  const name = ds.file.split('/').slice(-2).join('/');
  return embedDataset(embedder, ds, {
    cacheDir: ctx.cacheDir,
    label: `embed ${name}`,
    ...(ctx.progress === undefined ? {} : { progress: ctx.progress }),
  });
}

/** What some recipes need beyond vectors and targets (ensembles: the input's parts, row categories). */
export interface FitExtras {
  /** The embedder that made X: an ensemble member may read one of a concat embedder's parts. */
  embedder?: Embedder;
  /** Category of every row of X (indexed like X, not like `rows`); for category-prior members. */
  categories?: readonly string[];
}

/** [start, end) of each member's part of a concat embedder's vector; the whole vector otherwise. */
export function slicesOf(embedder: Embedder): Array<[number, number]> {
  if (!isConcatEmbedder(embedder)) return [[0, embedder.dim]];
  let at = 0;
  return embedder.members.map((m) => {
    const s: [number, number] = [at, at + m.dim];
    at += m.dim;
    return s;
  });
}

/** Trains the recipe's model on the given rows of `X` with targets `Y` (one Float32Array per row, 0..1). */
export async function fitRecipe(
  recipe: Recipe,
  X: Matrix | readonly Float32Array[],
  rows: readonly number[],
  Y: readonly Float32Array[],
  output: 'sigmoid' | 'softmax',
  ctx: RunContext,
  sampleWeights?: Float32Array,
  extras: FitExtras = {},
): Promise<TrainedMlp> {
  // Rows may come as their own vectors (P3's items): no copy into one matrix first.
  const rowAt = Array.isArray(X) ? (i: number) => (X as readonly Float32Array[])[i]! : (i: number) => rowOf(X as Matrix, i);
  const dim = Array.isArray(X) ? (X as readonly Float32Array[])[0]!.length : (X as Matrix).dim;
  if (recipe.ensemble !== undefined) {
    const members = recipe.ensemble;
    if (output === 'softmax' && members.some((m) => m.kind !== 'quality' && m.kind !== 'category-prior'))
      throw new Error(`recipe ${recipe.name}: a softmax ensemble (a classifier) takes 'quality' and 'category-prior' members only`);
    const epochs = members.reduce((s, m) => s + (m.mlp?.epochs ?? 1), 0);
    const bar = startProgress(`train ${recipe.name}`, epochs, ctx.progress === undefined ? {} : { enabled: ctx.progress });
    const before = members.map((_, k) => members.slice(0, k).reduce((s, m) => s + (m.mlp?.epochs ?? 1), 0));
    const cats = extras.categories;
    try {
      return await trainEnsemble(members, {
        X: rows.map(rowAt),
        Y,
        ...(cats === undefined ? {} : { categories: rows.map((i) => cats[i]!) }),
        slices: extras.embedder === undefined ? [[0, dim]] : slicesOf(extras.embedder),
        output,
        ...(sampleWeights === undefined ? {} : { sampleWeights }),
        onEpoch: (k, e) => bar.update(before[k]! + e + 1),
      });
    } finally {
      bar.stop();
    }
  }
  const mlp = recipe.mlp;
  if (mlp === undefined) throw new Error(`recipe ${recipe.name} has neither mlp settings nor an ensemble`);
  const bar = startProgress(`train ${recipe.name}`, mlp.epochs, ctx.progress === undefined ? {} : { enabled: ctx.progress });
  try {
    return await trainMlp(rows.map(rowAt), [...Y], {
      ...mlp,
      output,
      seed: recipe.seed,
      ...(sampleWeights === undefined ? {} : { sampleWeights }),
      onEpoch: (e) => bar.update(e + 1),
    });
  } finally {
    bar.stop();
  }
}

/** Row-major predictions (rows.length x outputs). */
export function predictRows(mlp: TrainedMlp, X: Matrix, rows: readonly number[]): Float32Array {
  const k = mlp.spec.outputDim;
  const out = new Float32Array(rows.length * k);
  rows.forEach((r, i) => out.set(mlp.predict(rowOf(X, r)), i * k));
  return out;
}

export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
