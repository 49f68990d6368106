// How long one router artifact's ONNX graph takes per prompt, as the gateway's `mlp` router runs it
// (the embedding not included): p50/p99 of sequential runs after a warm-up.
//   npx tsx bench/graph-time.ts routers/p1-ensemble [routers/p1-lexical-lr ...]
import { OnnxMlp } from '../src/routers/mlp.js';

const RUNS = 2000;
const WARMUP = 300;

for (const dir of process.argv.slice(2)) {
  const mlp = await OnnxMlp.load(dir);
  const x = Float32Array.from({ length: mlp.inputDim }, (_, i) => Math.sin(i) / Math.sqrt(mlp.inputDim));
  for (let i = 0; i < WARMUP; i++) await mlp.run(x);
  const ms: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = process.hrtime.bigint();
    await mlp.run(x);
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  ms.sort((a, b) => a - b);
  const q = (p: number): string => ms[Math.floor(p * (RUNS - 1))]!.toFixed(3);
  process.stdout.write(`${dir}: input ${mlp.inputDim}, p50 ${q(0.5)} ms, p99 ${q(0.99)} ms over ${RUNS} runs\n`);
  await mlp.close();
}
