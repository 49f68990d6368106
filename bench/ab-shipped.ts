// A/B of the shipped demo policies through two gateways at once: two built trees of this repository (or
// one tree with two server settings) serve configs/default.yaml in front of one mock upstream, and short
// c=16 windows alternate between them, target by target, round by round. On a shared 2-core VM the
// pass-through rate alone moves by ±20% from one window to the next; a change measured in separate
// runs (`npm run bench`) is lost in that, while interleaved windows see the same weather. Prints, per
// side, the median over rounds of each policy's rate divided by the same side's pass-through rate of
// the same round; then, per target, the median of B's rate over A's in the same round (adjacent windows);
// and writes the rounds to JSON.
//   npx tsc -p tsconfig.json && node dist/bench/ab-shipped.js --a ../other-checkout --b . [--rounds 12]
//     [--ms 1000] [--a-server 'routing_threads_min_utilization: 0'] [--b-server ...]
// Both trees must be built (`npx tsc -p tsconfig.json` in each); each side's gateway runs its own tree.
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runLoad } from './lib/loadgen.js';
import { describeMachine, machine, stamp } from './lib/machine.js';
import { chatBody, STREAM, syntheticPrompt } from './lib/prompts.js';
import { SHIPPED_PASSTHROUGH, SHIPPED_POLICIES } from './lib/routing-shipped.js';
import { startMock, type ServerProc } from './lib/servers.js';

const { values } = parseArgs({
  options: {
    a: { type: 'string' },
    b: { type: 'string', default: '.' },
    rounds: { type: 'string', default: '12' },
    ms: { type: 'string', default: '1000' },
    'a-server': { type: 'string', default: '' },
    'b-server': { type: 'string', default: '' },
  },
});
if (values.a === undefined) throw new Error('--a DIR: the other built tree (or this one, with --a-server / --b-server)');
const ROUNDS = Number(values.rounds);
const MS = Number(values.ms);
const TARGETS = ['passthrough', ...SHIPPED_POLICIES] as const;
type Target = (typeof TARGETS)[number];

interface Side {
  name: 'A' | 'B';
  root: string;
  server: string;
  gw: ServerProc;
  rps: Record<Target, number[]>;
}

/** The side's own configs/default.yaml, laid out as it ships, with `server` lines added under server:. */
async function start(name: 'A' | 'B', root: string, server: string, mockOrigin: string): Promise<Side> {
  const dir = mkdtempSync(join(tmpdir(), `signalman-ab-${name}-`));
  mkdirSync(join(dir, 'configs'));
  for (const d of ['routers', 'embedders']) symlinkSync(join(root, d), join(dir, d), 'dir');
  const text = readFileSync(join(root, 'configs/default.yaml'), 'utf8');
  if (!/^server:\s*$/m.test(text)) throw new Error(`${root}/configs/default.yaml has no server: section to add to`);
  // The side's own servers module: it starts that tree's dist/src/cli/main.js.
  const lib = (await import(join(root, 'dist/bench/lib/servers.js'))) as typeof import('./lib/servers.js');
  const gw = await lib.startGateway({
    name: `signalman-${name}`,
    config: (port) =>
      text.replace(/^(\s*port:\s*)8080\b/m, `$1${port}`).replace(/^server:\s*$/m, server === '' ? 'server:' : `server:\n  ${server}`),
    dir: join(dir, 'configs'),
    env: { SIGNALMAN_MOCK_URL: mockOrigin, REDIS_URL: '' },
  });
  return { name, root, server, gw, rps: { passthrough: [], auto: [], 'auto-open': [], expert: [] } };
}

let next = 0;
async function window(side: Side, t: Target, ms: number): Promise<number> {
  const model = t === 'passthrough' ? SHIPPED_PASSTHROUGH : t;
  const r = await runLoad({
    origin: side.gw.origin,
    path: '/v1/chat/completions',
    headers: { 'content-type': 'application/json' },
    body: () => chatBody(model, syntheticPrompt(STREAM.gateway, 3e9 + next++)),
    concurrency: 16,
    warmupMs: 200,
    durationMs: ms,
  });
  if (r.errors > 0) throw new Error(`${side.name} ${t}: ${r.errors} errors, first: ${r.firstError}`);
  return r.totalMs.length / r.elapsedS;
}

const median = (v: number[]): number => {
  const s = [...v].sort((x, y) => x - y);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const mock = await startMock();
const sides: Side[] = [];
try {
  sides.push(await start('A', resolve(values.a), values['a-server'], mock.origin));
  sides.push(await start('B', resolve(values.b), values['b-server'], mock.origin));
  console.log(`machine: ${describeMachine(machine())}`);
  for (const s of sides) console.log(`${s.name}: ${s.root}${s.server === '' ? '' : ` (server: ${s.server})`}`);
  for (const s of sides) for (const t of TARGETS) await window(s, t, 1000); // warm both before measuring
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? sides : [...sides].reverse();
    for (const t of TARGETS) for (const s of order) s.rps[t]!.push(await window(s, t, MS));
  }
  console.log(
    `\nc=16, ${ROUNDS} rounds of ${MS} ms windows, A and B alternating; median over rounds (req/s, and x its side's pass-through of the round)`,
  );
  console.log(`side  pass-through  ${SHIPPED_POLICIES.map((p) => p.padEnd(16)).join('  ')}`);
  for (const s of sides) {
    const pt = s.rps.passthrough!;
    const cells = SHIPPED_POLICIES.map((p) =>
      `${median(s.rps[p]!).toFixed(0).padStart(5)} ${median(s.rps[p]!.map((v, i) => v / pt[i]!)).toFixed(3)}x`.padEnd(16),
    );
    console.log(`${s.name}     ${median(pt).toFixed(0).padStart(11)}  ${cells.join('  ')}`);
  }
  // Each policy's B window sits next to its A window, so B/A of the same round cancels most of the weather
  // that a side's own pass-through (another window) does not; pass-through's B/A shows the sides' spread.
  const [A, B] = sides as [Side, Side];
  const paired = Object.fromEntries(TARGETS.map((t) => [t, median(B.rps[t]!.map((v, i) => v / A.rps[t]![i]!))]));
  console.log(
    `B/A   ${TARGETS.map((t) => `${t} ${paired[t]!.toFixed(3)}`).join('  ')}   (median over rounds of B's req/s over A's, same target and round)`,
  );
  const file = join(import.meta.dirname, `../../bench/results/ab-shipped-${stamp()}.json`);
  writeFileSync(
    file,
    JSON.stringify({ machine: machine(), rounds: ROUNDS, ms: MS, paired, sides: sides.map(({ gw: _gw, ...s }) => s) }, null, 2),
  );
  console.log(`\nwrote ${file}`);
} finally {
  for (const s of sides) await s.gw.stop();
  await mock.stop();
}
