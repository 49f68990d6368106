// CPU per routing decision of the shipped demo policies, in process: configs/default.yaml compiled as the
// gateway compiles it, routeRequest() on distinct generated prompts one at a time, process CPU time
// (all threads) per decision. Less noisy than req/s on a shared machine, and the thing to profile:
//   npx tsc -p tsconfig.json && node dist/bench/shipped-decisions.js [--n 3000] [--rounds 3] [--policy auto]
//   node --cpu-prof --cpu-prof-dir=/tmp/prof dist/bench/shipped-decisions.js
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseConfigText } from '../src/config/load.js';
import { routeRequest } from '../src/routers/engine.js';
import { RoutingState } from '../src/routers/state.js';
import { compileRuntime, createSharedPools } from '../src/runtime/compile.js';
import { describeMachine, machine } from './lib/machine.js';
import { syntheticPrompt } from './lib/prompts.js';

const { values } = parseArgs({
  options: { n: { type: 'string', default: '3000' }, rounds: { type: 'string', default: '3' }, policy: { type: 'string' } },
});
const N = Number(values.n);
const ROUNDS = Number(values.rounds);
const POLICIES = values.policy === undefined ? ['auto', 'auto-open', 'expert'] : [values.policy];
const META = { endpoint: '/v1/chat/completions', messages: 1, has_tools: false, stream: false, user: '' };

const file = join(import.meta.dirname, '../../configs/default.yaml');
// The backends are never called: decisions only.
const yaml = readFileSync(file, 'utf8').replace(/\$\{SIGNALMAN_MOCK_URL:-[^}]*\}/g, 'http://127.0.0.1:9');
const shared = createSharedPools();
// Scored here, on this thread: the decision's own cost (no scoring threads).
const runtime = await compileRuntime(parseConfigText(yaml, file), shared, 1, { scoringThreads: false });
const state = new RoutingState();
let next = 1_000_000; // a stream of prompts of its own: every decision misses the caches
const perDecision: Record<string, number[]> = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const name of POLICIES) {
    const policy = runtime.policies.get(name)!;
    const bodies = Array.from({ length: N }, () => ({ model: name, messages: [{ role: 'user', content: syntheticPrompt(7, next++) }] }));
    const c0 = process.cpuUsage();
    for (const body of bodies) await routeRequest({ policy, backends: runtime.backends, body, meta: META, headers: {}, state });
    const c = process.cpuUsage(c0);
    (perDecision[name] ??= []).push((c.user + c.system) / N);
  }
}
console.log(`machine: ${describeMachine(machine())}`);
console.log(`CPU µs per decision, ${N} distinct prompts a round, ${ROUNDS} rounds (the first warms up):`);
for (const [name, us] of Object.entries(perDecision)) {
  console.log(`${name.padEnd(10)} ${us.map((x) => x.toFixed(1)).join('  ')}   min ${Math.min(...us).toFixed(1)}`);
}
await runtime.dispose();
await shared.embedders.closeAll();
await shared.pools.closeAll();
