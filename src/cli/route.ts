// `signalman route --config FILE --prompts FILE`: where each policy of a config sends each prompt of a file,
// decided exactly as the gateway decides (the same compiled runtime, resolveRoute, as a dry run): the ops
// team's "what would it do with this?" before a config goes live, and the README's chat-prompt table.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { loadConfigFile } from '../config/load.js';
import { ConfigErrors, SignalmanError } from '../errors.js';
import type { Decision } from '../routers/policy.js';
import { resolveRoute } from '../routers/resolve.js';
import { RoutingState } from '../routers/state.js';
import { compileRuntime, createSharedPools } from '../runtime/compile.js';

export const ROUTE_USAGE = `usage: signalman route --config FILE --prompts FILE [--policy NAME]... [--json]

Runs every prompt of --prompts through each policy of the config (all of them unless --policy names
some) exactly as the gateway would for a chat request — prompt extraction, embedder, guard, router,
objective — without calling any upstream, and prints where each one goes and why. --prompts is JSONL:
one object per line with "prompt" (a user message) or "messages" (a chat body's messages), and an
optional "label" to show instead of the prompt's start. --json prints one object per prompt and policy.`;

const PromptRow = z
  .object({
    label: z.string().optional(),
    prompt: z.string().optional(),
    messages: z
      .array(z.object({ role: z.string(), content: z.unknown() }).passthrough())
      .min(1)
      .optional(),
  })
  .refine((r) => (r.prompt === undefined) !== (r.messages === undefined), { message: 'needs exactly one of "prompt" or "messages"' });
type PromptRow = z.infer<typeof PromptRow>;

async function readPromptRows(file: string): Promise<PromptRow[]> {
  const rows: PromptRow[] = [];
  const lines = (await readFile(file, 'utf8')).split('\n');
  for (const [i, line] of lines.entries()) {
    if (line.trim() === '') continue;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new Error(`${file}:${i + 1}: not valid JSON`);
    }
    const r = PromptRow.safeParse(json);
    if (!r.success)
      throw new Error(`${file}:${i + 1}: ${r.error.issues.map((x) => `${x.path.join('.') || 'line'}: ${x.message}`).join('; ')}`);
    rows.push(r.data);
  }
  if (rows.length === 0) throw new Error(`${file}: no prompts`);
  return rows;
}

/** What one decision says, as the table and --json show it. */
interface Routed {
  prompt: string;
  policy: string;
  backend: string | null;
  reason: string;
  guard: { score: number; threshold: number; in_domain: boolean } | null;
  /** The chosen candidate's predicted quality, when the router scored candidates. */
  quality: number | null;
  /** Whole decision, ms. */
  ms: number;
  error: string | null;
}

function shortPrompt(r: PromptRow, max = 44): string {
  if (r.label !== undefined) return r.label;
  const text = r.prompt ?? JSON.stringify(r.messages?.at(-1)?.content ?? '');
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function summarize(prompt: string, policy: string, d: Decision, ms: number): Routed {
  const chosen = d.candidates.find((c) => c.backend === d.chosen);
  return {
    prompt,
    policy,
    backend: d.chosen,
    reason: d.reason,
    guard: d.guard === null ? null : { score: d.guard.score, threshold: d.guard.threshold, in_domain: d.guard.inDomain },
    quality: chosen?.quality ?? null,
    ms,
    error: null,
  };
}

function cell(r: Routed): string {
  if (r.error !== null) return `error: ${r.error}`;
  const why =
    r.reason === 'guard_fallback' && r.guard !== null ? `guard ${r.guard.score.toFixed(2)} < ${r.guard.threshold.toFixed(2)}` : r.reason;
  return `${r.backend} (${why})`;
}

function printTable(rows: readonly PromptRow[], policies: readonly string[], out: readonly Routed[][]): void {
  const header = ['prompt', ...policies];
  const body = rows.map((r, i) => [shortPrompt(r), ...out[i]!.map(cell)]);
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((b) => b[c]!.length)));
  const line = (cols: readonly string[]) => `| ${cols.map((x, c) => x.padEnd(widths[c]!)).join(' | ')} |`;
  console.log(line(header));
  console.log(`| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`);
  for (const b of body) console.log(line(b));
}

export async function routeCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      prompts: { type: 'string' },
      policy: { type: 'string', multiple: true },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help || values.config === undefined || values.prompts === undefined) {
    (values.help ? console.log : console.error)(ROUTE_USAGE);
    return values.help ? 0 : 2;
  }
  const shared = createSharedPools();
  try {
    const rows = await readPromptRows(values.prompts);
    const runtime = await compileRuntime(await loadConfigFile(resolve(values.config)), shared, 1, { scoringThreads: false });
    try {
      const policies = values.policy ?? [...runtime.policies.keys()];
      const missing = policies.filter((p) => !runtime.policies.has(p));
      if (missing.length > 0) {
        throw new Error(
          `no policy ${missing.map((m) => `'${m}'`).join(', ')} in the config (policies: ${[...runtime.policies.keys()].join(', ')})`,
        );
      }
      const state = new RoutingState();
      const out: Routed[][] = [];
      for (const r of rows) {
        const messages = r.messages ?? [{ role: 'user', content: r.prompt }];
        const results: Routed[] = [];
        for (const policy of policies) {
          const t0 = performance.now();
          try {
            const { decision } = await resolveRoute({
              table: runtime,
              endpoint: 'chat',
              body: { model: policy, messages },
              headers: {},
              state,
              dryRun: true,
            });
            results.push(summarize(shortPrompt(r, 200), policy, decision!, performance.now() - t0));
          } catch (err) {
            // A policy may refuse a prompt (guard with on_out_of_domain: reject): that is its answer, not a failure.
            if (!(err instanceof SignalmanError)) throw err;
            results.push({
              prompt: shortPrompt(r, 200),
              policy,
              backend: null,
              reason: err.code,
              guard: null,
              quality: null,
              ms: performance.now() - t0,
              error: err.code,
            });
          }
        }
        out.push(results);
      }
      if (values.json) for (const rs of out) for (const x of rs) console.log(JSON.stringify(x));
      else printTable(rows, policies, out);
      return 0;
    } finally {
      await runtime.dispose();
    }
  } catch (err) {
    if (err instanceof ConfigErrors) for (const p of err.problems) console.error(p.message);
    else console.error(`signalman route: ${(err as Error).message}`);
    return 1;
  } finally {
    await shared.pools.closeAll();
    await shared.embedders.closeAll();
  }
}
