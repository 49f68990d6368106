// `npm run bench`: every bench suite in one run. BENCH=overhead|routing picks one.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { runOverheadBench } from './overhead.js';

const only = process.env.BENCH?.trim() || 'all';
if (!['all', 'overhead', 'routing'].includes(only)) {
  console.error(`BENCH must be all, overhead or routing, got '${only}'`);
  process.exit(2);
}

let failed = 0;
try {
  if (only === 'all' || only === 'overhead') failed += (await runOverheadBench()).failed;
  // The routing suite exists once the routers do; it is loaded lazily so the overhead bench never depends on them.
  const routing = join(import.meta.dirname, 'routing.js');
  if ((only === 'all' || only === 'routing') && existsSync(routing)) {
    const mod = (await import(pathToFileURL(routing).href)) as { runRoutingBench: () => Promise<{ failed: number }> };
    failed += (await mod.runRoutingBench()).failed;
  } else if (only === 'routing') {
    console.error('bench/routing.ts is not built yet');
    process.exit(2);
  }
} catch (err) {
  console.error(`bench failed: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
}
// Missed targets are reported, not fatal: the numbers are the product, CI decides what to gate on.
if (failed > 0) console.log(`\n${failed} target check(s) failed`);
process.exit(0);
