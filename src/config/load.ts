// YAML → validated Config, with every problem reported as file:line:column and a reason an operator can act on.
import { readFile } from 'node:fs/promises';
import { isScalar, LineCounter, parseDocument, visit, type Document } from 'yaml';
import type { z } from 'zod';
import { ConfigError, ConfigErrors } from '../errors.js';
import { ConfigSchema, type Config } from './schema.js';

export interface LoadedConfig {
  config: Config;
  file: string;
  /** Finds the line of a path in the source, for errors found after validation (e.g. at compile). */
  locate(path: readonly (string | number)[]): { line: number | null; column: number | null };
}

type Env = Readonly<Record<string, string | undefined>>;
const INTERPOLATION = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export async function loadConfigFile(file: string, env: Env = process.env): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigErrors([new ConfigError(file, null, null, `cannot read the config file: ${(err as Error).message}`)]);
  }
  return parseConfigText(text, file, env);
}

export function parseConfigText(text: string, file: string, env: Env = process.env): LoadedConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number | undefined) => {
    if (offset === undefined) return { line: null, column: null };
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
  const problems: ConfigError[] = [];
  // Later syntax errors mostly cascade from the first; three are plenty to find it.
  for (const e of doc.errors.slice(0, 3)) {
    const { line, column } = at(e.pos[0]);
    problems.push(new ConfigError(file, line, column, `YAML syntax: ${e.message.split('\n')[0]}`));
  }
  if (problems.length > 0) throw new ConfigErrors(problems);

  interpolate(doc, env, (offset, reason) => {
    const { line, column } = at(offset);
    problems.push(new ConfigError(file, line, column, reason));
  });
  if (problems.length > 0) throw new ConfigErrors(problems);

  const locate = (path: readonly (string | number)[]) => {
    // Walk up until a node exists: a missing key is reported at its parent.
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
      if (node && typeof node === 'object' && node.range) return at(node.range[0]);
    }
    return { line: null, column: null };
  };

  const parsed = ConfigSchema.safeParse(doc.toJS() ?? {});
  if (!parsed.success) {
    throw new ConfigErrors(
      parsed.error.issues.map((issue) => {
        const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
        const { line, column } = locate(path);
        return new ConfigError(file, line, column, describeIssue(path, issue));
      }),
    );
  }
  const config = parsed.data;
  const refProblems = checkReferences(config).map(({ path, reason }) => {
    const { line, column } = locate(path);
    return new ConfigError(file, line, column, reason);
  });
  if (refProblems.length > 0) throw new ConfigErrors(refProblems);
  return { config, file, locate };
}

function describeIssue(path: readonly (string | number)[], issue: z.core.$ZodIssue): string {
  const where =
    path.length === 0
      ? 'config'
      : path
          .map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`))
          .join('')
          .replace(/^\./, '');
  if (issue.code === 'unrecognized_keys') return `${where}: unknown field(s) ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
  if (issue.code === 'invalid_union' && 'discriminator' in issue && issue.discriminator) {
    return `${where}: ${issue.message}`;
  }
  return `${where}: ${issue.message}`;
}

/** `${NAME}` and `${NAME:-default}` in string scalars; `$${` is a literal `${`. Done on the document so lines stay right. */
function interpolate(doc: Document, env: Env, report: (offset: number | undefined, reason: string) => void): void {
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return;
      node.value = node.value.replace(INTERPOLATION, (match, name: string | undefined, fallback: string | undefined) => {
        if (match === '$${') return '${';
        const value = env[name as string];
        if (value !== undefined && value !== '') return value;
        if (fallback !== undefined) return fallback;
        report(node.range?.[0], `environment variable ${name} is not set (write \${${name}:-default} to give a default)`);
        return match;
      });
      if (isScalar(node) && /^-?\d+(\.\d+)?$/.test(node.value as string) && node.type === 'PLAIN') {
        node.value = Number(node.value);
      }
    },
  });
}

interface RefProblem {
  path: (string | number)[];
  reason: string;
}

/** Cross-references, checked after the shape: names are unique and every reference names something declared. */
export function checkReferences(config: Config): RefProblem[] {
  const out: RefProblem[] = [];
  const backends = new Set<string>();
  config.backends.forEach((b, i) => {
    if (backends.has(b.name)) out.push({ path: ['backends', i, 'name'], reason: `backend '${b.name}' is declared twice` });
    backends.add(b.name);
  });
  const policies = new Set<string>();
  config.policies.forEach((p, i) => {
    if (policies.has(p.name)) out.push({ path: ['policies', i, 'name'], reason: `policy '${p.name}' is declared twice` });
    if (backends.has(p.name)) {
      out.push({ path: ['policies', i, 'name'], reason: `policy '${p.name}' has the name of a backend; clients could not reach both` });
    }
    policies.add(p.name);
    const seen = new Set<string>();
    p.candidates.forEach((c, j) => {
      const name = typeof c === 'string' ? c : c.backend;
      if (!backends.has(name)) {
        out.push({
          path: ['policies', i, 'candidates', j],
          reason: `policy '${p.name}' names candidate '${name}', which is not a declared backend (declared: ${[...backends].join(', ')})`,
        });
      }
      if (seen.has(name)) out.push({ path: ['policies', i, 'candidates', j], reason: `candidate '${name}' is listed twice` });
      seen.add(name);
    });
    if (p.guard?.fallback !== undefined && !backends.has(p.guard.fallback)) {
      out.push({
        path: ['policies', i, 'guard', 'fallback'],
        reason: `policy '${p.name}' guard falls back to '${p.guard.fallback}', which is not a declared backend`,
      });
    }
    if (p.steer?.target === 'share' && !seen.has(p.steer.backend)) {
      out.push({
        path: ['policies', i, 'steer', 'backend'],
        reason: `policy '${p.name}' steers the share of '${p.steer.backend}', which is not one of its candidates`,
      });
    }
    if (p.steer !== undefined && p.objective.kind !== 'utility') {
      out.push({
        path: ['policies', i, 'steer'],
        reason: `policy '${p.name}': steer adjusts the utility objective's lambda; set objective.kind: utility`,
      });
    }
    p.fallbacks.forEach((f, j) => {
      if (!backends.has(f)) {
        out.push({
          path: ['policies', i, 'fallbacks', j],
          reason: `policy '${p.name}' names fallback '${f}', which is not a declared backend`,
        });
      }
    });
  });
  // Metrics label anything unknown `other` and anything absent `none`: a name equal to either would mix in.
  for (const [kind, list] of [
    ['backends', config.backends],
    ['policies', config.policies],
  ] as const) {
    list.forEach((x, i) => {
      if (x.name === 'other' || x.name === 'none') {
        out.push({
          path: [kind, i, 'name'],
          reason: `'${x.name}' is reserved (a metrics label for unknown or absent names); pick another name`,
        });
      }
    });
  }
  // Client keys: unique ids, and every policy or backend they grant is declared (or '*').
  const keyIds = new Set<string>();
  config.keys.forEach((k, i) => {
    if (keyIds.has(k.id)) out.push({ path: ['keys', i, 'id'], reason: `key '${k.id}' is declared twice` });
    keyIds.add(k.id);
    if (k.id === 'other' || k.id === 'none') {
      out.push({ path: ['keys', i, 'id'], reason: `'${k.id}' is reserved (a metrics label for unknown or absent keys); pick another id` });
    }
    for (const [field, declared] of [
      ['policies', policies],
      ['backends', backends],
    ] as const) {
      k[field].forEach((name, j) => {
        if (name !== '*' && !declared.has(name)) {
          out.push({
            path: ['keys', i, field, j],
            reason: `key '${k.id}' grants ${field === 'policies' ? 'policy' : 'backend'} '${name}', which is not declared (declared: ${[...declared].join(', ')})`,
          });
        }
      });
    }
  });
  // A shadow is decided for every request of its live policy: it must be another policy of this file.
  config.policies.forEach((p, i) => {
    if (p.shadow === undefined) return;
    if (p.shadow === p.name) out.push({ path: ['policies', i, 'shadow'], reason: `policy '${p.name}' cannot shadow itself` });
    else if (!policies.has(p.shadow)) {
      out.push({
        path: ['policies', i, 'shadow'],
        reason: `policy '${p.name}' names shadow '${p.shadow}', which is not a declared policy (declared: ${[...policies].join(', ')})`,
      });
    }
  });
  return out;
}
