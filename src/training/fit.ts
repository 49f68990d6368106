import type { Embedder } from '../embedders/types.js';
import type { Dataset } from './dataset.js';
import { embedDataset, rowOf, type Matrix } from './embed-cache.js';
import { trainMlp, type TrainedMlp } from './mlp-train.js';
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

/** Trains the recipe's MLP on the given rows of `X` with targets `Y` (one Float32Array per row, 0..1). */
export async function fitRecipe(
  recipe: Recipe,
  X: Matrix,
  rows: readonly number[],
  Y: readonly Float32Array[],
  output: 'sigmoid' | 'softmax',
  ctx: RunContext,
  sampleWeights?: Float32Array,
): Promise<TrainedMlp> {
  const bar = startProgress(`train ${recipe.name}`, recipe.mlp.epochs, ctx.progress === undefined ? {} : { enabled: ctx.progress });
  try {
    return await trainMlp(
      rows.map((i) => rowOf(X, i)),
      [...Y],
      {
        ...recipe.mlp,
        output,
        seed: recipe.seed,
        ...(sampleWeights === undefined ? {} : { sampleWeights }),
        onEpoch: (e) => bar.update(e + 1),
      },
    );
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
