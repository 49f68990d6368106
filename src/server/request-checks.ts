// The checks every request with a JSON body passes before any handler runs, and the errors they give.
// One place, so the front door and the Fastify routes answer the same problem with the same words.
import type { IncomingMessage } from 'node:http';
import type { ZodType } from 'zod';
import type { Config } from '../config/schema.js';
import { E, type SignalmanError } from '../errors.js';
import { requestChars } from '../telemetry/usage.js';
import type { Endpoint } from '../upstream/forward.js';
import { ChatBody, CompletionBody, EmbeddingBody, paramOf } from './openai-schema.js';

export const refuse = {
  draining: () => E.shuttingDown('the gateway is shutting down; retry on another instance'),
  notReady: () => E.notReady('no configuration is loaded yet; see GET /readyz'),
  notJson: () => E.unsupportedMediaType('send the body as JSON with content-type: application/json'),
  emptyBody: () => E.invalidJson('the request body is empty; send a JSON object'),
  badJson: (why: string) => E.invalidJson(`the request body is not valid JSON: ${why}`),
  tooLarge: (limit?: number) =>
    E.bodyTooLarge(`request body is larger than the gateway's limit (server.body_limit_bytes${limit === undefined ? '' : ` = ${limit}`})`),
  tooDeep: (limit: number) =>
    E.invalidJson(`the request body nests objects and arrays deeper than the gateway's limit (server.max_json_depth = ${limit})`),
  tooManyMessages: (n: number, limit: number) =>
    E.invalidRequest(`messages: ${n} messages is more than the gateway's limit (server.max_messages = ${limit})`, 'messages'),
  tooManyChars: (n: number, limit: number) =>
    E.invalidRequest(`the request's text is ${n} characters, more than the gateway's limit (server.max_prompt_chars = ${limit})`),
} as const;

/** The request limits of `server:` that validateBody applies. */
export type RequestLimits = Pick<Config['server'], 'max_messages' | 'max_prompt_chars'>;

/**
 * A refused body is still read (and discarded) up to these bounds before the answer, so the client has
 * finished sending when the socket closes: closing on unread bytes makes the kernel send RST, and clients
 * then report ECONNRESET instead of the 413. Past the bounds the socket is closed anyway.
 */
export const DRAIN_MAX_BYTES = 64 * 1024 * 1024;
export const DRAIN_MAX_MS = 5_000;

export const isJson = (contentType: string | undefined): boolean =>
  contentType !== undefined && contentType.toLowerCase().includes('application/json');

/**
 * Reads the whole body, then calls `done` once. Callbacks, not a Promise: this runs for every request.
 * Over `limit` (by content-length or as it arrives) the rest is drained within DRAIN_MAX_* first, then
 * `done` gets the 413 and `drained` says whether the client finished sending (if not, close the socket).
 */
export function readBody(
  req: IncomingMessage,
  limit: number,
  done: (e: SignalmanError | null, raw: Buffer | null, drained: boolean) => void,
): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let settled = false;
  const finish = (e: SignalmanError | null, raw: Buffer | null, drained = true) => {
    if (settled) return;
    settled = true;
    done(e, raw, drained);
  };
  const onData = (c: Buffer) => {
    size += c.length;
    if (size > limit) return tooLarge();
    chunks.push(c);
  };
  const onEnd = () => finish(null, chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
  const tooLarge = () => {
    req.removeListener('data', onData);
    req.removeListener('end', onEnd);
    drain(req, (drained) => finish(refuse.tooLarge(limit), null, drained));
  };
  req.once('error', () => finish(E.invalidRequest('the request body could not be read'), null, false));
  if (Number(req.headers['content-length']) > limit) return tooLarge();
  req.on('data', onData);
  req.once('end', onEnd);
}

/** Reads and discards the rest of a body, within DRAIN_MAX_BYTES and DRAIN_MAX_MS; `then(true)` if it all came. */
function drain(req: IncomingMessage, then: (drained: boolean) => void): void {
  let bytes = 0;
  let called = false;
  const once = (drained: boolean) => {
    if (called) return;
    called = true;
    clearTimeout(timer);
    req.removeListener('data', onData);
    if (!drained) req.pause();
    then(drained);
  };
  const timer = setTimeout(() => once(false), DRAIN_MAX_MS);
  const onData = (c: Buffer) => {
    bytes += c.length;
    if (bytes > DRAIN_MAX_BYTES) once(false);
  };
  req.on('data', onData);
  req.once('end', () => once(true));
  req.once('error', () => once(false));
  if (req.readableEnded) once(true);
}

/**
 * Whether a JSON text nests objects/arrays deeper than `max`. A linear scan of the bytes before JSON.parse,
 * so a hostile body never reaches code that recurses on depth (JSON.stringify before forwarding does).
 */
export function nestsDeeperThan(raw: Buffer, max: number): boolean {
  if (raw.length <= max) return false; // each level takes at least one byte
  let depth = 0;
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as number;
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/** The parsed body, or the error that says why there is none. */
export function parseJson(raw: Buffer, maxDepth: number): { body: unknown; error: null } | { body: null; error: SignalmanError } {
  if (raw.length === 0) return { body: null, error: refuse.emptyBody() };
  if (nestsDeeperThan(raw, maxDepth)) return { body: null, error: refuse.tooDeep(maxDepth) };
  try {
    return { body: JSON.parse(raw.toString('utf8')) as unknown, error: null };
  } catch (err) {
    return { body: null, error: refuse.badJson((err as Error).message) };
  }
}

const SCHEMAS: Record<Endpoint, ZodType> = { chat: ChatBody, completions: CompletionBody, embeddings: EmbeddingBody };

/** Checks the fields the gateway reads and the size limits; returns the client's own object, so unknown fields stay exactly as sent. */
export function validateBody(endpoint: Endpoint, body: unknown, limits: RequestLimits): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw E.invalidRequest('the request body must be a JSON object', null);
  }
  const parsed = SCHEMAS[endpoint].safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const param = issue ? paramOf(issue.path) : null;
    throw E.invalidRequest(`${param ?? 'body'}: ${issue?.message ?? 'invalid request'}`, param);
  }
  const b = body as Record<string, unknown>;
  const messages = b.messages;
  if (Array.isArray(messages) && messages.length > limits.max_messages) throw refuse.tooManyMessages(messages.length, limits.max_messages);
  const chars = requestChars(b);
  if (chars > limits.max_prompt_chars) throw refuse.tooManyChars(chars, limits.max_prompt_chars);
  return b;
}
