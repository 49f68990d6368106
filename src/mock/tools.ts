// Deterministic tool-call arguments from a function's JSON-schema `parameters`: every required
// property is filled with a value of its declared type, so clients that validate arguments accept them.
import { word } from './text.js';

type Schema = Record<string, unknown>;

function isSchema(v: unknown): v is Schema {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function typeOf(s: Schema): string {
  const t = s.type;
  if (typeof t === 'string') return t;
  // ["string", "null"]: take the first non-null type.
  if (Array.isArray(t)) return (t.find((x) => x !== 'null') as string | undefined) ?? 'null';
  if (isSchema(s.properties)) return 'object';
  if (isSchema(s.items)) return 'array';
  return 'string';
}

function valueFor(s: unknown, rnd: () => number, depth: number): unknown {
  if (!isSchema(s)) return word(rnd);
  if ('const' in s) return s.const;
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[Math.floor(rnd() * s.enum.length)];
  const variants = s.anyOf ?? s.oneOf;
  if (Array.isArray(variants) && variants.length > 0) return valueFor(variants[0], rnd, depth);
  switch (typeOf(s)) {
    case 'integer': {
      const min = typeof s.minimum === 'number' ? Math.ceil(s.minimum) : 0;
      const max = typeof s.maximum === 'number' ? Math.floor(s.maximum) : min + 100;
      return min + Math.floor(rnd() * (max - min + 1));
    }
    case 'number': {
      const min = typeof s.minimum === 'number' ? s.minimum : 0;
      const max = typeof s.maximum === 'number' ? s.maximum : min + 100;
      return Math.round((min + rnd() * (max - min)) * 100) / 100;
    }
    case 'boolean':
      return rnd() < 0.5;
    case 'null':
      return null;
    case 'array': {
      const n = typeof s.minItems === 'number' ? Math.max(1, s.minItems) : 1;
      return depth > 4 ? [] : Array.from({ length: Math.min(n, 8) }, () => valueFor(s.items, rnd, depth + 1));
    }
    case 'object':
      return depth > 4 ? {} : objectFor(s, rnd, depth + 1);
    default:
      return `${word(rnd)} ${word(rnd)}`;
  }
}

function objectFor(s: Schema, rnd: () => number, depth: number): Record<string, unknown> {
  const props = isSchema(s.properties) ? s.properties : {};
  const required = Array.isArray(s.required) ? (s.required as unknown[]).filter((k) => typeof k === 'string') : [];
  const out: Record<string, unknown> = {};
  for (const key of required) out[key] = valueFor(props[key], rnd, depth);
  return out;
}

/** JSON string of arguments for `parameters` (absent parameters → "{}"). */
export function toolArguments(parameters: unknown, rnd: () => number): string {
  return JSON.stringify(isSchema(parameters) ? objectFor(parameters, rnd, 0) : {});
}

/** Split arguments into stream fragments of about one token (4 characters). */
export function argumentFragments(args: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i += 4) out.push(args.slice(i, i + 4));
  return out;
}
