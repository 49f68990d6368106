import { describe, expect, it } from 'vitest';
import { extractPromptText, PromptTextOptions } from '../../src/routers/prompt-text.js';
import { sliceSafe, truncateMiddle } from '../../src/util/text.js';

const opts = (o: Partial<PromptTextOptions> = {}): PromptTextOptions => PromptTextOptions.parse(o);
const hasLoneSurrogate = (s: string): boolean => /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);

describe('extractPromptText', () => {
  it('takes the last user message and the context turns before it, oldest first', () => {
    const body = {
      model: 'auto',
      messages: [
        { role: 'system', content: 'You are a lawyer.' },
        { role: 'user', content: 'First question' },
        { role: 'assistant', content: 'First answer' },
        { role: 'user', content: 'What is a tort?' },
      ],
    };
    expect(extractPromptText(body, opts({ context_turns: 2 }))).toBe('First question\nFirst answer\nWhat is a tort?');
    expect(extractPromptText(body, opts({ context_turns: 0 }))).toBe('What is a tort?');
    expect(extractPromptText(body, opts({ context_turns: 10 }))).toBe('You are a lawyer.\nFirst question\nFirst answer\nWhat is a tort?');
  });

  it('keeps text parts and ignores image, audio and file parts', () => {
    const body = {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Describe this' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
            { type: 'input_audio', input_audio: { data: 'UklGR', format: 'wav' } },
            { type: 'text', text: 'in one line' },
          ],
        },
      ],
    };
    expect(extractPromptText(body, opts())).toBe('Describe this\nin one line');
  });

  it('gives the last user message priority over context when the budget is tight', () => {
    const body = {
      messages: [
        { role: 'user', content: 'x'.repeat(500) },
        { role: 'assistant', content: 'y'.repeat(500) },
        { role: 'user', content: 'q'.repeat(90) },
      ],
    };
    const t = extractPromptText(body, opts({ max_chars: 100, context_turns: 2 }));
    expect(t.length).toBeLessThanOrEqual(100);
    expect(t.endsWith('q'.repeat(90))).toBe(true);
    expect(t).toBe(`${'y'.repeat(9)}\n${'q'.repeat(90)}`); // the tail of the nearest turn fills the rest
  });

  it('cuts a huge prompt to max_chars keeping head and tail, never splitting a surrogate pair', () => {
    const emoji = '😀'.repeat(100_000); // 200k code units, all surrogate pairs
    for (const max of [16, 17, 100, 101, 2048]) {
      const t = extractPromptText({ messages: [{ role: 'user', content: `start ${emoji} end` }] }, opts({ max_chars: max }));
      expect(t.length).toBeLessThanOrEqual(max);
      expect(hasLoneSurrogate(t)).toBe(false);
    }
    const t = extractPromptText({ prompt: `HEAD${'z'.repeat(10_000)}TAIL` }, opts({ max_chars: 64 }));
    expect(t.startsWith('HEAD')).toBe(true);
    expect(t.endsWith('TAIL')).toBe(true);
  });

  it('reads completions prompts: a string, or a list of strings; token ids give nothing', () => {
    expect(extractPromptText({ prompt: 'Once upon a time' }, opts())).toBe('Once upon a time');
    expect(extractPromptText({ prompt: ['a', 'b'] }, opts())).toBe('a\nb');
    expect(extractPromptText({ prompt: [1, 2, 3] }, opts())).toBe('');
  });

  it('answers empty text for bodies without text instead of throwing', () => {
    for (const body of [null, 'str', 42, {}, { messages: [] }, { messages: [null, 3, { role: 'user' }] }, { messages: 'x' }])
      expect(extractPromptText(body, opts())).toBe('');
  });

  it('falls back to the last message with text when there is no user turn', () => {
    const body = { messages: [{ role: 'system', content: 'Only a system prompt' }] };
    expect(extractPromptText(body, opts())).toBe('Only a system prompt');
  });
});

describe('safe slicing', () => {
  it('moves cut points off the middle of a surrogate pair', () => {
    const s = 'a😀b'; // a, high, low, b
    expect(sliceSafe(s, 0, 2)).toBe('a');
    expect(sliceSafe(s, 2, 4)).toBe('b');
    expect(truncateMiddle('abc', 10)).toBe('abc');
  });

  it('rejects options outside their bounds with the field named', () => {
    const r = PromptTextOptions.safeParse({ max_chars: 0 });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(['max_chars']);
    expect(PromptTextOptions.safeParse({ context_turns: 1, extra: true }).success).toBe(false);
  });
});
