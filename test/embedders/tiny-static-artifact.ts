import { writeStaticArtifact } from '../../src/embedders/static-artifact.js';
import { readTeacherVocab } from '../../src/training/distill-data.js';
import { seededRandom } from '../../src/util/random.js';

// A small static-embedder artifact over the teacher's real vocabulary (so the tokenizer is the real
// one) with a seeded random table: what the conformance and refusal tests load, built in milliseconds.

export async function writeTinyStaticArtifact(
  dir: string,
  opts: { dim?: number; seed?: number; encoding?: 'int8-row' | 'f32' } = {},
): Promise<void> {
  const dim = opts.dim ?? 16;
  const seed = opts.seed ?? 1;
  const tv = await readTeacherVocab();
  const next = seededRandom(seed);
  const table = Float32Array.from({ length: tv.vocab.length * dim }, () => next() * 2 - 1);
  await writeStaticArtifact(dir, {
    table,
    dim,
    encoding: opts.encoding ?? 'int8-row',
    vocabBytes: tv.bytes,
    vocabSource: tv.source,
    reserved: 6,
    projection: null,
    teacher: { id: 'random', package: 'none', version: '0' },
    build: {
      seed,
      command: 'test/embedders/tiny-static-artifact.ts',
      data: [],
      pca: { fitted_on: 'none', dims: dim, captured_energy_val: 0 },
      weighting: { kind: 'uniform', a: null, counted_on_tokens: 0 },
      linear_map: false,
      extra_pairs: null,
      finetune: null,
    },
    agreement: {},
  });
}
