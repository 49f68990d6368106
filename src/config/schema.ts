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

// Breaker defaults. Both triggers count requests (one verdict per request and backend, retries included;
// upstream/breaker.ts), and are set so that random failures at a few % never open a breaker while an outage
// still does within seconds:
// - consecutive_failures 10: with independent failures at rate p, a run of N failed requests starts at a
//   given request with probability p^N. At N = 5 (the old default, which also counted each retry) p = 5 %
//   gives 3e-7, about once per 30 min at 2,000 req/s; at N = 10 it is 1e-13 (never), and even p = 20 % gives
//   1e-7 (about once per 1.5 h at that rate). A dead backend still opens after 10 failed requests.
// - error_rate 0.5 over window_s 30 once min_requests 50: a sick backend (half its requests failing) opens
//   even when successes keep breaking the runs. 50 requests, not 20: in a window of 20 requests a backend
//   failing 20 % / 30 % of them reaches 50 % by chance with probability 0.3 % / 5 % (binomial tail); in one
//   of 50, 2e-6 / 0.2 %. Below 50 requests per 30 s (< 1.7 req/s) consecutive_failures alone applies.
// And whatever opens, panic mode (routers/resolve.ts) keeps a request with every backend out answered.
export const BreakerConfig = z
  .object({
    enabled: z.boolean().default(true),
    consecutive_failures: z
      .number()
      .int()
      .min(1)
      .default(10)
      .describe(
        'Opens after this many failed requests in a row (connect errors, timeouts, 5xx, 429, broken answers; not client 4xx). A request counts once however many of its retries failed; answered after a retry, it is a success.',
      ),
    error_rate: z
      .number()
      .gt(0)
      .max(1)
      .default(0.5)
      .describe('Opens when this share of requests in the last window_s failed on this backend (once min_requests were seen in it).'),
    window_s: z.number().int().min(1).max(3600).default(30),
    min_requests: z.number().int().min(1).default(50).describe('Requests the window needs before error_rate applies.'),
    cooldown_ms: z.number().int().min(1).default(5_000).describe('How long it stays open before a probe; doubled at each failed probe.'),
    max_cooldown_ms: z
      .number()
      .int()
      .min(1)
      .default(60_000)
      .describe('Longest cooldown, and the longest an upstream retry-after may take the backend out.'),
    half_open_probes: z
      .number()
      .int()
      .min(1)
      .default(1)
      .describe('Requests let through at once after the cooldown; one success closes it.'),
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
    stream_usage: z
      .boolean()
      .default(true)
      .describe(
        'Ask this backend for token usage on streams (stream_options.include_usage) and strip that chunk when the client did not ask; false: usage is estimated.',
      ),
    headers: z.record(HeaderName, z.string()).default({}).describe('Static extra headers sent upstream (e.g. OpenRouter HTTP-Referer).'),
    breaker: BreakerConfig.default(BreakerConfig.parse({})).describe(
      'Circuit breaker: takes this backend out of routing after repeated failures, probes it again after a cooldown.',
    ),
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
    embedder: EmbedderConfig.optional().describe(
      "The embedder the guard artifact was built with, when it is one member of the policy's concat embedder (e.g. a static-table kNN guard under lexical + static): the guard reads that member's part of the policy's vector, so nothing is embedded twice. Default: the policy's embedder.",
    ),
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
      .describe(
        'Prompt texts whose router scores are kept (kNN and MLP routers, rules routers with no `meta` condition); 0 turns the cache off.',
      ),
    fallbacks: z.array(Name).default([]).describe('Backends tried in order after the chosen one fails.'),
    guard: GuardConfig.optional().describe('Out-of-domain check before scoring.'),
    sticky: StickyConfig.default(StickyConfig.parse({})).describe('Multi-turn conversations stay on their first-turn model.'),
    steer: SteerConfig.optional().describe("Adjusts the utility objective's lambda online toward a target share or spend."),
    record_prompts: z
      .union([z.boolean(), z.object({ max_chars: z.number().int().positive() }).strict()])
      .default(false)
      .describe(
        'Store the routed prompt text in request records (true: first 2000 characters). Off by default: records hold no prompt text.',
      ),
    shadow: Name.optional().describe(
      "Another policy whose decision is computed and recorded beside this one's for every request, never acted on.",
    ),
    on_overload: z
      .enum(['queue', 'next_best', 'reject'])
      .default('queue')
      .describe(
        'A chosen backend that is saturated (its max_connections pool is full, or it answered 429): queue and wait (default), next_best: its next-best candidate answers, reject: 503 overloaded.',
      ),
    on_budget_exceeded: z
      .enum(['reject', 'downgrade'])
      .default('reject')
      .describe("A client key over its USD budget: 429 (reject), or served by this policy's cheapest candidate (downgrade)."),
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
    max_json_depth: z
      .number()
      .int()
      .min(2)
      .default(128)
      .describe('Deepest nesting of objects and arrays a request body may have (checked before parsing): 400 beyond it.'),
    max_messages: z.number().int().positive().default(2048).describe('Most `messages` a chat request may carry: 400 beyond it.'),
    max_prompt_chars: z
      .number()
      .int()
      .positive()
      .default(1_000_000)
      .describe('Most characters of text (messages, prompt, input) a request may send: 400 beyond it.'),
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
    request_deadline_ms: z
      .number()
      .int()
      .positive()
      .optional()
      .describe(
        'Longest a request may spend on upstream attempts, retries, backoff and fallbacks before its first byte: 504 upstream_timeout beyond it. Unset: only the per-backend timeouts bound it.',
      ),
    retry_budget: z
      .object({
        ratio: z.number().min(0).max(10).default(0.2).describe('Retries (attempts after the first of a request) allowed per request.'),
        min_per_s: z.number().min(0).default(5).describe('Retries per second allowed whatever the traffic.'),
      })
      .strict()
      .default({ ratio: 0.2, min_per_s: 5 })
      .describe('Caps retries and fallbacks per process, so an outage does not multiply the load on upstreams.'),
    routing_threads: z
      .number()
      .int()
      .min(0)
      .max(64)
      .default(0)
      .describe(
        'Worker threads that embed, guard and score routed requests (policies with an on-thread embedder: lexical, static, or a concat of them) so the event loop only forwards. 0: the event loop scores. One per spare core; the event loop scores itself while they are busy or restarting.',
      ),
    routing_threads_min_utilization: z
      .number()
      .min(0)
      .max(1)
      .default(0.5)
      .describe(
        'With routing_threads: hand a routed request to a thread only while the event loop was busy at least this share of the last 100 ms; below it the event loop scores the request itself, without the hand-off (a message each way and a thread to wake, ~0.3 ms of latency for a lone request). 0: always hand off.',
      ),
    access_log: z.boolean().default(true).describe('One log line per request.'),
    watch: z.boolean().default(true).describe('Reload when the config file changes.'),
    drain_timeout_ms: z
      .number()
      .int()
      .min(0)
      .default(25_000)
      .describe(
        'On SIGTERM/SIGINT, how long (from the signal) in-flight requests and open streams may run on; then each open stream gets one `shutting_down` SSE error event and ends, a request not yet answered gets a 503. Keep it ~5 s under the kill grace (compose stop_grace_period, Kubernetes terminationGracePeriodSeconds).',
      ),
    drain_delay_ms: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe(
        'On SIGTERM/SIGINT, how long to keep accepting and serving new requests while /readyz already answers 503, so load balancers see readiness drop before the listener closes (a few seconds behind one). Part of drain_timeout_ms.',
      ),
  })
  .strict();

const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'the NAME of an environment variable, not its value');

export const RedisTelemetryOptions = z
  .object({
    enabled: z.boolean().default(true).describe('false keeps Redis off even when REDIS_URL is set.'),
    url: z
      .string()
      .regex(/^rediss?(\+cluster|\+sentinel)?:\/\//, 'use redis://, rediss://, redis+cluster://h:p,h:p or redis+sentinel://h:p,h:p/master')
      .optional()
      .describe('Default: the REDIS_URL environment variable, else redis://127.0.0.1:6379.'),
    key_prefix: z.string().min(1).default('signalman:').describe('Prefix of every key; must contain a {hash tag} for a cluster url.'),
    stream_max_len: z.number().int().positive().default(100_000).describe('Approximate cap of the records stream (XADD MAXLEN ~).'),
    record_ttl_s: z.number().int().positive().default(86_400).describe('Lifetime of a record by id (req:<id>) and its feedback (fb:<id>).'),
    minute_ttl_s: z
      .number()
      .int()
      .positive()
      .default(48 * 3_600)
      .describe('Lifetime of per-minute totals (reports use them for windows up to 48 h).'),
    day_ttl_s: z
      .number()
      .int()
      .positive()
      .default(400 * 86_400)
      .describe('Lifetime of per-day totals.'),
    buffer_max_records: z
      .number()
      .int()
      .positive()
      .default(10_000)
      .describe('Records held while Redis is slow or down; newer ones are dropped (and counted) past this.'),
    batch_max: z.number().int().positive().default(500).describe('Records per pipeline.'),
    flush_interval_ms: z.number().int().positive().default(100),
    command_timeout_ms: z.number().int().positive().default(1_000),
  })
  .strict()
  .refine((o) => !/^rediss?\+cluster:/.test(o.url ?? '') || /\{[^}]+\}/.test(o.key_prefix), {
    // One Lua call per record touches several keys; in a cluster they must share a slot.
    message: "a cluster url needs a hash tag in key_prefix, e.g. '{signalman}:'",
    path: ['key_prefix'],
  });

export const TelemetryConfig = z
  .object({
    redis: RedisTelemetryOptions.optional().describe(
      'Request records, totals and feedback in Redis. On when this block is present or REDIS_URL is set.',
    ),
    metrics: z
      .object({
        enabled: z.boolean().default(true).describe('Serve Prometheus metrics at GET /metrics.'),
        bearer_token_env: EnvName.optional().describe(
          'Env var holding a token that GET /metrics then requires as `Authorization: Bearer`.',
        ),
      })
      .strict()
      .default({ enabled: true }),
    memory_records: z
      .number()
      .int()
      .min(0)
      .default(1_000)
      .describe('Recent records kept in memory (feedback lookups without Redis, the console); 0 keeps none.'),
  })
  .strict()
  .describe('Bound at start: a reload that changes it says it waits for a restart.');

const Sha256Hex = z.string().regex(/^[0-9a-fA-F]{64}$/, 'a SHA-256 digest: 64 hex digits, e.g. from `printf %s "$KEY" | sha256sum`');

export const ClientKey = z
  .object({
    id: Name.describe('Names the key in records, logs and metrics (never the secret).'),
    secret_sha256: Sha256Hex.optional().describe('SHA-256 of the secret, hex: the secret itself is never in the file.'),
    secret_env: EnvName.optional().describe('Env var holding the secret (read at load and at each reload).'),
    secret: z
      .undefined({ error: 'a plaintext secret never goes in YAML: give secret_sha256 (printf %s "$KEY" | sha256sum) or secret_env' })
      .optional(),
    policies: z.array(z.string()).default(['*']).describe("Policies this key may use as `model`; '*' = all (the default)."),
    backends: z
      .array(z.string())
      .default([])
      .describe("Backends this key may name directly as `model` (skipping routing); '*' = all. Default: none."),
    limits: z
      .object({
        requests_per_minute: z.number().int().positive().optional(),
        tokens_per_minute: z.number().int().positive().optional().describe('Prompt + completion tokens, charged when the answer is known.'),
      })
      .strict()
      .default({}),
    budget: z
      .object({
        usd_per_day: z.number().positive().optional().describe('UTC day.'),
        usd_per_month: z.number().positive().optional().describe('UTC calendar month.'),
      })
      .strict()
      .default({}),
  })
  .strict()
  .refine((k) => (k.secret_sha256 === undefined) !== (k.secret_env === undefined), {
    message: 'give exactly one of secret_sha256 and secret_env',
    path: ['secret_sha256'],
  });

export const LimitsConfig = z
  .object({
    redis_url: z
      .string()
      .optional()
      .describe("Redis for the limit counters; default: telemetry's (telemetry.redis / REDIS_URL), else none (per process)."),
    key_prefix: z.string().min(1).optional().describe("Prefix of the limit keys; default: telemetry's key_prefix."),
    on_redis_error: z
      .enum(['fail_open', 'fail_closed'])
      .default('fail_open')
      .describe(
        'Redis unreachable or slow: fail_open counts limits per process meanwhile; fail_closed answers 503 to keyed requests with limits.',
      ),
    redis_timeout_ms: z
      .number()
      .int()
      .positive()
      .default(250)
      .describe('How long a limit check may wait on Redis before that counts as an error (then Redis is skipped for 1 s).'),
  })
  .strict()
  .describe(
    'Where client-key limits and budgets are counted: in Redis (shared by every replica) when telemetry uses Redis, else per process. Bound at start.',
  );

export const ConfigSchema = z
  .object({
    version: z.literal(1).default(1),
    server: Server.default(Server.parse({})),
    backends: z.array(Backend).min(1, 'declare at least one backend'),
    policies: z.array(Policy).default([]),
    telemetry: TelemetryConfig.default(TelemetryConfig.parse({})),
    keys: z.array(ClientKey).default([]).describe('Client keys (Authorization: Bearer <secret>). None: the API is open, for local use.'),
    limits: LimitsConfig.default(LimitsConfig.parse({})),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;
export type BackendConfig = z.infer<typeof Backend>;
export type BreakerConfig = z.infer<typeof BreakerConfig>;
export type PolicyConfig = z.infer<typeof Policy>;
export type TelemetryConfig = z.infer<typeof TelemetryConfig>;
export type RedisTelemetryOptions = z.infer<typeof RedisTelemetryOptions>;
export type ClientKeyConfig = z.infer<typeof ClientKey>;
export type LimitsConfig = z.infer<typeof LimitsConfig>;
