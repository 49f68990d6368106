import { z } from 'zod';
import { type Dataset, sha256Hex } from './dataset.js';
import { questionStem, stemDataset } from './augment.js';
import { PromptTextOptions, extractPromptText } from '../routers/prompt-text.js';
import { hashSeeded32 } from '../util/hash.js';

// Prompt shapes (issue #15, item 3): a dataset row rewritten the way people write to a chat gateway,
// as OpenAI `messages`. The routers learn from MMLU-shaped prompts; these copies show (eval) and
// teach (training augmentation) how decisions hold up when the same question comes as a chat request,
// behind a system prompt and a greeting, or after an unrelated exchange. The text a router sees is cut
// from the messages by the gateway's own extraction (routers/prompt-text.ts), so eval measures what
// production would decide. Templates are chosen per row by a seeded hash of its id (no Math.random),
// and come in two disjoint pools: training copies use 'train' templates, measurements use 'eval'
// ones, so a router cannot score well by learning the measured templates by heart.

/** Bump when a template, pool or rule below changes: it is part of every shaped dataset's cache key. */
export const SHAPES_VERSION = 'shapes/v1';

export const SHAPES = ['stem', 'chat', 'system', 'multi-turn'] as const;
export type Shape = (typeof SHAPES)[number];
export type TemplatePool = 'train' | 'eval';

/** The messages we make: OpenAI chat messages with string content. */
export const ShapedMessage = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string().min(1) }).strict();
export type ShapedMessage = z.infer<typeof ShapedMessage>;

type Pools<T> = Record<TemplatePool, readonly T[]>;

/** `{q}` is the question (with or without its options). The brief's own examples are measured ('eval'). */
const CHAT: Pools<string> = {
  eval: [
    'Can you help me with this?\n\n{q}',
    'Quick question: {q}',
    "I'm studying for an exam and got stuck: {q}",
    '{q}\n\nCould you explain the answer?',
    'hey, so i was wondering... {q}',
  ],
  train: [
    'Could you walk me through this one? {q}',
    'Need a hand here.\n{q}\nThanks!',
    "My teacher asked us this and I'm not sure: {q}",
    '{q}\n\nPlease explain your reasoning.',
    'Question for you - {q}',
  ],
};

const SYSTEM: Pools<string> = {
  eval: ['You are a helpful assistant.', 'You are a friendly, knowledgeable assistant. Answer clearly and concisely.'],
  train: ['You are an AI assistant. Be accurate and brief.', 'You are a helpful assistant who explains things step by step.'],
};

const GREETING: Pools<string> = { eval: ['Hi!', 'Hello there,'], train: ['Hey!', 'Good morning!'] };

/** Earlier small talk, unrelated to any dataset row; written for this module. */
const EXCHANGE: Pools<readonly [string, string]> = {
  eval: [
    ["What's a good name for a grey cat?", 'A few ideas: Smokey, Ash, Pebble or Earl Grey.'],
    ['Can you suggest a quick breakfast?', 'Overnight oats: mix oats, milk and yogurt the evening before and add fruit in the morning.'],
    ['How do I say thank you in Japanese?', 'Arigatou; arigatou gozaimasu is more polite.'],
  ],
  train: [
    ['Give me a fun fact.', 'Octopuses have three hearts and blue blood.'],
    ['What should I pack for a weekend hike?', 'Water, snacks, a rain layer, sunscreen, a map and a small first-aid kit.'],
    ['Recommend a board game for four players.', 'Try Ticket to Ride: easy to learn and good with four.'],
  ],
};

const FOLLOW_UP: Pools<string> = { eval: ['Thanks! Another thing: {q}', '{q}'], train: ['Cool. Now something different: {q}', '{q}'] };

const fill = (template: string, q: string): string => template.replace('{q}', q);
const pick = <T>(xs: readonly T[], h: number): T => xs[h % xs.length]!;

/** The prompt as a person would paste it: options kept, the benchmark's trailing "Answer:" cue dropped. */
const pasted = (prompt: string): string => prompt.replace(/\n\s*Answer:\s*$/, '').trim();

/**
 * `prompt` (row `id`) in `shape`, as chat messages; null for 'stem' when the prompt has no lettered
 * options. The other shapes keep or drop the options by the row's hash (when there are options).
 */
export function shapeMessages(prompt: string, id: string, shape: Shape, pool: TemplatePool): ShapedMessage[] | null {
  const stem = questionStem(prompt);
  if (shape === 'stem') return stem === null ? null : [{ role: 'user', content: stem }];
  const h = hashSeeded32(`${SHAPES_VERSION}/${shape}/${pool}/${id}`);
  const q = stem !== null && (h >>> 20) % 2 === 0 ? stem : pasted(prompt);
  if (shape === 'chat') return [{ role: 'user', content: fill(pick(CHAT[pool], h), q) }];
  if (shape === 'system')
    return [
      { role: 'system', content: pick(SYSTEM[pool], h) },
      { role: 'user', content: `${pick(GREETING[pool], h >>> 8)} ${q}` },
    ];
  const [ask, answer] = pick(EXCHANGE[pool], h);
  return [
    { role: 'user', content: ask },
    { role: 'assistant', content: answer },
    { role: 'user', content: fill(pick(FOLLOW_UP[pool], h >>> 8), q) },
  ];
}

const gatewayTextOpts = PromptTextOptions.parse({});

/** What the gateway embeds for these messages with a policy's default `prompt` options. */
export const shapedText = (messages: readonly ShapedMessage[], opts: PromptTextOptions = gatewayTextOpts): string =>
  extractPromptText({ messages }, opts);

/**
 * Copies of `rows` of `ds` in `shape`, as a dataset of their own (cached like any file): each copy's
 * `prompt` is the gateway's text for its messages — rowText() re-extracts it unchanged, since it is a
 * single user message already within max_chars. `source[k]` is the row of `ds` copy k came from; rows
 * the shape does not apply to are skipped. 'stem' is the format augmentation's own dataset, so its
 * embeddings are shared with `augment: 'stems'`.
 */
export function shapeDataset(ds: Dataset, rows: readonly number[], shape: Shape, pool: TemplatePool): { ds: Dataset; source: number[] } {
  if (shape === 'stem') return stemDataset(ds, rows);
  const source: number[] = [];
  const out: Dataset['rows'] = [];
  for (const i of rows) {
    const r = ds.rows[i]!;
    const messages = shapeMessages(r.prompt, r.id, shape, pool);
    if (messages === null) continue;
    source.push(i);
    const { turns: _turns, ...rest } = r;
    out.push({ ...rest, id: `${r.id}#${shape}`, prompt: shapedText(messages) });
  }
  const tag = `${SHAPES_VERSION}/${shape}/${pool}`;
  return {
    ds: {
      file: `${ds.file}#${tag}`,
      rows: out,
      contaminated: 0,
      // The texts themselves are hashed too, so a changed template can never hit a stale cache entry.
      sha256: sha256Hex(`${tag}\0${ds.sha256}\0${sha256Hex(source.join(','))}\0${sha256Hex(out.map((r) => r.prompt).join('\0'))}`),
    },
    source,
  };
}
