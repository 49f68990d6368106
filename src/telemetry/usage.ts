// Token usage of an answer, read from the upstream's own `usage` object without parsing the whole body:
// a byte search for the key and two integers after it. Inside JSON strings a quote is escaped (\"), so
// `"usage"` only ever matches a real key.
import type { BackendConfig } from '../config/schema.js';

export interface Usage {
  prompt: number;
  completion: number;
}

const USAGE_KEY = Buffer.from('"usage"');
const PROMPT_KEY = Buffer.from('"prompt_tokens"');
const COMPLETION_KEY = Buffer.from('"completion_tokens"');
/** How far past `"usage"` its counts may be: the object is small, the rest of the body is not. */
const WINDOW = 512;

const isSpace = (c: number | undefined) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/** Where the value of a `"usage"` key that holds an object starts, or -1 (absent, or `"usage":null`). */
export function usageObjectAt(buf: Buffer, from = 0, last = false): number {
  const at = last ? buf.lastIndexOf(USAGE_KEY) : buf.indexOf(USAGE_KEY, from);
  if (at === -1) return -1;
  let i = at + USAGE_KEY.length;
  while (isSpace(buf[i])) i++;
  if (buf[i] !== 0x3a /* : */) return -1;
  i++;
  while (isSpace(buf[i])) i++;
  return buf[i] === 0x7b /* { */ ? i : -1;
}

function intAfter(buf: Buffer, key: Buffer, from: number, end: number): number | null {
  const at = buf.indexOf(key, from);
  if (at === -1 || at >= end) return null;
  let i = at + key.length;
  while (isSpace(buf[i]) || buf[i] === 0x3a) i++;
  let n = 0;
  let digits = 0;
  for (let c = buf[i]; c !== undefined && c >= 0x30 && c <= 0x39; c = buf[++i]) {
    n = n * 10 + (c - 0x30);
    digits++;
  }
  return digits === 0 ? null : n;
}

/** The counts of the usage object starting at `at` (see usageObjectAt); embeddings report no completion. */
export function readUsage(buf: Buffer, at: number): Usage | null {
  const end = Math.min(buf.length, at + WINDOW);
  const prompt = intAfter(buf, PROMPT_KEY, at, end);
  if (prompt === null) return null;
  return { prompt, completion: intAfter(buf, COMPLETION_KEY, at, end) ?? 0 };
}

/** Usage of a complete JSON answer (its top-level `usage` comes last in OpenAI's shape). */
export function bufferedUsage(body: Buffer): Usage | null {
  const at = usageObjectAt(body, 0, true);
  return at === -1 ? null : readUsage(body, at);
}

/** Removes the SSE event that contains byte `at` (the usage-only chunk a client did not ask for). */
export function withoutEvent(buf: Buffer, at: number): Buffer {
  const before = buf.lastIndexOf('\n\n', at);
  const start = before === -1 ? 0 : before + 2;
  const after = buf.indexOf('\n\n', at);
  const end = after === -1 ? buf.length : after + 2;
  return start === 0 && end === buf.length ? EMPTY : Buffer.concat([buf.subarray(0, start), buf.subarray(end)]);
}
const EMPTY = Buffer.alloc(0);

/** ~4 characters per token for English text: the estimate used when an upstream reports no usage. */
export const tokensOfChars = (chars: number): number => Math.ceil(chars / 4);

/** Characters of the text a request sends the model: message contents, a completion prompt, embedding input. */
export function requestChars(body: Record<string, unknown>): number {
  let n = 0;
  const add = (v: unknown): void => {
    if (typeof v === 'string') n += v.length;
    else if (Array.isArray(v)) for (const x of v) add(x);
    else if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      add(o.content ?? o.text);
    }
  };
  add(body.messages);
  add(body.prompt);
  add(body.input);
  return n;
}

/** Characters of the text in a complete JSON answer (choices' message content or text). */
export function answerChars(body: Buffer): number {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { choices?: Array<{ message?: { content?: unknown }; text?: unknown }> };
    let n = 0;
    for (const c of parsed.choices ?? []) {
      const t = c.message?.content ?? c.text;
      if (typeof t === 'string') n += t.length;
    }
    return n;
  } catch {
    return 0;
  }
}

/** USD for these tokens at this backend's price. */
export const costUsd = (price: BackendConfig['price'], prompt: number, completion: number): number =>
  (prompt * price.input_per_mtok + completion * price.output_per_mtok) / 1e6;
