import { type Dataset, sha256Hex } from './dataset.js';

// Format augmentation for P1. Every MMLU prompt ends in four lettered options and "Answer:", so a
// router trained on MMLU alone may lean on the options; the prompts it meets elsewhere (GSM8K word
// problems, chat) have none. Adding, for each train row, a copy cut down to the question with the
// same outcomes makes the router learn from the question too. The copies are data the project makes
// from its own train rows (PROTOCOLS.md allows that, when said); no test row is ever copied.

export const STEMS_VERSION = 'stems/v1';

/**
 * A recipe's training augmentation: 'stems' these copies; 'shapes' these plus the chat-shaped ones of
 * shapes.ts; 'stem-chat' the option-less and chat copies of shapes.ts only.
 */
export type Augment = 'stems' | 'shapes' | 'stem-chat';

/** From the first "\nA. " option line that a "\nB. " line follows, to the end. */
const OPTIONS = /\n\s*A\.\s[\s\S]*?\n\s*B\.\s[\s\S]*$/;

/** The prompt without its lettered options and answer cue, or null when it has no such block. */
export function questionStem(prompt: string): string | null {
  const m = OPTIONS.exec(prompt);
  if (m === null) return null;
  const stem = prompt.slice(0, m.index).trim();
  return stem.length > 0 ? stem : null;
}

/**
 * The option-less copies of `rows` of `ds` (those that have options), as a dataset of its own so
 * their embeddings are cached like any file's: `source[k]` is the row of `ds` that copy k came from.
 */
export function stemDataset(ds: Dataset, rows: readonly number[]): { ds: Dataset; source: number[] } {
  const source: number[] = [];
  const out: Dataset['rows'] = [];
  for (const i of rows) {
    const r = ds.rows[i]!;
    const stem = questionStem(r.prompt);
    if (stem === null) continue;
    source.push(i);
    out.push({ ...r, id: `${r.id}#stem`, prompt: stem });
  }
  return {
    ds: {
      file: `${ds.file}#${STEMS_VERSION}`,
      rows: out,
      contaminated: 0,
      sha256: sha256Hex(`${STEMS_VERSION}\0${ds.sha256}\0${sha256Hex(source.join(','))}`),
    },
    source,
  };
}
