// Why src/util/lru.ts exists: the cost of one insert into a full bounded map, the old way (a Map, delete
// `keys().next()` when over capacity) against Lru, at the capacities the gateway uses (score cache and
// static embed cache 10,000, sticky store 100,000). Keys are distinct strings, as the sticky store's are;
// each phase inserts `capacity / 2` (at least 20,000) new keys into the already full map, so later phases show whether the
// cost stays flat.
//   npx tsc -p tsconfig.json && node dist/bench/lru.js
import { Lru } from '../src/util/lru.js';
import { describeMachine, machine } from './lib/machine.js';

const PHASES = 4;

function mapFifo(capacity: number): (k: string) => void {
  const m = new Map<string, number>();
  return (k) => {
    m.set(k, 1);
    if (m.size > capacity) m.delete(m.keys().next().value as string);
  };
}

function lru(capacity: number): (k: string) => void {
  const l = new Lru<string, number>(capacity);
  return (k) => l.set(k, 1);
}

/** µs per insert for each phase after the map is full. */
function run(make: (capacity: number) => (k: string) => void, capacity: number): number[] {
  const insert = make(capacity);
  let i = 0;
  for (; i < capacity; i++) insert(`c:${i.toString(36)}`);
  const out: number[] = [];
  const n = Math.max(capacity / 2, 20_000); // small capacities: enough inserts to time
  for (let p = 0; p < PHASES; p++) {
    const t = performance.now();
    for (let j = 0; j < n; j++, i++) insert(`c:${i.toString(36)}`);
    out.push(((performance.now() - t) * 1000) / n);
  }
  return out;
}

console.log(`machine: ${describeMachine(machine())}`);
console.log(`µs per insert into a full map, ${PHASES} phases of max(capacity/2, 20000) inserts each`);
for (const capacity of [1_000, 10_000, 100_000]) {
  for (const [name, make] of [
    ['Map, delete keys().next()', mapFifo],
    ['Lru', lru],
  ] as const) {
    const us = run(make, capacity);
    console.log(`${String(capacity).padStart(7)}  ${name.padEnd(26)} ${us.map((u) => u.toFixed(2).padStart(7)).join(' ')}`);
  }
}
