// How long one embed() takes per prompt, per embedder, as the gateway calls it (one at a time, cache
// misses): lexical, static, shape and the concat of the first two run on the calling thread, use-lite in its worker. Prompts are the
// held-out halves of the shared datasets and the out-of-domain sets, through the gateway's prompt
// extraction, so the lengths are those routing sees.
//   npx tsx bench/embed-time.ts [--data ../shared/datasets] [--n 3000] [--use-lite-n 200]
import { parseArgs } from 'node:util';
import { ConcatOptions, createConcatEmbedder } from '../src/embedders/concat.js';
import { createLexicalEmbedder, LexicalOptions } from '../src/embedders/lexical.js';
import { createShapeEmbedder, ShapeOptions } from '../src/embedders/shape.js';
import { createStaticEmbedder, StaticOptions } from '../src/embedders/static.js';
import { createUseLiteEmbedder, UseLiteOptions } from '../src/embedders/use-lite.js';
import type { Embedder } from '../src/embedders/types.js';
import { bucket, dataPath, readDataset, rowText } from '../src/training/dataset.js';
import { seededRandom } from '../src/util/random.js';
import { describeMachine, machine } from './lib/machine.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: '../shared/datasets' },
    n: { type: 'string', default: '3000' },
    'use-lite-n': { type: 'string', default: '200' },
    artifact: { type: 'string', default: 'embedders/static-use-lite' },
  },
});
const WARMUP = 500;

const texts: string[] = [];
for (const f of ['mmlu', 'llmrouter', 'gsm8k', 'mtBench'] as const) {
  const ds = await readDataset(dataPath(values.data, f));
  const rows = f === 'mmlu' || f === 'llmrouter' ? ds.rows.filter((r) => bucket(r.id) === 1) : ds.rows;
  texts.push(...rows.map((r) => rowText(r)));
}
// A seeded shuffle, so any --n takes a fair mix of the sets.
const next = seededRandom(42);
for (let i = texts.length - 1; i > 0; i--) {
  const j = Math.floor(next() * (i + 1));
  [texts[i], texts[j]] = [texts[j]!, texts[i]!];
}

async function time(e: Embedder, n: number): Promise<{ p50: number; p99: number; max: number; n: number }> {
  const sample = texts.slice(0, n);
  for (let i = 0; i < Math.min(WARMUP, n); i++) await e.embed(texts[texts.length - 1 - i]!);
  const ms: number[] = [];
  for (const t of sample) {
    const t0 = process.hrtime.bigint();
    await e.embed(t);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ms.sort((a, b) => a - b);
  const q = (p: number): number => ms[Math.floor(p * (ms.length - 1))]!;
  return { p50: q(0.5), p99: q(0.99), max: ms[ms.length - 1]!, n: ms.length };
}

const lens = texts
  .slice(0, Number(values.n))
  .map((t) => t.length)
  .sort((a, b) => a - b);
console.log(`machine: ${describeMachine(machine())}`);
console.log(
  `prompts: ${lens.length} held-out/out-of-domain prompts, chars p50 ${lens[lens.length >> 1]}, p99 ${lens[Math.floor(lens.length * 0.99)]}`,
);
const rows: Record<string, { n: number; 'p50 ms': string; 'p99 ms': string; 'max ms': string }> = {};
const run = async (name: string, e: Embedder, n: number): Promise<void> => {
  try {
    const r = await time(e, n);
    rows[name] = { n: r.n, 'p50 ms': r.p50.toFixed(4), 'p99 ms': r.p99.toFixed(4), 'max ms': r.max.toFixed(3) };
  } finally {
    await e.close();
  }
};
const stat = await createStaticEmbedder(StaticOptions.parse({ type: 'static' }), values.artifact);
await run(`static (${stat.id})`, stat, Number(values.n));
await run('lexical dim 4096', createLexicalEmbedder(LexicalOptions.parse({ type: 'lexical', dim: 4096 })), Number(values.n));
await run('shape', createShapeEmbedder(ShapeOptions.parse({ type: 'shape' })), Number(values.n));
// The vector `auto` and `expert` route on: both of the above joined.
const joined = ConcatOptions.parse({
  type: 'concat',
  members: [
    { type: 'lexical', dim: 4096 },
    { type: 'static', artifact: values.artifact },
  ],
});
await run('concat lexical 4096 + static', await createConcatEmbedder(joined, { resolvePath: (p) => p }), Number(values.n));
if (Number(values['use-lite-n']) > 0)
  await run(
    'use-lite',
    await createUseLiteEmbedder(UseLiteOptions.parse({ type: 'use-lite', batch_window_ms: 0 })),
    Number(values['use-lite-n']),
  );
console.table(rows);
