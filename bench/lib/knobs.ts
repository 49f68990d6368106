// Bench knobs from the environment, checked up front so a typo fails fast and names the variable.
export function intEnv(name: string, def: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return def;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) throw new Error(`${name} must be an integer >= ${min}, got '${raw}'`);
  return v;
}

export function optionalIntEnv(name: string, min: number): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  return intEnv(name, 0, min);
}

export function listEnv<T extends string>(name: string, def: readonly T[], allowed: readonly T[]): T[] {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return [...def];
  const items = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const it of items) {
    if (!(allowed as readonly string[]).includes(it))
      throw new Error(`${name}: unknown '${it}'; expected a comma list of ${allowed.join(', ')}`);
  }
  if (items.length === 0) throw new Error(`${name} is empty; expected a comma list of ${allowed.join(', ')}`);
  return [...new Set(items)] as T[];
}

export function intListEnv(name: string, def: readonly number[], min: number): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return [...def];
  const out = raw.split(',').map((s) => Number(s.trim()));
  if (out.length === 0 || out.some((v) => !Number.isInteger(v) || v < min)) {
    throw new Error(`${name} must be a comma list of integers >= ${min}, got '${raw}'`);
  }
  return [...new Set(out)];
}
