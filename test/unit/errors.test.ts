import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { E, errorCodes } from '../../src/errors.js';

describe('error catalogue', () => {
  it('documents every error code in the README error table', async () => {
    const readme = await readFile(join(import.meta.dirname, '../../README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('## Errors'));
    const missing = errorCodes.filter((c) => !table.includes(`\`${c}\``));
    expect(missing).toEqual([]);
  });

  it('serialises in OpenAI shape with exactly the four fields', () => {
    const e = E.modelNotFound("model 'x' is unknown", 'model');
    expect(e.toJSON()).toEqual({
      error: { message: "model 'x' is unknown", type: 'not_found_error', param: 'model', code: 'model_not_found' },
    });
    expect(e.status).toBe(404);
  });

  it('has unique codes', () => {
    expect(new Set(errorCodes).size).toBe(errorCodes.length);
  });
});
