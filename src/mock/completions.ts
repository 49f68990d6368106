// POST …/completions (legacy text completions), plain or streamed, shaped like OpenAI's Completion.
import { z } from 'zod';
import { type GenSettings, newId, nowSeconds, parseBody, type Reply, sse, SSE_DONE, SYSTEM_FINGERPRINT, usage } from './common.js';
import { hashSeeded32 } from '../util/hash.js';
import { estimateTokens, generateTokens } from './text.js';

const Prompt = z.union([
  z.string(),
  z.array(z.string()).min(1),
  z.array(z.number().int()).min(1),
  z.array(z.array(z.number().int()).min(1)).min(1),
]);
export const CompletionBody = z.looseObject({
  model: z.string().min(1),
  prompt: Prompt,
  n: z.number().int().min(1).max(128).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  echo: z.boolean().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullish() }).nullish(),
});
export type CompletionBody = z.infer<typeof CompletionBody>;

/** Each prompt as text (token-id prompts become their ids joined, which is enough for a seed). */
function prompts(p: CompletionBody['prompt']): { text: string; tokens: number; echo: string }[] {
  if (typeof p === 'string') return [{ text: p, tokens: estimateTokens(p.length), echo: p }];
  if (p.every((x) => typeof x === 'string')) {
    return (p as string[]).map((t) => ({ text: t, tokens: estimateTokens(t.length), echo: t }));
  }
  if (p.every((x) => typeof x === 'number')) return [{ text: (p as number[]).join(' '), tokens: p.length, echo: '' }];
  return (p as number[][]).map((ids) => ({ text: ids.join(' '), tokens: ids.length, echo: '' }));
}

interface Choice {
  echo: string; // the prompt, when echo is set
  tokens: string[];
  finish: 'stop' | 'length';
}

export function completion(raw: unknown, s: GenSettings): Reply {
  const b = parseBody(CompletionBody, raw, 'completions');
  const n = b.n ?? 1;
  const modelSeed = hashSeeded32(b.model);
  const choices: Choice[] = [];
  let promptTokens = 0;
  let completionTokens = 0;
  // OpenAI orders choices prompt by prompt, n per prompt.
  for (const p of prompts(b.prompt)) {
    promptTokens += p.tokens;
    const seedBase = hashSeeded32(p.text, modelSeed);
    for (let i = 0; i < n; i++) {
      const g = generateTokens(hashSeeded32(String(i), seedBase), s.completionTokens, b.max_tokens ?? null);
      completionTokens += g.tokens.length;
      choices.push({ echo: b.echo === true ? p.echo : '', ...g });
    }
  }
  const id = newId('cmpl-');
  const created = nowSeconds();
  if (b.stream !== true) {
    const body = {
      id,
      object: 'text_completion',
      created,
      model: b.model,
      system_fingerprint: SYSTEM_FINGERPRINT,
      choices: choices.map((c, index) => ({ text: c.echo + c.tokens.join(''), index, logprobs: null, finish_reason: c.finish })),
      usage: usage(promptTokens, completionTokens),
    };
    return { kind: 'json', body: JSON.stringify(body) };
  }

  const withUsage = b.stream_options?.include_usage === true;
  const head =
    `{"id":"${id}","object":"text_completion","created":${created},"model":${JSON.stringify(b.model)},` +
    `"system_fingerprint":"${SYSTEM_FINGERPRINT}","choices":[`;
  const tail = withUsage ? '],"usage":null}' : ']}';
  const ev = (index: number, text: string, finish: string | null): string =>
    sse(
      `${head}{"text":${JSON.stringify(text)},"index":${index},"logprobs":null,"finish_reason":${finish === null ? 'null' : `"${finish}"`}}${tail}`,
    );
  const events: string[] = [];
  choices.forEach((c, i) => {
    if (c.echo !== '') events.push(ev(i, c.echo, null));
  });
  const steps = Math.max(0, ...choices.map((c) => c.tokens.length));
  for (let t = 0; t < steps; t++) {
    choices.forEach((c, i) => {
      const tok = c.tokens[t];
      if (tok !== undefined) events.push(ev(i, tok, null));
    });
  }
  choices.forEach((c, i) => events.push(ev(i, '', c.finish)));
  if (withUsage) events.push(sse(`${head}],"usage":${JSON.stringify(usage(promptTokens, completionTokens))}}`));
  events.push(SSE_DONE);
  return { kind: 'sse', events };
}
