// Builds a kNN router artifact: the training rows' unit embeddings and their per-model scores, stored
// as little-endian Float32 next to a manifest that says how they were made.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  HNSW_FILE,
  readF32,
  readManifest,
  SCORES_FILE,
  VECTORS_FILE,
  writeF32,
  writeManifest,
  type ManifestInput,
} from '../routers/artifacts.js';
import { buildHnsw, type HnswBuildOptions } from '../routers/knn-hnsw.js';

const UNIT_TOLERANCE = 1e-3;

export async function writeKnnArtifact(
  dir: string,
  vectors: Float32Array[],
  scores: Float32Array[],
  manifest: ManifestInput,
): Promise<void> {
  const rows = vectors.length;
  const dim = manifest.embedder.dim;
  const models = manifest.models.length;
  if (rows === 0) throw new Error('writeKnnArtifact: no rows to write');
  if (scores.length !== rows) throw new Error(`writeKnnArtifact: ${rows} vectors but ${scores.length} score rows`);
  if (manifest.trained_on.rows !== rows) {
    throw new Error(`writeKnnArtifact: manifest.trained_on.rows is ${manifest.trained_on.rows}, but ${rows} rows are being written`);
  }
  vectors.forEach((v, i) => {
    if (v.length !== dim) throw new Error(`writeKnnArtifact: vector ${i} has length ${v.length}, the manifest's embedder.dim is ${dim}`);
    let n = 0;
    for (let j = 0; j < dim; j++) n += v[j]! * v[j]!;
    // Zero vectors (text with no features) are allowed; anything else must be unit length, because
    // the index scores by dot product.
    if (!Number.isFinite(n) || (n !== 0 && Math.abs(Math.sqrt(n) - 1) > UNIT_TOLERANCE)) {
      throw new Error(`writeKnnArtifact: vector ${i} has norm ${Math.sqrt(n)}; embeddings must be unit length`);
    }
  });
  const scoredModels = new Set<number>();
  scores.forEach((s, i) => {
    if (s.length !== models)
      throw new Error(`writeKnnArtifact: score row ${i} has ${s.length} values, the manifest lists ${models} models`);
    let scored = 0;
    for (let c = 0; c < models; c++) {
      const x = s[c]!;
      // NaN: this row did not score this model (partial rows, e.g. from production feedback).
      if (Number.isNaN(x)) continue;
      scored++;
      scoredModels.add(c);
      if (!(x >= 0 && x <= 1)) {
        throw new Error(
          `writeKnnArtifact: score row ${i}, model '${manifest.models[c]}' is ${x}; scores must be in 0..1 (normalise e.g. MT-Bench 1-10 first)`,
        );
      }
    }
    if (scored === 0) throw new Error(`writeKnnArtifact: score row ${i} scores no model (all NaN)`);
  });
  const unscored = manifest.models.filter((_, c) => !scoredModels.has(c));
  if (unscored.length > 0) throw new Error(`writeKnnArtifact: no row scores model(s) ${unscored.join(', ')}`);
  await mkdir(dir, { recursive: true });
  await writeF32(join(dir, VECTORS_FILE), vectors, dim, 'vector');
  await writeF32(join(dir, SCORES_FILE), scores, models, 'score');
  // The manifest goes last: a folder with a manifest is a complete artifact.
  await writeManifest(dir, { format: 'knn', version: 1, ...manifest });
}

/**
 * Prebuilds the approximate (HNSW) graph for `index: hnsw` and stores it as index.hnsw, so a gateway
 * with millions of rows does not rebuild it at every start. Deterministic for a given seed.
 */
export async function writeHnswIndex(dir: string, opts: HnswBuildOptions = {}): Promise<void> {
  const m = await readManifest(dir);
  if (m.format !== 'knn') throw new Error(`writeHnswIndex: ${dir} is a '${m.format}' artifact, not 'knn'`);
  const rows = m.trained_on.rows;
  const vectors = await readF32(dir, VECTORS_FILE, rows * m.embedder.dim);
  const index = await buildHnsw(vectors, rows, m.embedder.dim, opts);
  await index.writeIndex(join(dir, HNSW_FILE));
}
