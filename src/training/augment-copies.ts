import type { Embedder } from '../embedders/types.js';
import type { Dataset } from './dataset.js';
import { type RunContext, embedAll } from './fit.js';
import { type Matrix, joinRows } from './embed-cache.js';
import { type Augment, stemDataset } from './augment.js';
import { SHAPES, type Shape, shapeDataset } from './shapes.js';

// Training augmentation shared by the protocols: the recipe's `augment` turns each train row into
// extra rows with the same outcomes. 'stems': the option-less copy (augment.ts); 'shapes': the
// option-less copy plus the chat, system-prompt and multi-turn copies of shapes.ts, from the 'train'
// template pool (measurements use the disjoint 'eval' pool); 'stem-chat': the option-less and chat ones.

/** Copy datasets of `rows` of `ds` for one augmentation kind. */
export function copySets(ds: Dataset, rows: readonly number[], kind: Augment): Array<{ ds: Dataset; source: number[] }> {
  if (kind === 'stems') return [stemDataset(ds, rows)];
  const shapes: readonly Shape[] = kind === 'stem-chat' ? ['stem', 'chat'] : SHAPES;
  return shapes.map((s) => shapeDataset(ds, rows, s, 'train'));
}

/**
 * Vectors of `train` rows of `ds` (from `X`) followed by their copies; `source[k]` is the `ds` row that
 * row k of the result stands for. Copies are made for all of `made` (one cache file per copy kind,
 * whatever part of it a CV fold trains on) and then cut to `train`, so a fold never trains on a copy
 * of a row it is scored on.
 */
export async function withCopies(
  embedder: Embedder,
  ds: Dataset,
  X: Matrix,
  train: readonly number[],
  kind: Augment,
  ctx: RunContext,
  made: readonly number[] = train,
): Promise<{ X: Matrix; source: number[] }> {
  const inTrain = new Set(train);
  const parts: Array<readonly [Matrix, readonly number[]]> = [[X, train]];
  const source = [...train];
  for (const set of copySets(ds, made, kind)) {
    const XS = await embedAll(embedder, set.ds, ctx);
    const keep = set.source.flatMap((i, k) => (inTrain.has(i) ? [k] : []));
    parts.push([XS, keep]);
    for (const k of keep) source.push(set.source[k]!);
  }
  return { X: joinRows(...parts), source };
}
