import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DEFAULT_CACHE_DIR } from '../training/embed-cache.js';

/** Flags every dataset command (train, eval, calibrate) takes. */
export const DATA_OPTIONS = {
  data: { type: 'string', default: '../shared/datasets' },
  'cache-dir': { type: 'string', default: DEFAULT_CACHE_DIR },
  'no-cache': { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/**
 * A command's flags, strictly: a bad flag prints the reason and the usage (exit code 2), --help prints the
 * usage (exit code 0); either way the number is returned for the command to return.
 */
export function parseCommand<const O extends NonNullable<ParseArgsConfig['options']>>(
  command: string,
  usage: string,
  argv: string[],
  options: O,
) {
  try {
    const { values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false });
    if ((values as { help?: boolean }).help === true) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    return values;
  } catch (err) {
    process.stderr.write(`signalman ${command}: ${(err as Error).message}\n${usage}\n`);
    return 2;
  }
}
