import { resolve } from 'node:path';
import { compileRuntime, createSharedPools } from '../runtime/compile.js';
import { loadConfigFile } from '../config/load.js';
import { ConfigErrors } from '../errors.js';

/**
 * Validates shape, cross-references and everything compile checks (router artifacts, embedder models),
 * exactly as the gateway would at load. Exit 0 = valid, 1 = problems (one `file:line:col: reason` each).
 */
export async function validateConfigCommand(argv: string[]): Promise<number> {
  const files = argv.filter((a) => !a.startsWith('-'));
  if (files.length === 0 || argv.includes('--help')) {
    console.log('usage: signalman validate-config FILE [FILE…]');
    return files.length === 0 ? 2 : 0;
  }
  let bad = 0;
  for (const f of files) {
    const file = resolve(f);
    const shared = createSharedPools();
    try {
      const loaded = await loadConfigFile(file);
      const rt = await compileRuntime(loaded, shared, 1);
      await rt.dispose();
      console.log(`${f}: ok (${loaded.config.backends.length} backends, ${loaded.config.policies.length} policies)`);
    } catch (err) {
      bad++;
      if (err instanceof ConfigErrors) for (const p of err.problems) console.error(p.message);
      else console.error(`${f}: ${(err as Error).message}`);
    } finally {
      await shared.pools.closeAll();
      await shared.embedders.closeAll();
    }
  }
  return bad === 0 ? 0 : 1;
}
