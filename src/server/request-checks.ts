// The checks every request with a JSON body passes before any handler runs, and the errors they give.
// One place, so the front door and the Fastify routes answer the same problem with the same words.
import type { IncomingMessage } from 'node:http';
import type { ZodType } from 'zod';
import { E, type SignalmanError } from '../errors.js';
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
} as const;

export const isJson = (contentType: string | undefined): boolean =>
  contentType !== undefined && contentType.toLowerCase().includes('application/json');

/** Reads the whole body, then calls `done` once. Callbacks, not a Promise: this runs for every request. */
export function readBody(req: IncomingMessage, limit: number, done: (e: SignalmanError | null, raw: Buffer | null) => void): void {
  if (Number(req.headers['content-length']) > limit) return done(refuse.tooLarge(limit), null);
  const chunks: Buffer[] = [];
  let size = 0;
  let settled = false;
  const finish = (e: SignalmanError | null, raw: Buffer | null) => {
    if (settled) return;
    settled = true;
    done(e, raw);
  };
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size > limit) {
      req.removeAllListeners('data');
      finish(refuse.tooLarge(limit), null);
      return;
    }
    chunks.push(c);
  });
  req.once('end', () => finish(null, chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size)));
  req.once('error', () => finish(E.invalidRequest('the request body could not be read'), null));
}

/** The parsed body, or the error that says why there is none. */
export function parseJson(raw: Buffer): { body: unknown; error: null } | { body: null; error: SignalmanError } {
  if (raw.length === 0) return { body: null, error: refuse.emptyBody() };
  try {
    return { body: JSON.parse(raw.toString('utf8')) as unknown, error: null };
  } catch (err) {
    return { body: null, error: refuse.badJson((err as Error).message) };
  }
}

const SCHEMAS: Record<Endpoint, ZodType> = { chat: ChatBody, completions: CompletionBody, embeddings: EmbeddingBody };

/** Checks the fields the gateway reads; returns the client's own object, so unknown fields stay exactly as sent. */
export function validateBody(endpoint: Endpoint, body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw E.invalidRequest('the request body must be a JSON object', null);
  }
  const parsed = SCHEMAS[endpoint].safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const param = issue ? paramOf(issue.path) : null;
    throw E.invalidRequest(`${param ?? 'body'}: ${issue?.message ?? 'invalid request'}`, param);
  }
  return body as Record<string, unknown>;
}
