// zod checks only the fields the gateway reads; everything else passes through untouched (looseObject).
import { z } from 'zod';

const Text = z.string();
const ContentPart = z.looseObject({ type: z.string() });
const Message = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([Text, z.array(ContentPart), z.null()]).optional(),
});

const StreamOptions = z.looseObject({ include_usage: z.boolean().optional() }).nullable();

export const ChatBody = z.looseObject({
  model: z.string().min(1),
  messages: z.array(Message).min(1, 'messages must hold at least one message'),
  stream: z.boolean().nullable().optional(),
  stream_options: StreamOptions.optional(),
  max_tokens: z.number().int().positive().nullable().optional(),
  max_completion_tokens: z.number().int().positive().nullable().optional(),
  n: z.number().int().min(1).max(128).nullable().optional(),
});
export type ChatBody = z.infer<typeof ChatBody>;

export const CompletionBody = z.looseObject({
  model: z.string().min(1),
  prompt: z.union([z.string(), z.array(z.string()), z.array(z.number().int()), z.array(z.array(z.number().int()))]),
  stream: z.boolean().nullable().optional(),
  stream_options: StreamOptions.optional(),
  max_tokens: z.number().int().positive().nullable().optional(),
});
export type CompletionBody = z.infer<typeof CompletionBody>;

export const EmbeddingBody = z.looseObject({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(z.string()), z.array(z.number().int()), z.array(z.array(z.number().int()))]),
  encoding_format: z.enum(['float', 'base64']).optional(),
});
export type EmbeddingBody = z.infer<typeof EmbeddingBody>;

/** zod path → OpenAI's `param` notation, e.g. messages[0].role. */
export function paramOf(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out;
}
