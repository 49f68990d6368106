import { z } from 'zod';
import { Pool } from 'undici';
import { defineEmbedder, type Embedder } from './types.js';
import { cacheSizeOption, maxCharsOption, normalizeInPlace } from './common.js';
import { truncateMiddle } from '../util/text.js';
import { E, SignalmanError } from '../errors.js';

// Any OpenAI-compatible POST {base_url}/embeddings (OpenAI, vLLM, Ollama, TEI, LiteLLM...).

export const RemoteOptions = z
  .object({
    type: z.literal('remote'),
    base_url: z
      .string()
      .url()
      .default('http://127.0.0.1:11434/v1')
      .describe('Base URL of the OpenAI-compatible API, up to and including /v1; /embeddings is appended.'),
    model: z.string().min(1).default('nomic-embed-text').describe('The `model` sent in each embeddings request.'),
    dim: z.number().int().min(1).max(65_536).default(768).describe('Expected vector dimension; an answer of another length is an error.'),
    api_key_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
      .optional()
      .describe('NAME of the environment variable holding the API key (sent as a Bearer token); none by default.'),
    send_dimensions: z
      .boolean()
      .default(false)
      .describe('Send `dimensions: dim` in the request (OpenAI text-embedding-3 models can shorten vectors).'),
    timeout_ms: z.number().int().min(1).max(600_000).default(10_000).describe('Deadline per HTTP request.'),
    max_batch: z.number().int().min(1).max(2048).default(64).describe('Texts per request in embedMany().'),
    connections: z.number().int().min(1).max(256).default(8).describe('Most concurrent connections to the endpoint.'),
    max_chars: maxCharsOption(8192),
    cache_size: cacheSizeOption,
  })
  .strict();
export type RemoteOptions = z.infer<typeof RemoteOptions>;

const EmbeddingsAnswer = z.object({
  data: z.array(z.object({ index: z.number().int().min(0).optional(), embedding: z.union([z.array(z.number()), z.string()]) })),
});

/** Little-endian float32 base64, what `encoding_format: base64` returns if a server ignores our `float`. */
function fromBase64(s: string): Float32Array {
  const b = Buffer.from(s, 'base64');
  const out = new Float32Array(b.length >>> 2);
  for (let i = 0; i < out.length; i++) out[i] = b.readFloatLE(i * 4);
  return out;
}

export function createRemoteEmbedder(o: RemoteOptions, env: NodeJS.ProcessEnv = process.env): Embedder {
  const id = `remote/v1/${o.model}/d${o.dim}/m${o.max_chars}`;
  let apiKey: string | undefined;
  if (o.api_key_env !== undefined) {
    apiKey = env[o.api_key_env];
    if (apiKey === undefined || apiKey === '')
      throw E.configInvalid(`embedder ${id}: api_key_env names ${o.api_key_env}, but that environment variable is not set`);
  }
  const url = new URL(o.base_url);
  const path = `${url.pathname.replace(/\/+$/, '')}/embeddings${url.search}`;
  const endpoint = `${url.origin}${path}`;
  const pool = new Pool(url.origin, {
    connections: o.connections,
    headersTimeout: o.timeout_ms,
    bodyTimeout: o.timeout_ms,
  });
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  if (apiKey !== undefined) headers.authorization = `Bearer ${apiKey}`;
  let closed = false;

  const call = async (texts: readonly string[], signal?: AbortSignal): Promise<Float32Array[]> => {
    if (closed) throw E.notReady(`embedder ${id} is closed`);
    // OpenAI refuses empty strings in `input`; a lone space embeds "nothing" consistently.
    const input = texts.map((t) => {
      const s = truncateMiddle(t, o.max_chars);
      return s === '' ? ' ' : s;
    });
    const body: Record<string, unknown> = { model: o.model, input, encoding_format: 'float' };
    if (o.send_dimensions) body.dimensions = o.dim;
    const deadline = AbortSignal.timeout(o.timeout_ms);
    const both = signal ? AbortSignal.any([signal, deadline]) : deadline;
    let status: number;
    let text: string;
    try {
      const res = await pool.request({ method: 'POST', path, headers, body: JSON.stringify(body), signal: both });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      if (signal?.aborted) throw signal.reason ?? err;
      const code = (err as { code?: unknown }).code;
      if (deadline.aborted || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT')
        throw E.upstreamTimeout(`embedder ${id}: POST ${endpoint} took longer than timeout_ms=${o.timeout_ms}`, null, err);
      throw E.upstreamUnavailable(
        `embedder ${id}: POST ${endpoint} failed: ${(err as Error).message}${typeof code === 'string' ? ` (${code})` : ''}`,
        null,
        err,
      );
    }
    const bad = (why: string): SignalmanError => E.upstreamBadResponse(`embedder ${id}: POST ${endpoint} ${why}`);
    if (status < 200 || status > 299) throw bad(`answered HTTP ${status}: ${text.slice(0, 300)}`);
    let parsed: z.infer<typeof EmbeddingsAnswer>;
    try {
      parsed = EmbeddingsAnswer.parse(JSON.parse(text));
    } catch {
      throw bad(`answered something that is not an embeddings list ({data:[{embedding:[...]}]}): ${text.slice(0, 200)}`);
    }
    if (parsed.data.length !== texts.length) throw bad(`answered ${parsed.data.length} embeddings for ${texts.length} inputs`);
    const out: Float32Array[] = new Array<Float32Array>(texts.length);
    parsed.data.forEach((d, k) => {
      const at = d.index ?? k;
      const v = typeof d.embedding === 'string' ? fromBase64(d.embedding) : Float32Array.from(d.embedding);
      if (v.length !== o.dim)
        throw bad(`answered a vector of dimension ${v.length}, but dim is ${o.dim}: set dim: ${v.length} or use another model`);
      if (!normalizeInPlace(v)) throw bad('answered a zero or non-finite vector');
      if (at >= texts.length || out[at] !== undefined) throw bad(`answered a bad or repeated index ${at}`);
      out[at] = v;
    });
    return out;
  };

  return {
    id,
    dim: o.dim,
    embed: async (text, signal) => {
      signal?.throwIfAborted();
      const [v] = await call([text], signal);
      return v!;
    },
    embedMany: async (texts, onProgress) => {
      const out: Float32Array[] = [];
      for (let i = 0; i < texts.length; i += o.max_batch) {
        out.push(...(await call(texts.slice(i, i + o.max_batch))));
        onProgress?.(out.length);
      }
      return out;
    },
    close: async () => {
      if (closed) return; // idempotent: a shared embedder may be released by several runtimes
      closed = true;
      await pool.close();
    },
  };
}

export default defineEmbedder({
  type: 'remote',
  options: RemoteOptions,
  async create(opts) {
    return createRemoteEmbedder(opts);
  },
});
