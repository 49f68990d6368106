import { describe, expect, it } from 'vitest';
import { ChatBody } from '../../src/server/openai-schema.js';
import { PromptTextOptions, extractPromptText } from '../../src/routers/prompt-text.js';
import { SHAPES, SHAPES_VERSION, ShapedMessage, shapeDataset, shapeMessages, shapedText } from '../../src/training/shapes.js';
import { type Dataset, rowText } from '../../src/training/dataset.js';

// Prompt shapes: MMLU-like rows rewritten as chat requests. The rows are made up here.

const QUESTION = 'Which organ filters blood in the human body?';
const MC = `${QUESTION}\nA. Heart\nB. Kidney\nC. Lung\nD. Stomach\nAnswer:`;
const ids = Array.from({ length: 40 }, (_, i) => `mmlu/anatomy/${i}`);

describe('shapeMessages', () => {
  it('is deterministic: the same row gives the same messages, other rows pick other templates', () => {
    for (const shape of SHAPES) {
      expect(shapeMessages(MC, 'mmlu/anatomy/1', shape, 'eval')).toEqual(shapeMessages(MC, 'mmlu/anatomy/1', shape, 'eval'));
    }
    const chats = new Set(ids.map((id) => shapeMessages(MC, id, 'chat', 'eval')![0]!.content));
    expect(chats.size).toBeGreaterThanOrEqual(5); // several templates, with and without options
    const systems = new Set(ids.map((id) => shapeMessages(MC, id, 'system', 'eval')![0]!.content));
    expect(systems.size).toBe(2);
  });

  it('makes valid OpenAI chat bodies with the expected roles', () => {
    for (const id of ids)
      for (const shape of SHAPES) {
        const messages = shapeMessages(MC, id, shape, 'eval')!;
        expect(ChatBody.safeParse({ model: 'auto', messages }).success).toBe(true);
        expect(messages.every((m) => ShapedMessage.safeParse(m).success)).toBe(true);
        const roles = messages.map((m) => m.role);
        expect(roles.at(-1)).toBe('user');
        if (shape === 'system') expect(roles).toEqual(['system', 'user']);
        if (shape === 'multi-turn') expect(roles).toEqual(['user', 'assistant', 'user']);
        if (shape === 'stem' || shape === 'chat') expect(roles).toEqual(['user']);
      }
  });

  it("keeps the question in the gateway's text; drops 'Answer:'; keeps or drops the options by row", () => {
    let withOptions = 0;
    for (const id of ids)
      for (const shape of SHAPES) {
        const text = shapedText(shapeMessages(MC, id, shape, 'eval')!);
        expect(text).toContain(QUESTION);
        expect(text).not.toMatch(/Answer:\s*$/);
        if (shape === 'stem') expect(text).toBe(QUESTION);
        if (text.includes('B. Kidney')) withOptions++;
      }
    expect(withOptions).toBeGreaterThan(0);
    expect(withOptions).toBeLessThan(ids.length * 3);
  });

  it('hands the router what the gateway extracts: system prompt and earlier turns within context_turns', () => {
    const sys = shapeMessages(MC, 'mmlu/anatomy/3', 'system', 'eval')!;
    const text = shapedText(sys);
    expect(text).toBe(extractPromptText({ messages: sys }, PromptTextOptions.parse({})));
    expect(text.startsWith(sys[0]!.content)).toBe(true);
    const multi = shapeMessages(MC, 'mmlu/anatomy/3', 'multi-turn', 'eval')!;
    expect(shapedText(multi).split('\n')[0]).toBe(multi[0]!.content); // the unrelated question is context
    // With context_turns 0 only the question's own message remains.
    expect(shapedText(multi, PromptTextOptions.parse({ context_turns: 0 }))).toBe(multi[2]!.content);
  });

  it('uses disjoint template pools for training copies and measurement', () => {
    for (const shape of ['chat', 'system', 'multi-turn'] as const) {
      const train = new Set(ids.map((id) => shapedText(shapeMessages(MC, id, shape, 'train')!).replace(QUESTION, '')));
      const evals = ids.map((id) => shapedText(shapeMessages(MC, id, shape, 'eval')!).replace(QUESTION, ''));
      // A template's frame (the text around the question) from one pool never appears in the other.
      for (const e of evals) expect(train.has(e)).toBe(false);
    }
  });

  it("has no 'stem' copy of a prompt without options, but chat shapes wrap the whole prompt", () => {
    const free = 'Write a limerick about a lighthouse keeper.';
    expect(shapeMessages(free, 'x/1', 'stem', 'eval')).toBeNull();
    expect(shapedText(shapeMessages(free, 'x/1', 'chat', 'eval')!)).toContain(free);
  });
});

describe('shapeDataset', () => {
  const row = (id: string, prompt: string) => ({
    id,
    benchmark: 'mmlu',
    category: 'anatomy',
    prompt,
    scores: { s: 1, w: 0 },
    contaminated: false,
  });
  const ds: Dataset = { file: 'mmlu.jsonl', sha256: 'abc', contaminated: 0, rows: [row('a', MC), row('b', 'free text'), row('c', MC)] };

  it("copies chosen rows with their outcomes; each copy's prompt is its gateway text, unchanged by rowText", () => {
    const s = shapeDataset(ds, [0, 1, 2], 'system', 'eval');
    expect(s.source).toEqual([0, 1, 2]);
    expect(s.ds.rows.map((r) => r.id)).toEqual(['a#system', 'b#system', 'c#system']);
    expect(s.ds.rows.every((r) => r.scores.s === 1 && r.scores.w === 0)).toBe(true);
    s.ds.rows.forEach((r, k) => {
      expect(r.prompt).toBe(shapedText(shapeMessages(ds.rows[s.source[k]!]!.prompt, ds.rows[s.source[k]!]!.id, 'system', 'eval')!));
      expect(rowText(r)).toBe(r.prompt);
    });
    expect(s.ds.file).toContain(SHAPES_VERSION);
  });

  it('keys each shape, pool and row set apart (the embedding cache follows the hash)', () => {
    const shas = new Set(
      [
        shapeDataset(ds, [0, 1, 2], 'chat', 'eval'),
        shapeDataset(ds, [0, 1, 2], 'chat', 'train'),
        shapeDataset(ds, [0, 1, 2], 'system', 'eval'),
        shapeDataset(ds, [0, 2], 'chat', 'eval'),
        shapeDataset(ds, [0, 1, 2], 'stem', 'eval'),
      ].map((s) => s.ds.sha256),
    );
    expect(shas.size).toBe(5);
    expect(shapeDataset(ds, [0, 1, 2], 'chat', 'eval').ds.sha256).toBe(shapeDataset(ds, [0, 1, 2], 'chat', 'eval').ds.sha256);
    expect(shapeDataset(ds, [0, 1, 2], 'stem', 'eval').source).toEqual([0, 2]);
  });
});
