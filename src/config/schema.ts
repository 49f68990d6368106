// The YAML config's single source of truth: types come from here by z.infer, the JSON Schema in
// configs/signalman.schema.json is generated from here, and router/embedder options come from the plugin
// registries, so a new plugin is validated and documented with no edit in this file.
import { z } from 'zod';
import { PromptTextOptions } from '../routers/prompt-text.js';
import { embedderPlugins } from '../embedders/registry.js';
import { routerPlugins } from '../routers/registry.js';

const Name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/, 'use letters, digits and . _ : / - (at most 128 characters)');

/** Request headers an upstream must never receive from a client, whatever the config says. */
export const FORBIDDEN_FORWARD_HEADERS = new Set([
  'authorization',
  'cookie',
  'set-cookie',
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'proxy-authorization',
  'proxy-authenticate',
  'proxy-connection',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-real-ip',
  'api-key',
  'x-api-key',
]);

const HeaderName = z
  .string()
  .regex(/^[A-Za-z0-9-]+$/, 'a header name has letters, digits and dashes only')
  .transform((h) => h.toLowerCase())
  .refine((h) => !FORBIDDEN_FORWARD_HEADERS.has(h), {
    message: 'this header carries credentials or routing and is never forwarded from clients',
  });

export const Price = z
  .object({
    input_per_mtok: z.number().nonnegative().describe('USD per million input (prompt) tokens.'),
    output_per_mtok: z.number().nonnegative().describe('USD per million output (completion) tokens.'),
  })
  .strict();

export const Backend = z
  .object({
    name: Name.describe('What clients send as `model` to reach this backend directly, and what policies refer to.'),
    base_url: z
      .url({ protocol: /^https?$/, error: 'base_url must be an http:// or https:// URL, e.g. https://api.openai.com/v1' })
      .describe('OpenAI-compatible base URL including its version path, e.g. https://api.openai.com/v1.'),
    api_key_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'the NAME of an environment variable, not the key itself')
      .optional()
      .describe('Name of the environment variable holding the API key sent as `Authorization: Bearer`.'),
    model: z.string().min(1).describe('Model id sent upstream in place of the client-facing name.'),
    price: Price.default({ input_per_mtok: 0, output_per_mtok: 0 }),
    timeout_ms: z
      .number()
      .int()
      .positive()
      .default(60_000)
      .describe('Time allowed until the upstream response headers arrive (and for a non-streamed body to finish).'),
    stream_idle_timeout_ms: z
      .number()
      .int()
      .positive()
      .default(30_000)
      .describe('Longest silence allowed between two chunks of a response body.'),
    connect_timeout_ms: z.number().int().positive().default(5_000),
    max_retries: z.number().int().min(0).max(5).default(2).describe('Retries on 429/5xx/connect errors before the next fallback.'),
    max_connections: z.number().int().min(1).max(4096).default(128).describe('Keep-alive pool size for this backend.'),
    headers: z.record(HeaderName, z.string()).default({}).describe('Static extra headers sent upstream (e.g. OpenRouter HTTP-Referer).'),
  })
  .strict();

const pluginUnion = <T extends readonly { options: z.ZodType }[]>(plugins: T) =>
  z.discriminatedUnion(
    'type',
    plugins.map((p) => p.options) as unknown as [
      z.ZodObject<{ type: z.ZodLiteral<string> }>,
      ...z.ZodObject<{ type: z.ZodLiteral<string> }>[],
    ],
  ) as unknown as z.ZodType<z.infer<T[number]['options']>>;

export const RouterConfig = pluginUnion(routerPlugins);
export const EmbedderConfig = pluginUnion(embedderPlugins);

export const Candidate = z.union([
  Name,
  z
    .object({
      backend: Name,
      as: z.string().min(1).describe('The model name this backend has in trained router artifacts.'),
    })
    .strict(),
]);

export const Objective = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('utility'),
      lambda: z.number().nonnegative().default(0).describe('Quality points traded per USD of expected cost, per 1k requests.'),
    })
    .strict(),
  z
    .object({
      kind: z.literal('threshold'),
      min_quality: z.number().min(0).max(1).describe('Cheapest candidate whose predicted quality clears this bar.'),
    })
    .strict(),
]);

export const GuardConfig = z
  .object({
    artifact: z
      .string()
      .optional()
      .describe("A guard artifact folder (knn index, or mlp classifier with labels); default: the router's own index."),
    threshold: z.number().optional().describe("Overrides the artifact's calibrated threshold."),
    on_out_of_domain: z
      .enum(['fallback', 'reject'])
      .default('fallback')
      .describe('fallback: send to `fallback`; reject: answer 400 out_of_domain.'),
    fallback: Name.optional().describe('Backend for out-of-domain prompts (required with on_out_of_domain: fallback).'),
  })
  .strict()
  .refine((g) => g.on_out_of_domain === 'reject' || g.fallback !== undefined, {
    message: 'on_out_of_domain: fallback needs a `fallback` backend',
    path: ['fallback'],
  });

export const StickyConfig = z
  .object({
    enabled: z.boolean().default(true),
    header: z
      .string()
      .regex(/^[a-z0-9-]+$/, 'a lower-case header name')
      .default('x-signalman-conversation-id')
      .describe('Conversation id header; without it, a hash of the system prompt and first user message identifies the conversation.'),
    ttl_s: z.number().int().positive().default(3600),
    max_entries: z.number().int().positive().default(100_000),
  })
  .strict();

export const SteerConfig = z.discriminatedUnion('target', [
  z
    .object({
      target: z.literal('share'),
      backend: Name.describe('The expensive backend whose share of calls is steered.'),
      share: z.number().min(0).max(1).describe('Wanted share of calls to `backend`.'),
      window: z.number().int().min(10).default(500).describe('Requests the moving share is averaged over.'),
    })
    .strict(),
  z
    .object({
      target: z.literal('spend'),
      usd_per_hour: z.number().positive().describe('Wanted expected spend per hour.'),
      window_s: z.number().int().min(10).default(300),
    })
    .strict(),
]);

export const Policy = z
  .object({
    name: Name.describe('The virtual model name clients send, e.g. auto.'),
    description: z.string().optional(),
    candidates: z.array(Candidate).min(1).describe('Backends this policy may choose among.'),
    router: RouterConfig.default({ type: 'fixed' } as z.infer<typeof RouterConfig>),
    embedder: EmbedderConfig.optional(),
    objective: Objective.default({ kind: 'utility', lambda: 0 }),
    prompt: PromptTextOptions.default(PromptTextOptions.parse({})).describe('Which text of a request is embedded and scored.'),
    expected_output_tokens: z.number().int().positive().default(256),
    score_cache_size: z
      .number()
      .int()
      .min(0)
      .default(10_000)
      .describe('Prompt texts whose router scores are kept (kNN and MLP routers); 0 turns the cache off.'),
    fallbacks: z.array(Name).default([]).describe('Backends tried in order after the chosen one fails.'),
    guard: GuardConfig.optional().describe('Out-of-domain check before scoring.'),
    sticky: StickyConfig.default(StickyConfig.parse({})).describe('Multi-turn conversations stay on their first-turn model.'),
    steer: SteerConfig.optional().describe("Adjusts the utility objective's lambda online toward a target share or spend."),
  })
  .strict();

export const Server = z
  .object({
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8080),
    body_limit_bytes: z
      .number()
      .int()
      .positive()
      .default(4 * 1024 * 1024),
    admin_key_env: z
      .string()
      .default('SIGNALMAN_ADMIN_KEY')
      .describe('Env var holding the key for /admin endpoints; admin endpoints are off while it is unset.'),
    forward_headers: z
      .array(HeaderName)
      .default([])
      .describe('Client request headers forwarded upstream in addition to accept, user-agent and openai-beta.'),
    retry_base_ms: z.number().int().min(0).default(100),
    retry_max_ms: z.number().int().min(0).default(2_000),
    access_log: z.boolean().default(true).describe('One log line per request.'),
    watch: z.boolean().default(true).describe('Reload when the config file changes.'),
  })
  .strict();

export const ConfigSchema = z
  .object({
    version: z.literal(1).default(1),
    server: Server.default(Server.parse({})),
    backends: z.array(Backend).min(1, 'declare at least one backend'),
    policies: z.array(Policy).default([]),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;
export type BackendConfig = z.infer<typeof Backend>;
export type PolicyConfig = z.infer<typeof Policy>;
