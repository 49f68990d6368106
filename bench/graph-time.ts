// How long one router artifact's graph takes per input (the embedding not included), as the gateway runs
// it (OnnxMlp: the plan of src/routers/mlp-plan.ts for the trainer's graphs) and as onnxruntime-node runs
// the same file, p50/p99 over distinct inputs shaped like the embedders' (a sparse hashed part, a dense
// part; unit length). Twice: warm (one call after another) and cold (32 MB of other data read between
// calls, as the rest of a request's work does to the caches in a busy gateway).
//   npx tsx bench/graph-time.ts routers/p1-ensemble-static [routers/p3-concat-static-mlp-shapes ...]
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ONNX_FILE } from '../src/routers/artifacts.js';
import { OnnxMlp } from '../src/routers/mlp.js';
import { seededRandom } from '../src/util/random.js';

const RUNS = 2000;
const COLD_RUNS = 300;
const WARMUP = 300;

function inputs(dim: number, n: number): Float32Array[] {
  const next = seededRandom(11);
  return Array.from({ length: n }, () => {
    const x = new Float32Array(dim);
    const dense = dim <= 512 ? dim : 256;
    for (let i = 0; i < dim; i++) if (i >= dim - dense || next() < 0.05) x[i] = next() * 2 - 1;
    const norm = Math.hypot(...x);
    return x.map((v) => v / norm);
  });
}

const other = new Float64Array(4 << 20); // 32 MB
let sink = 0;
function evict(): void {
  for (let j = 0; j < other.length; j += 8) sink += other[j]!++;
}

async function times(run: (x: Float32Array) => Promise<unknown>, xs: Float32Array[], cold: boolean): Promise<string> {
  const n = cold ? COLD_RUNS : RUNS;
  for (let i = 0; i < WARMUP; i++) await run(xs[i % xs.length]!);
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    if (cold) evict();
    const t = process.hrtime.bigint();
    await run(xs[i % xs.length]!);
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  ms.sort((a, b) => a - b);
  const q = (p: number): string => ms[Math.floor(p * (n - 1))]!.toFixed(3);
  return `${q(0.5)} / ${q(0.99)}`;
}

process.stdout.write('artifact | engine | warm p50 / p99 ms | cold p50 / p99 ms\n');
for (const dir of process.argv.slice(2)) {
  const mlp = await OnnxMlp.load(dir);
  const session = await ort.InferenceSession.create(join(dir, ONNX_FILE), { intraOpNumThreads: 1, interOpNumThreads: 1 });
  // Distinct inputs every call: OnnxMlp remembers its last input, and a repeat would measure that.
  const xs = inputs(mlp.inputDim, 997);
  const rt = (x: Float32Array) => session.run({ x: new ort.Tensor('float32', x, [1, x.length]) });
  const gw = (x: Float32Array) => mlp.run(x);
  for (const [name, run] of [
    [`gateway (${mlp.engine})`, gw],
    ['onnxruntime-node', rt],
  ] as const) {
    process.stdout.write(`${dir} | ${name} | ${await times(run, xs, false)} | ${await times(run, xs, true)}\n`);
  }
  await session.release();
  await mlp.close();
}
if (sink === -1) process.stdout.write('\n');
