import { writeFile } from 'node:fs/promises';
import { configJsonSchemaText } from '../config/json-schema.js';

/** `signalman schema [--write FILE]`: the config's JSON Schema, generated from the zod schema. */
export async function schemaCommand(argv: string[]): Promise<number> {
  const i = argv.indexOf('--write');
  const text = configJsonSchemaText();
  if (i === -1) {
    process.stdout.write(text);
    return 0;
  }
  const file = argv[i + 1];
  if (file === undefined) {
    console.error('usage: signalman schema [--write FILE]');
    return 2;
  }
  await writeFile(file, text);
  console.log(`wrote ${file}`);
  return 0;
}
