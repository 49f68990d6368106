// `rules` router: keyword / regex / metadata rules from YAML for teams without training data; the first
// matching rule wins. Optionally a classifier artifact (an mlp artifact with `labels`) maps a prompt's
// category to an expert backend. Everything is compiled once at load; a bad regex is a config error.
import { z } from 'zod';
import { bindArtifact, checkEmbedding } from './artifacts.js';
import { OnnxMlp } from './mlp.js';
import { defineRouter, type CandidateScore, type RouteQuery } from './types.js';

/** `pattern` or `/pattern/flags`; always compiled with the `u` (or `v`) flag. */
export function compileRegex(src: string): RegExp {
  const lit = /^\/(.*)\/([a-z]*)$/s.exec(src);
  if (!lit) return new RegExp(src, 'u');
  const flags = lit[2]!;
  // g and y make test() resume from the previous match, so one request would change the next one's route.
  if (/[gy]/.test(flags)) throw new Error(`flags 'g' and 'y' are not allowed (got '${flags}')`);
  return new RegExp(lit[1]!, /[uv]/.test(flags) ? flags : `${flags}u`);
}

const RegexSource = z
  .string()
  .min(1)
  .superRefine((src, ctx) => {
    try {
      compileRegex(src);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `invalid regular expression: ${(err as Error).message}` });
    }
  });

const Keywords = z.array(z.string().min(1)).min(1);

export const RuleCondition = z
  .object({
    any_keywords: Keywords.optional().describe('Matches when any of these words or phrases occurs (case-insensitive, whole words).'),
    all_keywords: Keywords.optional().describe('Matches when every one of these words or phrases occurs (case-insensitive, whole words).'),
    regex: RegexSource.optional().describe(
      "A JavaScript regular expression tested on the prompt text: 'pattern' or '/pattern/flags' (e.g. '/\\bSELECT\\b/i').",
    ),
    meta: z
      .record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
      .optional()
      .describe('Request metadata that must equal these values (all of them).'),
    min_chars: z.number().int().min(0).optional().describe('Matches prompts at least this many characters long.'),
    max_chars: z.number().int().min(0).optional().describe('Matches prompts at most this many characters long.'),
  })
  .strict()
  .refine((w) => Object.values(w).some((v) => v !== undefined), {
    message: 'a rule needs at least one condition; use `default` for the catch-all',
  })
  .describe('Conditions of a rule; all the ones given must hold.');

const Scores = z
  .record(z.string(), z.number().min(0).max(1))
  .describe('Predicted quality per backend (0..1); candidates not listed get 0.');

export const RuleOutcome = z
  .object({
    prefer: z.string().min(1).optional().describe('Backend to prefer (quality 1; the other candidates 0).'),
    scores: Scores.optional(),
  })
  .strict()
  .refine((o) => (o.prefer === undefined) !== (o.scores === undefined), { message: 'give exactly one of `prefer` or `scores`' });

export const Rule = z
  .object({
    name: z.string().min(1).describe('Shown in the decision evidence when this rule matches.'),
    when: RuleCondition,
    prefer: z.string().min(1).optional().describe('Backend to prefer (quality 1; the other candidates 0).'),
    scores: Scores.optional(),
  })
  .strict()
  .refine((o) => (o.prefer === undefined) !== (o.scores === undefined), { message: 'give exactly one of `prefer` or `scores`' });

export const RulesRouterOptions = z
  .object({
    type: z.literal('rules'),
    rules: z.array(Rule).default([]).describe('Tried in order; the first rule whose conditions all hold decides.'),
    default: RuleOutcome.describe('What to do when no rule (and no confident classifier label) decides.'),
    classifier: z
      .object({
        artifact: z
          .string()
          .min(1)
          .describe('Folder of an mlp artifact with `labels` (a softmax category classifier), relative to the config file.'),
        map: z.record(z.string(), z.string()).describe('Classifier label -> backend that is the expert for it.'),
        min_confidence: z
          .number()
          .min(0)
          .max(1)
          .default(0)
          .describe('Below this probability the classifier abstains and `default` applies.'),
      })
      .strict()
      .optional()
      .describe('Category-to-expert routing, consulted after the rules and before `default`.'),
  })
  .strict()
  .describe('Keyword, regex and metadata rules (no training data needed), optionally with a category classifier.');

type Outcome = ReadonlyMap<string, number>;

interface CompiledRule {
  name: string;
  test(q: RouteQuery): boolean;
  outcome: Outcome;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Whole-word, case-insensitive: 'art' must not match 'start'. Phrases keep their inner spaces. */
function keywordRegex(words: readonly string[]): RegExp {
  return new RegExp(`(?<![\\p{L}\\p{N}_])(?:${words.map((w) => escapeRegex(w.trim())).join('|')})(?![\\p{L}\\p{N}_])`, 'iu');
}

function compileRule(when: z.infer<typeof RuleCondition>): (q: RouteQuery) => boolean {
  const tests: Array<(q: RouteQuery) => boolean> = [];
  if (when.min_chars !== undefined) {
    const n = when.min_chars;
    tests.push((q) => q.text.length >= n);
  }
  if (when.max_chars !== undefined) {
    const n = when.max_chars;
    tests.push((q) => q.text.length <= n);
  }
  if (when.meta) {
    const entries = Object.entries(when.meta);
    tests.push((q) => entries.every(([k, v]) => q.meta[k] === v));
  }
  if (when.any_keywords) {
    const re = keywordRegex(when.any_keywords);
    tests.push((q) => re.test(q.text));
  }
  if (when.all_keywords) {
    const res = when.all_keywords.map((w) => keywordRegex([w]));
    tests.push((q) => res.every((re) => re.test(q.text)));
  }
  if (when.regex !== undefined) {
    const re = compileRegex(when.regex);
    tests.push((q) => re.test(q.text));
  }
  return (q) => tests.every((t) => t(q));
}

export default defineRouter({
  type: 'rules',
  options: RulesRouterOptions,
  async create(opts, ctx) {
    const backends = new Set(ctx.candidates.map((c) => c.backend));
    const known = [...backends].join(', ');
    const outcome = (o: { prefer?: string | undefined; scores?: Record<string, number> | undefined }, where: string): Outcome => {
      const entries: Array<[string, number]> = o.prefer !== undefined ? [[o.prefer, 1]] : Object.entries(o.scores ?? {});
      for (const [b] of entries) {
        if (!backends.has(b))
          throw new Error(`rules: ${where} names backend '${b}', which is not a candidate of this policy (candidates: ${known})`);
      }
      return new Map(entries);
    };
    const rules: CompiledRule[] = opts.rules.map((r, i) => ({
      name: r.name,
      test: compileRule(r.when),
      outcome: outcome(r, `rule ${i} '${r.name}'`),
    }));
    const fallback = outcome(opts.default, 'default');

    let classify: ((e: Float32Array | null) => Promise<{ label: string; p: number }>) | null = null;
    let close = async (): Promise<void> => {};
    const expert = new Map<string, Outcome>();
    if (opts.classifier) {
      const c = opts.classifier;
      const dir = ctx.resolvePath(c.artifact);
      const mlp = await OnnxMlp.load(dir);
      close = () => mlp.close();
      try {
        const labels = mlp.manifest.labels;
        if (!labels)
          throw new Error(`rules.classifier: ${dir} has no \`labels\`; a category classifier is an mlp artifact trained on labels`);
        bindArtifact(dir, mlp.manifest, ctx.embedder, [], { needModels: false });
        for (const [label, backend] of Object.entries(c.map)) {
          if (!labels.includes(label))
            throw new Error(`rules.classifier.map: label '${label}' is not one of the classifier's labels (${labels.join(', ')})`);
          expert.set(label, outcome({ prefer: backend }, `classifier.map.${label}`));
        }
      } catch (err) {
        await close();
        throw err;
      }
      const labels = mlp.manifest.labels!;
      classify = async (e) => {
        const p = await mlp.run(checkEmbedding(e, mlp.inputDim, 'rules'));
        let best = 0;
        for (let i = 1; i < p.length; i++) if (p[i]! > p[best]!) best = i;
        return { label: labels[best]!, p: p[best]! };
      };
    }

    const toScores = (q: RouteQuery, o: Outcome, evidence: Record<string, string | number>): CandidateScore[] =>
      q.candidates.map((backend) => ({ backend, quality: o.get(backend) ?? 0, evidence }));

    return {
      type: 'rules',
      needsEmbedding: classify !== null,
      // Keywords, regexes, lengths and the classifier read the text alone; a `meta` condition reads the request.
      textOnly: opts.rules.every((r) => r.when.meta === undefined),
      async score(q): Promise<CandidateScore[]> {
        for (const r of rules) if (r.test(q)) return toScores(q, r.outcome, { rule: r.name });
        if (classify !== null) {
          const { label, p } = await classify(q.embedding);
          const confidence = Math.round(p * 10_000) / 10_000;
          const o = expert.get(label);
          if (o !== undefined && p >= opts.classifier!.min_confidence) return toScores(q, o, { rule: 'classifier', label, confidence });
          return toScores(q, fallback, { rule: 'default', label, confidence });
        }
        return toScores(q, fallback, { rule: 'default' });
      },
      close,
    };
  },
});
