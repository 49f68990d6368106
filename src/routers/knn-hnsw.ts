// Approximate search for millions of rows through hnswlib-node (a native addon, imported lazily so
// exact-only deployments never load it). Vectors are unit length, so inner-product space gives
// similarity = 1 - distance, the same number exact search computes.
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { ArtifactError } from './artifacts.js';

export interface AnnSearcher {
  /** Writes up to k (row, similarity) pairs, best first, and returns how many were written. */
  search(q: Float32Array, k: number, outIdx: Int32Array, outSim: Float32Array): number;
}

/** Build parameters; fixed defaults and a seed make the graph the same on every build. */
export interface HnswBuildOptions {
  m?: number;
  efConstruction?: number;
  seed?: number;
}

type HnswModule = typeof import('hnswlib-node');
type Hnsw = InstanceType<HnswModule['HierarchicalNSW']>;

export async function importHnswlib(): Promise<HnswModule> {
  try {
    const mod = (await import('hnswlib-node')) as HnswModule & { default?: HnswModule };
    return mod.HierarchicalNSW === undefined && mod.default !== undefined ? mod.default : mod;
  } catch (err) {
    throw new Error(
      "router option index: 'hnsw' needs the native package hnswlib-node (npm install hnswlib-node, with its install script allowed in package.json allowScripts); use index: 'exact' otherwise",
      { cause: err },
    );
  }
}

export async function buildHnsw(vectors: Float32Array, rows: number, dim: number, o: HnswBuildOptions = {}): Promise<Hnsw> {
  const { HierarchicalNSW } = await importHnswlib();
  const index = new HierarchicalNSW('ip', dim);
  index.initIndex({ maxElements: rows, m: o.m ?? 16, efConstruction: o.efConstruction ?? 200, randomSeed: o.seed ?? 100 });
  const point = new Array<number>(dim);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < dim; j++) point[j] = vectors[r * dim + j]!;
    index.addPoint(point, r);
  }
  return index;
}

class HnswSearcher implements AnnSearcher {
  private readonly point: number[];
  constructor(
    private readonly index: Hnsw,
    private readonly rows: number,
    dim: number,
  ) {
    this.point = new Array<number>(dim).fill(0);
  }
  search(q: Float32Array, k: number, outIdx: Int32Array, outSim: Float32Array): number {
    const p = this.point;
    for (let j = 0; j < p.length; j++) p[j] = q[j]!;
    const res = this.index.searchKnn(p, Math.min(k, this.rows));
    const n = res.neighbors.length;
    const order = Array.from({ length: n }, (_, i) => i);
    // Sort best first, ties by row, so results do not depend on the addon's heap order.
    order.sort((a, b) => res.distances[a]! - res.distances[b]! || res.neighbors[a]! - res.neighbors[b]!);
    for (let i = 0; i < n; i++) {
      outIdx[i] = res.neighbors[order[i]!]!;
      outSim[i] = 1 - res.distances[order[i]!]!;
    }
    return n;
  }
}

/**
 * Opens the artifact's prebuilt graph (`index.hnsw`, written by `writeHnswIndex`) or, when there is
 * none, builds one in memory from vectors.f32 (seconds for 100k rows; prebuild for millions).
 */
export async function loadHnsw(
  dir: string,
  file: string,
  rows: number,
  dim: number,
  ef: number | undefined,
  readVectors: () => Promise<Float32Array>,
): Promise<AnnSearcher> {
  const path = join(dir, file);
  let index: Hnsw;
  if (await exists(path)) {
    const { HierarchicalNSW } = await importHnswlib();
    index = new HierarchicalNSW('ip', dim);
    try {
      await index.readIndex(path);
    } catch (err) {
      throw new ArtifactError(dir, file, `cannot read the HNSW index (${(err as Error).message}); rebuild it or delete it`, { cause: err });
    }
    if (index.getCurrentCount() !== rows || index.getNumDimensions() !== dim) {
      throw new ArtifactError(
        dir,
        file,
        `holds ${index.getCurrentCount()} rows of dim ${index.getNumDimensions()}, the manifest says ${rows} of dim ${dim}; rebuild it`,
      );
    }
  } else {
    index = await buildHnsw(await readVectors(), rows, dim);
  }
  index.setEf(Math.max(ef ?? 64, 1));
  return new HnswSearcher(index, rows, dim);
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}
