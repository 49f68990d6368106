// Deterministic text for the mock: a string hash seeds a small PRNG that picks words, so the same
// request always yields the same answer (tests compare two runs; benchmarks get stable sizes).
import { seededRandom } from '../util/random.js';

const WORDS = (
  'the of and to in is was for on that with as by at from this it be are or an which not have has ' +
  'but were can all their one more other also its been into when there will about would these some ' +
  'time first new after only two most such may over so than use many then them well during like ' +
  'system model data signal route answer value network energy market policy river city history field ' +
  'theory method result number process light water power court law contract species cell protein ' +
  'planet orbit metal price rate growth vector matrix proof function graph token query server request ' +
  'stream memory budget quality latency cost weak strong router gateway embedding question reason ' +
  'simple clear small large early later often rarely quickly carefully together between because while'
).split(' ');

/** Token text as it appears mid-answer (leading space) and first (capitalised), built once at load. */
const MID = WORDS.map((w) => ' ' + w);
const FIRST = WORDS.map((w) => w.charAt(0).toUpperCase() + w.slice(1));

export interface Generated {
  /** Token strings; concatenated they form the answer. One word = one token. */
  tokens: string[];
  finish: 'stop' | 'length';
}

/**
 * Pick the answer for one choice. The natural length comes from the hash (minLen..maxLen words);
 * `cap` (the request's max_tokens) cuts it, which is reported as finish_reason 'length'.
 */
export function generateTokens(seed: number, maxLen: number, cap: number | null): Generated {
  const rnd = seededRandom(seed);
  const minLen = Math.min(8, maxLen);
  const natural = minLen + Math.floor(rnd() * (maxLen - minLen + 1));
  const cut = cap !== null && cap < natural;
  const len = cut ? cap : natural;
  const tokens = new Array<string>(len);
  for (let i = 0; i < len; i++) {
    const w = Math.floor(rnd() * WORDS.length);
    tokens[i] = (i === 0 ? FIRST[w] : MID[w]) ?? 'the';
  }
  if (!cut && len > 0) tokens[len - 1] += '.';
  return { tokens, finish: cut ? 'length' : 'stop' };
}

/** Split text into word-ish tokens whose concatenation is exactly the text (for echoing tool results). */
export function splitTokens(text: string): string[] {
  const parts = text.match(/\s*\S+/g) ?? [];
  const joinedLen = parts.reduce((n, p) => n + p.length, 0);
  if (joinedLen < text.length) {
    if (parts.length === 0) return text.length > 0 ? [text] : [];
    parts[parts.length - 1] += text.slice(joinedLen); // trailing whitespace
  }
  return parts;
}

/** Rough prompt-size estimate the mock reports as prompt_tokens: about four characters a token. */
export function estimateTokens(chars: number): number {
  return Math.ceil(chars / 4);
}

/** One pseudo-random word, for filling tool-call arguments. */
export function word(rnd: () => number): string {
  return WORDS[Math.floor(rnd() * WORDS.length)] ?? 'the';
}
