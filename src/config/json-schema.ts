// configs/signalman.schema.json is generated from the zod schema (never edited by hand); a test fails on drift.
import { z } from 'zod';
import { ConfigSchema } from './schema.js';

export function configJsonSchema(): Record<string, unknown> {
  // io: 'input' — editors validate what people write, where defaulted fields are optional.
  const schema = z.toJSONSchema(ConfigSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return {
    ...schema,
    $id: 'https://github.com/signalman/signalman/configs/signalman.schema.json',
    title: 'Signalman gateway configuration',
  };
}

export const configJsonSchemaText = (): string => `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
