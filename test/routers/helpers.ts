// Small routing data the tests make themselves: templated prompts in a few topics, each with known
// per-model outcomes, embedded with the real lexical embedder. No dataset text enters the repository.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { createLexicalEmbedder, LexicalOptions } from '../../src/embedders/lexical.js';
import type { ManifestInput } from '../../src/routers/artifacts.js';
import { trainMlp, type TrainedMlp } from '../../src/training/mlp-train.js';
import { seededRandom } from '../../src/util/random.js';
import { writeKnnArtifact } from '../../src/training/knn-build.js';
import { writeMlpArtifact } from '../../src/training/onnx-export.js';

export const embedder = createLexicalEmbedder(LexicalOptions.parse({ type: 'lexical', dim: 64 }));

const COUNTRIES = ['France', 'Peru', 'Japan', 'Kenya', 'Norway', 'Chile', 'Egypt', 'Canada', 'Nepal', 'Ghana', 'Spain', 'Laos'];
const TASKS = [
  'reverses a linked list',
  'parses a CSV file',
  'merges two sorted arrays',
  'counts word frequencies',
  'validates an email address',
  'flattens a nested list',
];

export type Topic = 'math' | 'geo' | 'code';
export const TOPICS: readonly Topic[] = ['math', 'geo', 'code'];

export function prompt(topic: Topic, i: number): string {
  const r = seededRandom(1000 + i * 7 + TOPICS.indexOf(topic));
  const n = () => 2 + Math.floor(r() * 97);
  switch (topic) {
    case 'math':
      return `Compute ${n()} times ${n()} plus ${n()}, then divide the result by ${n()}. Show each arithmetic step.`;
    case 'geo':
      return `What is the capital city of ${COUNTRIES[i % COUNTRIES.length]}? Answer with the city name.`;
    case 'code':
      return `Write a Python function that ${TASKS[i % TASKS.length]} and include a short docstring.`;
  }
}

/** Prompts no router here was trained on. */
export const OUT_OF_DOMAIN = [
  'Bonjour, je voudrais réserver une table pour deux personnes ce soir.',
  'lol ok see u tmrw!!',
  'Describe the smell of rain on hot asphalt in a haiku.',
  'Zxqv plorth gneebish wumpf?',
];

/**
 * Model i's outcome on a topic. Model 0 ('strong') solves everything, model 1 ('weak') fails math;
 * further models (for 9-candidate tests) have a fixed per-topic skill.
 */
export function outcome(topic: Topic, model: number): number {
  if (model === 0) return 1;
  if (model === 1) return topic === 'math' ? 0 : 1;
  return ((model * 5 + TOPICS.indexOf(topic) * 3) % 4) / 3;
}

export function modelNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => (i === 0 ? 'strong' : i === 1 ? 'weak' : `m${i}`));
}

export interface Rows {
  texts: string[];
  topics: Topic[];
  vectors: Float32Array[];
  scores: Float32Array[];
}

export function makeRows(perTopic: number, models: number, offset = 0): Rows {
  const rows: Rows = { texts: [], topics: [], vectors: [], scores: [] };
  for (const topic of TOPICS) {
    for (let i = offset; i < offset + perTopic; i++) {
      const text = prompt(topic, i);
      rows.texts.push(text);
      rows.topics.push(topic);
      rows.vectors.push(embedder.embedSync(text));
      rows.scores.push(Float32Array.from({ length: models }, (_, m) => outcome(topic, m)));
    }
  }
  return rows;
}

export function manifestFor(models: string[], rows: number, extra: Partial<ManifestInput> = {}): ManifestInput {
  return {
    embedder: { id: embedder.id, dim: embedder.dim },
    models,
    trained_on: { file: 'synthetic', sha256: '0'.repeat(64), split: 'train', seed: 1, rows },
    metrics: {},
    command: 'test',
    created_at: '2025-01-01T00:00:00.000Z',
    ...extra,
  };
}

export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'signalman-routers-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export async function makeKnnArtifact(models = 2, perTopic = 12): Promise<{ dir: string; rows: Rows }> {
  const dir = await tempDir();
  const rows = makeRows(perTopic, models);
  await writeKnnArtifact(dir, rows.vectors, rows.scores, manifestFor(modelNames(models), rows.vectors.length));
  return { dir, rows };
}

export async function trainQualityMlp(models = 2, perTopic = 12): Promise<{ mlp: TrainedMlp; rows: Rows }> {
  const rows = makeRows(perTopic, models);
  const mlp = await trainMlp(rows.vectors, rows.scores, { hidden: [16], output: 'sigmoid', epochs: 60, lr: 0.01, batchSize: 8, seed: 7 });
  return { mlp, rows };
}

export async function makeMlpArtifact(models = 2): Promise<{ dir: string; mlp: TrainedMlp; rows: Rows }> {
  const dir = await tempDir();
  const { mlp, rows } = await trainQualityMlp(models);
  await writeMlpArtifact(dir, mlp, manifestFor(modelNames(models), rows.vectors.length));
  return { dir, mlp, rows };
}

/** A softmax topic classifier with an 'ood' label trained on out-of-domain negatives. */
export async function makeClassifierArtifact(guardThreshold?: number): Promise<{ dir: string; labels: string[] }> {
  const dir = await tempDir();
  const labels = [...TOPICS, 'ood'];
  const rows = makeRows(10, 1);
  const X = [...rows.vectors];
  const Y = rows.topics.map((t) => Float32Array.from(labels, (l) => (l === t ? 1 : 0)));
  for (let rep = 0; rep < 3; rep++) {
    for (const t of OUT_OF_DOMAIN) {
      X.push(embedder.embedSync(`${t} ${'!'.repeat(rep)}`));
      Y.push(Float32Array.from(labels, (l) => (l === 'ood' ? 1 : 0)));
    }
  }
  const mlp = await trainMlp(X, Y, { hidden: [16], activation: 'tanh', output: 'softmax', epochs: 80, lr: 0.01, batchSize: 8, seed: 3 });
  const guard =
    guardThreshold === undefined ? {} : { guard: { kind: 'max_prob' as const, threshold: guardThreshold, calibration: 'test' } };
  await writeMlpArtifact(dir, mlp, manifestFor(['strong', 'weak'], X.length, { labels, ...guard }));
  return { dir, labels };
}

export function ctxFor(candidates: Array<{ backend: string; as: string }>) {
  return { resolvePath: (p: string) => p, embedder, candidates };
}

/** Candidates named after the artifact's models: backend 'b-strong' is known as 'strong', etc. */
export function candidatesFor(models: number): Array<{ backend: string; as: string }> {
  return modelNames(models).map((m) => ({ backend: `b-${m}`, as: m }));
}
