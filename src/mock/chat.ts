// POST …/chat/completions: deterministic answers, tool calls and tool round-trips, plain or streamed,
// shaped like OpenAI's ChatCompletion / ChatCompletionChunk (see openai/resources/chat/completions).
import { z } from 'zod';
import {
  contentText,
  type GenSettings,
  invalid,
  newId,
  nowSeconds,
  parseBody,
  type Reply,
  sse,
  SSE_DONE,
  SYSTEM_FINGERPRINT,
  usage,
} from './common.js';
import { hashSeeded32 } from '../util/hash.js';
import { seededRandom } from '../util/random.js';
import { estimateTokens, generateTokens, splitTokens } from './text.js';
import { argumentFragments, toolArguments } from './tools.js';

// Only the fields the mock reads; everything else passes through unchecked, as upstreams do.
const Message = z.looseObject({ role: z.string(), content: z.unknown().optional() });
const Tool = z.looseObject({
  type: z.string(),
  function: z.looseObject({ name: z.string().min(1), parameters: z.unknown().optional() }).optional(),
});
const ToolChoice = z.union([z.string(), z.looseObject({ type: z.string(), function: z.looseObject({ name: z.string() }).optional() })]);
export const ChatBody = z.looseObject({
  model: z.string().min(1),
  messages: z.array(Message).min(1),
  n: z.number().int().min(1).max(128).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullish() }).nullish(),
  tools: z.array(Tool).nullish(),
  tool_choice: ToolChoice.nullish(),
});
export type ChatBody = z.infer<typeof ChatBody>;

type Choice =
  | { kind: 'text'; tokens: string[]; finish: 'stop' | 'length' }
  | { kind: 'tool'; id: string; name: string; args: string; fragments: string[] };

interface FunctionDef {
  name: string;
  parameters?: unknown;
}

/** The function to call, or null when the answer is text (no tools, 'none', or a tool result to read). */
function pickTool(b: ChatBody, lastRole: string): FunctionDef | null {
  if (!b.tools || b.tools.length === 0 || b.tool_choice === 'none' || lastRole === 'tool') return null;
  const fns: FunctionDef[] = [];
  for (const t of b.tools) if (t.type === 'function' && t.function) fns.push(t.function);
  const choice = b.tool_choice;
  if (choice && typeof choice === 'object' && choice.function) {
    const name = choice.function.name;
    const named = fns.find((f) => f.name === name);
    if (!named) throw invalid(`tool_choice names function '${name}', which is not in tools`, 'tool_choice.function.name');
    return named;
  }
  return fns[0] ?? null;
}

function plan(b: ChatBody, s: GenSettings): { choices: Choice[]; promptTokens: number } {
  const last = b.messages[b.messages.length - 1]!; // min(1) above
  const tool = pickTool(b, last.role);
  const cap = b.max_completion_tokens ?? b.max_tokens ?? null;
  const seedBase = hashSeeded32(JSON.stringify(b.messages), hashSeeded32(b.model));
  const n = b.n ?? 1;
  const choices: Choice[] = [];
  for (let i = 0; i < n; i++) {
    const seed = hashSeeded32(String(i), seedBase);
    if (tool) {
      const args = toolArguments(tool.parameters, seededRandom(seed));
      choices.push({ kind: 'tool', id: newId('call_'), name: tool.name, args, fragments: argumentFragments(args) });
    } else if (last.role === 'tool') {
      // Echo the tool result verbatim so a test can see the round-trip reached the model.
      const tokens = splitTokens(`Tool result: ${contentText(last.content)}`);
      const cut = cap !== null && cap < tokens.length;
      choices.push({ kind: 'text', tokens: cut ? tokens.slice(0, cap) : tokens, finish: cut ? 'length' : 'stop' });
    } else {
      choices.push({ kind: 'text', ...generateTokens(seed, s.completionTokens, cap) });
    }
  }
  let promptTokens = 0;
  for (const m of b.messages) promptTokens += 4 + estimateTokens(contentText(m.content).length);
  return { choices, promptTokens };
}

function completionTokensOf(choices: Choice[]): number {
  let n = 0;
  for (const c of choices) n += c.kind === 'text' ? c.tokens.length : c.fragments.length;
  return n;
}

function plainReply(b: ChatBody, choices: Choice[], promptTokens: number): Reply {
  const body = {
    id: newId('chatcmpl-'),
    object: 'chat.completion',
    created: nowSeconds(),
    model: b.model,
    choices: choices.map((c, index) =>
      c.kind === 'text'
        ? {
            index,
            message: { role: 'assistant', content: c.tokens.join(''), refusal: null, annotations: [] },
            logprobs: null,
            finish_reason: c.finish,
          }
        : {
            index,
            message: {
              role: 'assistant',
              content: null,
              refusal: null,
              annotations: [],
              tool_calls: [{ id: c.id, type: 'function', function: { name: c.name, arguments: c.args } }],
            },
            logprobs: null,
            finish_reason: 'tool_calls',
          },
    ),
    usage: usage(promptTokens, completionTokensOf(choices)),
    service_tier: 'default',
    system_fingerprint: SYSTEM_FINGERPRINT,
  };
  return { kind: 'json', body: JSON.stringify(body) };
}

function streamReply(b: ChatBody, choices: Choice[], promptTokens: number): Reply {
  const withUsage = b.stream_options?.include_usage === true;
  // Every chunk shares this envelope; only the choice differs, so build it once per request.
  const head =
    `{"id":"${newId('chatcmpl-')}","object":"chat.completion.chunk","created":${nowSeconds()},` +
    `"model":${JSON.stringify(b.model)},"service_tier":"default","system_fingerprint":"${SYSTEM_FINGERPRINT}","choices":[`;
  const tail = withUsage ? '],"usage":null}' : ']}';
  const ev = (index: number, delta: string, finish: string | null): string =>
    sse(`${head}{"index":${index},"delta":${delta},"logprobs":null,"finish_reason":${finish === null ? 'null' : `"${finish}"`}}${tail}`);

  const events: string[] = [];
  choices.forEach((c, i) => events.push(ev(i, `{"role":"assistant","content":${c.kind === 'text' ? '""' : 'null'},"refusal":null}`, null)));
  choices.forEach((c, i) => {
    if (c.kind === 'tool') {
      const open = `{"index":0,"id":"${c.id}","type":"function","function":{"name":${JSON.stringify(c.name)},"arguments":""}}`;
      events.push(ev(i, `{"tool_calls":[${open}]}`, null));
    }
  });
  // Interleave choices token by token, as OpenAI does for n > 1.
  const steps = Math.max(0, ...choices.map((c) => (c.kind === 'text' ? c.tokens.length : c.fragments.length)));
  for (let t = 0; t < steps; t++) {
    choices.forEach((c, i) => {
      if (c.kind === 'text') {
        const tok = c.tokens[t];
        if (tok !== undefined) events.push(ev(i, `{"content":${JSON.stringify(tok)}}`, null));
      } else {
        const frag = c.fragments[t];
        if (frag !== undefined) {
          events.push(ev(i, `{"tool_calls":[{"index":0,"function":{"arguments":${JSON.stringify(frag)}}}]}`, null));
        }
      }
    });
  }
  choices.forEach((c, i) => events.push(ev(i, '{}', c.kind === 'text' ? c.finish : 'tool_calls')));
  if (withUsage) events.push(sse(`${head}],"usage":${JSON.stringify(usage(promptTokens, completionTokensOf(choices)))}}`));
  events.push(SSE_DONE);
  return { kind: 'sse', events };
}

export function chatCompletion(raw: unknown, s: GenSettings): Reply {
  const b = parseBody(ChatBody, raw, 'chat.completions');
  const { choices, promptTokens } = plan(b, s);
  return b.stream === true ? streamReply(b, choices, promptTokens) : plainReply(b, choices, promptTokens);
}
