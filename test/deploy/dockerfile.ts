// Reads the project's Dockerfile into stages and instructions, so a test can replay a stage on this machine
// (no Docker engine here) with the file's own commands rather than a copy of them that could drift.

export interface Instruction {
  op: string; // upper-case: FROM, RUN, COPY, ENV, ...
  args: string; // the rest of the line, continuations joined
  line: number; // 1-based line of the instruction's first line
}

export interface Stage {
  name: string;
  base: string;
  instructions: Instruction[];
}

/** Instructions in order; `\` continuations joined, comments and blank lines dropped. */
export function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const first = i;
    let line = lines[i] ?? '';
    if (/^\s*(#|$)/.test(line)) continue;
    while (/\\\s*$/.test(line) && i + 1 < lines.length) {
      i++;
      const next = lines[i] ?? '';
      if (/^\s*#/.test(next)) continue; // a comment inside a continuation is dropped, as Docker does
      line = line.replace(/\\\s*$/, ' ') + next.trim();
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`Dockerfile:${first + 1}: cannot read '${line}'`);
    out.push({ op: (m[1] as string).toUpperCase(), args: (m[2] as string).trim(), line: first + 1 });
  }
  return out;
}

/** Stages, with global ARG defaults substituted into FROM lines. */
export function stages(text: string): Stage[] {
  const args = new Map<string, string>();
  const out: Stage[] = [];
  for (const ins of instructions(text)) {
    if (ins.op === 'FROM') {
      const sub = ins.args.replace(
        /\$\{(\w+)\}|\$(\w+)/g,
        (_m, a: string | undefined, b: string | undefined) => args.get(a ?? b ?? '') ?? '',
      );
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(sub);
      if (!m) throw new Error(`Dockerfile:${ins.line}: cannot read FROM '${ins.args}'`);
      out.push({ base: m[1] as string, name: m[2] ?? String(out.length), instructions: [] });
    } else if (out.length === 0 && ins.op === 'ARG') {
      const [k, v = ''] = ins.args.split('=', 2);
      args.set((k as string).trim(), v.trim());
    } else {
      const stage = out.at(-1);
      if (!stage) throw new Error(`Dockerfile:${ins.line}: ${ins.op} before any FROM`);
      stage.instructions.push(ins);
    }
  }
  return out;
}

/** `ENV A=1 B=2` (the key=value form) as pairs. */
export function envPairs(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of args.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    const v = m[2] as string;
    out[m[1] as string] = v.startsWith('"') ? (JSON.parse(v) as string) : v;
  }
  return out;
}

/** `COPY [--from=x] [--chown=..] src... dest` */
export function copyArgs(args: string): { from: string | null; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  let from: string | null = null;
  while (words[0]?.startsWith('--')) {
    const flag = words.shift() as string;
    if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
  }
  const dest = words.pop();
  if (dest === undefined || words.length === 0) throw new Error(`cannot read COPY '${args}'`);
  return { from, sources: words, dest };
}

/** An exec-form (JSON array) command, or null for the shell form. */
export function execForm(args: string): string[] | null {
  if (!args.startsWith('[')) return null;
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw new Error(`not an exec form: ${args}`);
  return parsed as string[];
}

/** `HEALTHCHECK [--opt=v ...] CMD ...` -> its options and command. */
export function healthcheck(args: string): { options: Record<string, string>; command: string } {
  const options: Record<string, string> = {};
  let rest = args;
  for (let m = /^--(\S+?)=(\S+)\s+/.exec(rest); m; m = /^--(\S+?)=(\S+)\s+/.exec(rest)) {
    options[m[1] as string] = m[2] as string;
    rest = rest.slice(m[0].length);
  }
  if (!/^CMD\s+/i.test(rest)) throw new Error(`HEALTHCHECK without CMD: ${args}`);
  return { options, command: rest.replace(/^CMD\s+/i, '') };
}
