// Synthetic prompts for the routing bench: templates filled from small word lists by a seeded RNG, so
// every run sees the same texts and no dataset text is involved. Prompt `i` of a `stream` is a pure
// function of (stream, i): training rows, query rows and load-generator bodies come from different
// streams and never coincide, which keeps "distinct prompt" cells honest cache misses.
import { seededRandom } from '../../src/util/random.js';

const LANGS = ['Python', 'TypeScript', 'Rust', 'Go', 'Java', 'C++', 'SQL', 'Bash', 'Kotlin', 'Ruby'];
const TASKS = [
  'reverses a linked list',
  'parses a CSV file with quoted fields',
  'merges two sorted arrays',
  'counts word frequencies',
  'validates an email address',
  'flattens a nested list',
  'computes a moving average',
  'finds the longest common prefix',
  'retries an HTTP call with backoff',
  'deduplicates records by key',
  'converts Roman numerals',
  'balances parentheses',
];
const PLACES = [
  'France',
  'Peru',
  'Japan',
  'Kenya',
  'Norway',
  'Chile',
  'Egypt',
  'Canada',
  'Nepal',
  'Ghana',
  'Spain',
  'Laos',
  'Iceland',
  'Mali',
];
const FACTS = ['capital city', 'largest river', 'official language', 'highest mountain', 'currency', 'population'];
const FORMS = ['haiku', 'limerick', 'short story', 'product description', 'cover letter', 'toast', 'sonnet', 'blog intro'];
const SUBJECTS = [
  'autumn rain',
  'a lost umbrella',
  'the first day of school',
  'a lighthouse keeper',
  'coffee',
  'a chess match',
  'the night train',
];
const AUDIENCES = ['a ten-year-old', 'a first-year student', 'a busy manager', 'an expert', 'a new employee'];
const PHENOMENA = [
  'the sky looks blue',
  'ice floats on water',
  'bread rises',
  'tides change twice a day',
  'metal feels cold',
  'planes stay in the air',
];
const WORDS = (
  'the of and to in is that for it as with was on be by this are from at or an but not have which one all were we when ' +
  'there can more if no out so said what up its about into than them only other new some could time these two may first ' +
  'then do any like my now over such our man me even most made after also did many before must through back years where ' +
  'much your way well down should because each just those people how too little state good very make world still own see ' +
  'work long get here between both life being under never day same another know while last might us great old year off ' +
  'come since against go came right used take three system data report budget customer order invoice contract policy ' +
  'meeting project schedule design review test result model number value table chart summary section paragraph draft'
).split(' ');

type Rng = () => number;
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rng, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));

function words(r: Rng, n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(pick(r, WORDS));
  return out.join(' ');
}

const TEMPLATES: ReadonlyArray<(r: Rng) => string> = [
  (r) =>
    `Compute ${int(r, 2, 999)} times ${int(r, 2, 999)} plus ${int(r, 2, 99)}, then divide the result by ${int(r, 2, 49)}. Show each step.`,
  (r) => `Solve for x: ${int(r, 2, 40)}x + ${int(r, 1, 200)} = ${int(r, 1, 900)}. Explain the method briefly.`,
  (r) => `Write a ${pick(r, LANGS)} function that ${pick(r, TASKS)} and include a short docstring and two tests.`,
  (r) => `Why does this ${pick(r, LANGS)} code fail when the input is empty? It ${pick(r, TASKS)}.`,
  (r) => `What is the ${pick(r, FACTS)} of ${pick(r, PLACES)}? Answer in one sentence.`,
  (r) => `Write a ${pick(r, FORMS)} about ${pick(r, SUBJECTS)}.`,
  (r) => `Explain why ${pick(r, PHENOMENA)}, for ${pick(r, AUDIENCES)}.`,
  (r) => `Translate into ${pick(r, ['French', 'German', 'Spanish', 'Japanese'])}: "${words(r, int(r, 6, 16))}".`,
  (r) => `Summarize the following notes in three bullet points: ${words(r, int(r, 30, 90))}.`,
];

/** Prompt `i` of `stream`: one template, sometimes a second sentence, rarely a long pasted paragraph. */
export function syntheticPrompt(stream: number, i: number): string {
  const r = seededRandom((Math.imul(stream + 1, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca77)) >>> 0);
  let text = pick(r, TEMPLATES)(r);
  const shape = r();
  if (shape > 0.6) text += ` Also, ${words(r, int(r, 8, 24))}?`;
  // ~5 % long prompts (pasted context), so p99 sees the length tail the lexical embedder scales with.
  if (shape > 0.95) text = `Context: ${words(r, int(r, 150, 400))}.\n\n${text}`;
  return `${text} (#${i})`; // the index makes every prompt of a stream distinct, even on template collisions
}

/** Streams used by the bench; distinct numbers keep the sets disjoint. */
export const STREAM = { train: 1, trainUseLite: 2, query: 3, gateway: 4, background: 5 } as const;

/** A `messages` body for chat completions. */
export function chatBody(model: string, prompt: string): string {
  return JSON.stringify({ model, messages: [{ role: 'user', content: prompt }] });
}

/** Length summary of a sample of prompts (printed, so readers know what "a prompt" was). */
export function promptStats(stream: number, n: number): { mean: number; p50: number; p99: number; max: number } {
  const lens = Array.from({ length: n }, (_, i) => syntheticPrompt(stream, i).length).sort((a, b) => a - b);
  const at = (q: number) => lens[Math.min(lens.length - 1, Math.ceil(q * lens.length) - 1)]!;
  return { mean: Math.round(lens.reduce((s, x) => s + x, 0) / n), p50: at(0.5), p99: at(0.99), max: lens[lens.length - 1]! };
}
