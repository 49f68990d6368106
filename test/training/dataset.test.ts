import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  DatasetError,
  bucket,
  overlapChecker,
  p3Split,
  parseJsonl,
  readDataset,
  requireModels,
  splitById,
  unitScore,
  type OutcomeRow,
} from '../../src/training/dataset.js';

const row = (id: string, extra: Partial<OutcomeRow> = {}): OutcomeRow => ({
  id,
  benchmark: 'mmlu',
  category: 'astronomy',
  prompt: `question ${id}`,
  scores: { a: 1, b: 0 },
  contaminated: false,
  ...extra,
});
const jsonl = (rows: object[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

describe('bucket', () => {
  it("matches Python's int(sha256(s).hexdigest()[:8], 16) % 2", () => {
    // Values computed with Python 3 hashlib.
    expect(bucket('mmlu/abstract_algebra/0')).toBe(0);
    expect(bucket('llmrouter/train/0')).toBe(0);
    expect(bucket('professional_law')).toBe(1);
    expect(bucket('abc')).toBe(1);
    expect(bucket('mmlu/x/3')).toBe(1);
    expect(bucket('mmlu/x/4')).toBe(0);
    expect(bucket('é')).toBe(0);
  });

  it('splits by id', () => {
    const s = splitById([row('mmlu/x/3'), row('mmlu/x/4')]);
    expect(s.train.map((r) => r.id)).toEqual(['mmlu/x/4']);
    expect(s.test.map((r) => r.id)).toEqual(['mmlu/x/3']);
  });
});

describe('reading JSONL', () => {
  it('drops contaminated rows and hashes the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-ds-'));
    const file = join(dir, 'a.jsonl');
    writeFileSync(file, jsonl([row('r1'), row('r2', { contaminated: true }), row('r3')]));
    const ds = await readDataset(file);
    expect(ds.rows.map((r) => r.id)).toEqual(['r1', 'r3']);
    expect(ds.contaminated).toBe(1);
    expect(ds.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('names the file, line and field of a bad row', () => {
    const text = jsonl([row('r1'), { ...row('r2'), scores: { a: 'yes', b: 0 } }]);
    expect(() => parseJsonl(text, 'f.jsonl')).toThrow(DatasetError);
    expect(() => parseJsonl(text, 'f.jsonl')).toThrow(/^f\.jsonl:2: field 'scores\.a'/);
    expect(() => parseJsonl(`${JSON.stringify(row('r1'))}\n{oops\n`, 'g.jsonl')).toThrow(/^g\.jsonl:2: not valid JSON/);
    expect(() => parseJsonl(jsonl([{ ...row('r1'), id: undefined }]), 'h.jsonl')).toThrow(/h\.jsonl:1: field 'id'/);
  });

  it('refuses duplicate ids, rows with other models, and files with no clean rows', () => {
    expect(() => parseJsonl(jsonl([row('r1'), row('r1')]), 'f')).toThrow(/f:2: duplicate id 'r1'/);
    expect(() => parseJsonl(jsonl([row('r1'), row('r2', { scores: { a: 1, c: 0 } })]), 'f')).toThrow(
      /f:2: field 'scores': expected models \[a,b\]/,
    );
    expect(() => parseJsonl(jsonl([row('r1', { contaminated: true })]), 'f')).toThrow(/no clean rows/);
    expect(() => requireModels({ file: 'f', rows: [row('r1')] }, ['a', 'z'])).toThrow(/missing \[z\]/);
  });

  it('reports a missing file with what to pass instead', async () => {
    await expect(readDataset('/nonexistent/x.jsonl')).rejects.toThrow(/x\.jsonl: cannot read \(ENOENT\); pass --data DIR/);
  });

  it('maps 1-10 judgements to 0..1', () => {
    expect(unitScore(row('m', { score_scale: '1-10', scores: { a: 10, b: 1 } }), 'a')).toBe(1);
    expect(unitScore(row('m', { score_scale: '1-10', scores: { a: 10, b: 5.5 } }), 'b')).toBe(0.5);
  });
});

describe('P3 split and overlap', () => {
  it('splits in-domain rows by id and other subjects by category', () => {
    const law = [row('mmlu/professional_law/1', { category: 'professional_law' }), row('mmlu/x/3', { category: 'jurisprudence' })];
    // bucket('abc') == 1: a test-only subject; bucket('é') == 0: a training subject.
    const other = [row('o1', { category: 'abc' }), row('o2', { category: 'é' })];
    const llm = [row('llmrouter/train/0', { benchmark: 'llmrouter' })];
    const s = p3Split([...law, ...other], llm, [row('gsm8k/1', { benchmark: 'gsm8k' })]);
    const ids = (xs: typeof s.train) => xs.map((x) => `${x.row.id}:${x.label}`).sort();
    // bucket('mmlu/professional_law/1') == 0, bucket('mmlu/x/3') == 1: in-domain rows go by id.
    expect(ids(s.train)).toEqual(['llmrouter/train/0:ood', 'mmlu/professional_law/1:law', 'o2:ood']);
    expect(ids(s.test)).toEqual(['gsm8k/1:ood', 'mmlu/x/3:law', 'o1:ood']);
  });

  it('finds training prompts that quote a test question', () => {
    const q = 'Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.';
    const check = overlapChecker([row('gsm8k/1', { prompt: q })]);
    expect(check(row('t1', { prompt: `Q: ${q.toUpperCase()}\nA: let's think` }))).toBe(true);
    expect(check(row('t2', { prompt: 'Natalia sold clips to 48 of her neighbours in June, and then she sold half as many hats.' }))).toBe(
      false,
    );
  });
});
