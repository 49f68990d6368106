// CPU per routing decision of the shipped demo policies, in process: configs/default.yaml compiled as the
// gateway compiles it, routeRequest() on distinct generated prompts one at a time, process CPU time
// (all threads) per decision. Less noisy than req/s on a shared machine, and the thing to profile:
//   npx tsc -p tsconfig.json && node dist/bench/shipped-decisions.js [--n 3000] [--rounds 3] [--policy auto] [--thread]
//   node --cpu-prof --cpu-prof-dir=/tmp/prof dist/bench/shipped-decisions.js
// --thread: the policies compiled as a scoring thread compiles them (no vector caches, vectors written
// over the last) and scoreText() alone, the part of a decision a scoring thread runs.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseConfigText } from '../src/config/load.js';
import type { CachedEmbedder } from '../src/embedders/cache.js';
import { compilePolicy, type CompiledPolicy } from '../src/routers/compile.js';
import { routeRequest, scoreText } from '../src/routers/engine.js';
import { RoutingState } from '../src/routers/state.js';
import { compileRuntime, createSharedPools } from '../src/runtime/compile.js';
import { describeMachine, machine } from './lib/machine.js';
import { syntheticPrompt } from './lib/prompts.js';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '3000' },
    rounds: { type: 'string', default: '3' },
    policy: { type: 'string' },
    thread: { type: 'boolean', default: false },
  },
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
const loaded = parseConfigText(yaml, file);
const runtime = await compileRuntime(loaded, shared, 1, { scoringThreads: false });
const state = new RoutingState();
// As scoring.worker.ts compiles them: its own embedders, shared between equal settings, no caches.
const threadEmbedders = new Map<string, Promise<CachedEmbedder>>();
const threadPolicies = new Map<string, CompiledPolicy>();
if (values.thread) {
  const resolvePath = (p: string) => (isAbsolute(p) ? p : resolve(dirname(file), p));
  const hold = (key: string, create: () => Promise<CachedEmbedder>) => {
    let e = threadEmbedders.get(key);
    if (e === undefined) threadEmbedders.set(key, (e = create()));
    return e;
  };
  for (const p of loaded.config.policies) threadPolicies.set(p.name, await compilePolicy(p, resolvePath, hold, false));
}
let next = 1_000_000; // a stream of prompts of its own: every decision misses the caches
const perDecision: Record<string, number[]> = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const name of POLICIES) {
    const policy = runtime.policies.get(name)!;
    const bodies = Array.from({ length: N }, () => ({ model: name, messages: [{ role: 'user', content: syntheticPrompt(7, next++) }] }));
    const onThread = threadPolicies.get(name);
    const c0 = process.cpuUsage();
    if (onThread === undefined) {
      for (const body of bodies) await routeRequest({ policy, backends: runtime.backends, body, meta: META, headers: {}, state });
    } else {
      for (const body of bodies) await scoreText(onThread, body.messages[0]!.content, META);
    }
    const c = process.cpuUsage(c0);
    (perDecision[name] ??= []).push((c.user + c.system) / N);
  }
}
console.log(`machine: ${describeMachine(machine())}`);
console.log(
  `CPU µs per ${values.thread ? "scoring thread's part of a decision (scoreText)" : 'decision'}, ${N} distinct prompts a round, ${ROUNDS} rounds (the first warms up):`,
);
for (const [name, us] of Object.entries(perDecision)) {
  console.log(`${name.padEnd(10)} ${us.map((x) => x.toFixed(1)).join('  ')}   min ${Math.min(...us).toFixed(1)}`);
}
await Promise.all(
  [...threadPolicies.values()].flatMap((p) => [p.router.close?.(), (p.guard as { close?: () => Promise<void> } | null)?.close?.()]),
);
await Promise.all([...threadEmbedders.values()].map(async (e) => (await e).close()));
await runtime.dispose();
await shared.embedders.closeAll();
await shared.pools.closeAll();
