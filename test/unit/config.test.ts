// Config loading: what an operator sees for each kind of mistake (file:line:col: reason), ${ENV}, and the
// JSON Schema kept in step with the zod schema.
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configJsonSchemaText } from '../../src/config/json-schema.js';
import { parseConfigText } from '../../src/config/load.js';
import { ConfigErrors } from '../../src/errors.js';

const base = `version: 1
backends:
  - name: a
    base_url: http://127.0.0.1:1/v1
    model: m-a
  - name: b
    base_url: http://127.0.0.1:1/v1
    model: m-b
    price: { input_per_mtok: 1, output_per_mtok: 2 }
policies:
  - name: auto
    candidates: [a, b]
    fallbacks: [b]
`;

function problems(text: string, env: Record<string, string> = {}): string[] {
  try {
    parseConfigText(text, '/etc/signalman.yaml', env);
  } catch (err) {
    if (err instanceof ConfigErrors) return err.problems.map((p) => p.message);
    throw err;
  }
  return [];
}

describe('config loading', () => {
  it('accepts a minimal config and fills the defaults', () => {
    const { config } = parseConfigText(base, 'x.yaml', {});
    expect(config.server).toMatchObject({ host: '127.0.0.1', port: 8080 });
    expect(config.backends[0]).toMatchObject({ timeout_ms: 60000, max_retries: 2, price: { input_per_mtok: 0 } });
    expect(config.policies[0]?.router).toEqual({ type: 'fixed' });
    expect(config.policies[0]?.objective).toEqual({ kind: 'utility', lambda: 0 });
  });

  it('names file, line and column of a wrong type', () => {
    const [p] = problems(base.replace('model: m-b', 'model: m-b\n    timeout_ms: soon'));
    expect(p).toMatch(/^\/etc\/signalman\.yaml:9:17: backends\[1\]\.timeout_ms: .*number/);
  });

  it('names an unknown field at its line', () => {
    const [p] = problems(base.replace('    model: m-a', '    model: m-a\n    modle: typo'));
    expect(p).toMatch(/^\/etc\/signalman\.yaml:3:\d+: backends\[0\]: unknown field\(s\) 'modle'/);
  });

  it('reports a missing required field at its parent', () => {
    const [p] = problems(base.replace('    model: m-a\n', ''));
    expect(p).toMatch(/:3:\d+: backends\[0\]\.model: /);
  });

  it('rejects an unknown router type naming the field', () => {
    const [p] = problems(base.replace('    fallbacks: [b]', '    router: { type: magic }\n    fallbacks: [b]'));
    expect(p).toMatch(/:13:\d+: policies\[0\]\.router(\.type)?: /);
  });

  it('checks cross-references after the shape', () => {
    const ps = problems(
      base
        .replace('candidates: [a, b]', 'candidates: [a, zz]')
        .replace('fallbacks: [b]', 'fallbacks: [b, yy]')
        .replace('name: b\n', 'name: a\n'),
    );
    expect(ps.join('\n')).toMatch(/:6:\d+: backend 'a' is declared twice/);
    expect(ps.join('\n')).toMatch(/:12:\d+: policy 'auto' names candidate 'zz', which is not a declared backend/);
    expect(ps.join('\n')).toMatch(/:13:\d+: policy 'auto' names fallback 'yy'/);
    expect(problems(base.replace('name: auto', 'name: a')).join()).toMatch(/policy 'a' has the name of a backend/);
  });

  it('reports YAML syntax errors with their position', () => {
    const [p] = problems('backends:\n  - name: a\n    base_url: [unclosed\n');
    expect(p).toMatch(/^\/etc\/signalman\.yaml:\d+:\d+: YAML syntax/);
  });

  it('interpolates ${ENV} and ${ENV:-default}, and names an unset variable', () => {
    const text = base.replace('http://127.0.0.1:1/v1\n    model: m-a', '${UPSTREAM:-http://127.0.0.1:2}/v1\n    model: ${MODEL_A}');
    const { config } = parseConfigText(text, 'x.yaml', { MODEL_A: 'gpt-x' });
    expect(config.backends[0]).toMatchObject({ base_url: 'http://127.0.0.1:2/v1', model: 'gpt-x' });
    const { config: c2 } = parseConfigText(text, 'x.yaml', { MODEL_A: 'gpt-x', UPSTREAM: 'https://api.example.com' });
    expect(c2.backends[0]?.base_url).toBe('https://api.example.com/v1');
    const [p] = problems(text);
    expect(p).toMatch(/^\/etc\/signalman\.yaml:5:\d+: environment variable MODEL_A is not set/);
    // Numbers can come from the environment too.
    expect(parseConfigText(`server:\n  port: \${P}\n${base}`, 'x.yaml', { P: '9090' }).config.server.port).toBe(9090);
    expect(
      parseConfigText(
        base.replace('model: m-a', () => 'model: $${literal}'),
        'x.yaml',
        {},
      ).config.backends[0]?.model,
    ).toBe('${literal}');
  });

  it('never lets a config forward credential headers from clients', () => {
    const [p] = problems(`server: { forward_headers: [x-team, Authorization] }\n${base}`);
    expect(p).toMatch(/server\.forward_headers\[1\]: this header carries credentials/);
  });

  it('refuses an API key written where the env var name belongs', () => {
    const [p] = problems(base.replace('model: m-a', 'model: m-a\n    api_key_env: sk-abc123'));
    expect(p).toMatch(/api_key_env: the NAME of an environment variable/);
  });
});

describe('published JSON Schema', () => {
  it('is exactly what the zod schema generates (run `signalman schema --write configs/signalman.schema.json`)', async () => {
    const committed = await readFile(join(import.meta.dirname, '../../configs/signalman.schema.json'), 'utf8');
    expect(committed).toBe(configJsonSchemaText());
  });
});

describe('shipped configs', () => {
  it("the README's configuration walk-through is a valid config", async () => {
    const readme = await readFile(join(import.meta.dirname, '../../README.md'), 'utf8');
    const start = readme.indexOf('```yaml\nversion: 1\n');
    expect(start).toBeGreaterThan(-1);
    const block = readme.slice(start + '```yaml\n'.length, readme.indexOf('```', start + 8));
    expect(problems(block, { OPENAI_API_KEY: 'x' })).toEqual([]);
  });

  it('every file in configs/ and configs/examples/ validates', async () => {
    const root = join(import.meta.dirname, '../../configs');
    const files = [
      ...(await readdir(root)).filter((f) => f.endsWith('.yaml')).map((f) => join(root, f)),
      ...(await readdir(join(root, 'examples'))).filter((f) => f.endsWith('.yaml')).map((f) => join(root, 'examples', f)),
    ];
    expect(files.length).toBeGreaterThanOrEqual(4);
    const env = { OPENAI_API_KEY: 'x', OPENROUTER_API_KEY: 'x', SIGNALMAN_MOCK_URL: 'http://127.0.0.1:1' };
    for (const f of files) {
      const text = await readFile(f, 'utf8');
      expect(problems(text, env), f).toEqual([]);
    }
  });
});
