// Shapes shared by the endpoint builders: what a handler hands back to the server, ids, usage, and
// turning a zod failure into an OpenAI-shaped 400 that names the field.
import { randomBytes } from 'node:crypto';
import type { z } from 'zod';
import { E, type SignalmanError } from '../errors.js';

/**
 * A fully computed answer. The server owns timing and faults, so builders never touch the socket:
 * `json` is one body; `sse` is the list of complete `data: …\n\n` events, `[DONE]` included.
 */
export type Reply = { kind: 'json'; body: string } | { kind: 'sse'; events: string[] };

/** Settings a builder needs from MockOptions. */
export interface GenSettings {
  completionTokens: number;
  embeddingDim: number;
}

export const SYSTEM_FINGERPRINT = 'fp_signalman_mock';

// Unique per process run and per request; a random prefix keeps ids from two mock runs apart.
const idPrefix = randomBytes(4).toString('hex');
let idCounter = 0;
export function newId(kind: 'chatcmpl-' | 'cmpl-' | 'call_'): string {
  return `${kind}${idPrefix}${(idCounter++).toString(36).padStart(6, '0')}`;
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** OpenAI's CompletionUsage with every detail field present (zeros: the mock has no cache or audio). */
export function usage(promptTokens: number, completionTokens: number) {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

export function sse(json: string): string {
  return `data: ${json}\n\n`;
}
export const SSE_DONE = 'data: [DONE]\n\n';

/** Plain text of a message content: a string, or the `text` of each content part. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let out = '';
  for (const part of content as unknown[]) {
    if (part !== null && typeof part === 'object' && 'text' in part && typeof part.text === 'string') out += part.text;
  }
  return out;
}

/** Parse a request body, or throw a 400 naming the first bad field with what was expected. */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown, endpoint: string): z.infer<S> {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const param = issue && issue.path.length > 0 ? issue.path.join('.') : null;
  throw invalid(`${endpoint}: ${param ?? 'body'}: ${issue?.message ?? 'invalid request'}`, param);
}

export function invalid(message: string, param: string | null): SignalmanError {
  return E.invalidRequest(message, param);
}
