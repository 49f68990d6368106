import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vi } from 'vitest';
import { createConcatEmbedder, ConcatOptions, type ConcatEmbedder } from '../../src/embedders/concat.js';
import { seededRandom } from '../../src/util/random.js';
import type { EnsembleMemberRecipe } from '../../src/training/ensemble.js';
import type { Protocol, Recipe } from '../../src/training/recipes.js';

// A tiny datasets folder with the layout and schema of ../shared/datasets, written by the tests
// themselves: prompts are made-up word lists, so no real dataset text is ever copied.

const TOPICS: Record<string, string[]> = {
  professional_law: ['tort', 'plaintiff', 'statute', 'court', 'contract', 'negligence'],
  jurisprudence: ['justice', 'natural law', 'legal positivism', 'rights', 'court'],
  econometrics: ['regression', 'variance', 'estimator', 'inflation', 'gdp'],
  clinical_knowledge: ['patient', 'diagnosis', 'symptom', 'clinical', 'dose'],
  anatomy: ['muscle', 'bone', 'nerve', 'artery', 'patient'],
  astronomy: ['planet', 'star', 'orbit', 'galaxy', 'telescope'],
  world_religions: ['temple', 'ritual', 'scripture', 'monk', 'pilgrimage'],
  computer_security: ['malware', 'encryption', 'firewall', 'exploit', 'password'],
  prehistory: ['stone tool', 'neolithic', 'hunter', 'cave', 'bronze'],
  virology: ['virus', 'capsid', 'infection', 'vaccine', 'patient'],
};

function sentence(next: () => number, words: string[], hard: boolean): string {
  const pick = () => words[Math.floor(next() * words.length)]!;
  const body = Array.from({ length: 8 }, pick).join(' ');
  return `${hard ? 'Compute the integral and derive the limit: ' : 'Which is true? '}${body}\nA. one\nB. two\nAnswer:`;
}

export function writeFixture(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sm-data-'));
  mkdirSync(join(dir, 'routellm'));
  mkdirSync(join(dir, 'llmrouter'));
  const next = seededRandom(42);
  const mmlu: object[] = [];
  for (const [cat, words] of Object.entries(TOPICS)) {
    for (let n = 0; n < 40; n++) {
      // "Hard" prompts: the weak model fails, the strong one succeeds; the text says which they are.
      const hard = next() < 0.35;
      const strong = hard ? 1 : next() < 0.9 ? 1 : 0;
      const weak = hard ? 0 : next() < 0.85 ? 1 : 0;
      mmlu.push({
        id: `mmlu/${cat}/${n}`,
        benchmark: 'mmlu',
        category: cat,
        prompt: sentence(next, words, hard),
        scores: { 'gpt-4-1106-preview': strong, 'mixtral-8x7b-instruct-v0.1': weak },
        contaminated: n === 39,
      });
    }
  }
  const small = (bench: string, n: number, scale10: boolean): object[] =>
    Array.from({ length: n }, (_, i) => {
      const hard = i % 3 === 0;
      return {
        id: `${bench}/${i}`,
        benchmark: bench,
        category: bench === 'gsm8k' ? 'grade-school-math' : 'writing',
        prompt: sentence(next, ['apples', 'train', 'miles', 'dollars', 'story'], hard),
        scores: scale10
          ? { 'gpt-4-1106-preview': 9, 'mixtral-8x7b-instruct-v0.1': hard ? 6 : 8.5 }
          : { 'gpt-4-1106-preview': 1, 'mixtral-8x7b-instruct-v0.1': hard ? 0 : 1 },
        ...(scale10 ? { score_scale: '1-10' } : {}),
        contaminated: false,
      };
    });
  const llm = Array.from({ length: 240 }, (_, i) => {
    const kind = i % 3; // 0: easy for all, 1: needs mid, 2: needs dear
    const words = kind === 0 ? ['capital', 'color', 'animal'] : kind === 1 ? ['python', 'function', 'list'] : ['proof', 'theorem', 'lemma'];
    return {
      id: `llmrouter/train/${i}`,
      benchmark: 'llmrouter',
      category: `cluster-${kind}`,
      prompt: sentence(next, words, false),
      scores: { cheap: kind === 0 ? 1 : 0, mid: kind <= 1 ? 1 : 0, dear: next() < 0.95 ? 1 : 0 },
      contaminated: false,
    };
  });
  const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
  writeFileSync(join(dir, 'routellm', 'mmlu.jsonl'), jsonl(mmlu));
  writeFileSync(join(dir, 'routellm', 'gsm8k.jsonl'), jsonl(small('gsm8k', 30, false)));
  writeFileSync(join(dir, 'routellm', 'mt-bench.jsonl'), jsonl(small('mt-bench', 12, true)));
  writeFileSync(join(dir, 'llmrouter', 'train.jsonl'), jsonl(llm));
  const price = (p: number) => ({ input_per_mtok: p, output_per_mtok: p });
  writeFileSync(join(dir, 'llmrouter', 'models.json'), JSON.stringify({ cheap: price(0.1), mid: price(0.2), dear: price(0.9) }));
  return dir;
}

/** Silences the CLI under test (stdout and stderr) and returns what it wrote to stdout; undo with vi.restoreAllMocks(). */
export function quiet(): string[] {
  const stdout: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => (stdout.push(String(s)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  return stdout;
}

/** A real concat embedder that is fast to train on: two lexical members of 64 and 32 dims ([0, 64), [64, 96)). */
export async function smallConcat(): Promise<ConcatEmbedder> {
  return createConcatEmbedder(
    ConcatOptions.parse({
      type: 'concat',
      members: [
        { type: 'lexical', dim: 64 },
        { type: 'lexical', dim: 32, char_ngram_max: 3 },
      ],
    }),
    { resolvePath: (p) => p },
  );
}

/** A throwaway ensemble recipe on a concat embedder (not shipped, seed 1), for fitting tests. */
export const ensembleRecipe = (name: string, protocol: Protocol, ensemble: EnsembleMemberRecipe[]): Recipe => ({
  name,
  protocol,
  embedder: { type: 'concat' },
  ensemble,
  seed: 1,
  shipped: false,
  note: '',
});
