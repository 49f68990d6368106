import { z } from 'zod';
import { truncateMiddle, truncateTail } from '../util/text.js';

// Stage 4 of the request path: which text of a request is embedded. Input is the client's body as
// parsed JSON (`unknown`): the server validates only the fields it reads, so every access here is guarded.

export const PromptTextOptions = z
  .object({
    max_chars: z
      .number()
      .int()
      .min(16)
      .max(1_000_000)
      .default(2048)
      .describe('Most characters (UTF-16 code units) of prompt text handed to the embedder.'),
    context_turns: z
      .number()
      .int()
      .min(0)
      .max(64)
      .default(2)
      .describe('How many messages before the last user message are embedded as context (0 = last user message only).'),
  })
  .strict();
export type PromptTextOptions = z.infer<typeof PromptTextOptions>;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/** Text of a chat message `content`: a string, or the `text` parts of an array (images, audio, files ignored). */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let out = '';
  for (const part of content) {
    let t: unknown;
    if (typeof part === 'string') t = part;
    else if (isRecord(part) && (part.type === 'text' || part.type === 'input_text')) t = part.text;
    if (typeof t === 'string' && t !== '') out = out === '' ? t : `${out}\n${t}`;
  }
  return out;
}

function fromMessages(messages: readonly unknown[], o: PromptTextOptions): string {
  let last = -1;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (isRecord(m) && m.role === 'user') {
      last = i;
      break;
    }
  }
  // No user turn (e.g. a system-only request): the last message that has text stands in for it.
  if (last < 0) {
    for (let i = messages.length - 1; i >= 0 && last < 0; i--) {
      const m = messages[i];
      if (isRecord(m) && contentText(m.content) !== '') last = i;
    }
    if (last < 0) return '';
  }
  const lastMsg = messages[last];
  const main = truncateMiddle(isRecord(lastMsg) ? contentText(lastMsg.content) : '', o.max_chars);
  let budget = o.max_chars - main.length;
  const ctx: string[] = [];
  // Newest context first: when the budget runs out, the turns nearest the question are the ones kept.
  for (let i = last - 1; i >= 0 && ctx.length < o.context_turns && budget > 1; i--) {
    const m = messages[i];
    const t = isRecord(m) ? contentText(m.content) : '';
    if (t === '') continue;
    const piece = truncateTail(t, budget - 1);
    if (piece === '') break;
    ctx.push(piece);
    budget -= piece.length + 1;
  }
  if (ctx.length === 0) return main;
  ctx.reverse();
  ctx.push(main);
  return ctx.join('\n');
}

/**
 * The text to embed for a chat-completions body (`messages`) or a completions body (`prompt`):
 * the last user message, preceded by up to `context_turns` earlier messages, at most `max_chars`
 * code units in all, cut without splitting surrogate pairs. Token-id prompts and bodies without
 * text give ''.
 */
export function extractPromptText(body: unknown, opts: PromptTextOptions): string {
  if (!isRecord(body)) return '';
  if (Array.isArray(body.messages)) return fromMessages(body.messages, opts);
  const p = body.prompt;
  if (typeof p === 'string') return truncateMiddle(p, opts.max_chars);
  if (Array.isArray(p)) {
    // A batch of prompts is routed as one request: embed them together.
    const texts = p.filter((x): x is string => typeof x === 'string' && x !== '');
    return truncateMiddle(texts.join('\n'), opts.max_chars);
  }
  return '';
}
