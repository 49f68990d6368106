// `signalman calibrate-policy --config FILE --policy NAME --prompts FILE …`: the policy's knob, found by running
// its own embedder, guard and router on a sample of prompts (see training/calibrate-policy.ts).
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { compileRuntime, createSharedPools } from '../runtime/compile.js';
import { loadConfigFile } from '../config/load.js';
import { ConfigErrors } from '../errors.js';
import { calibrateKnob, scorePrompts, type CalibrationTarget } from '../training/calibrate-policy.js';
import { bucket } from '../training/dataset.js';

export const POLICY_USAGE = `usage: signalman calibrate-policy --config FILE --policy NAME --prompts FILE [--split all|train]
         (--target-share X --backend B | --target-cost-per-1k USD)

Runs every prompt through the policy exactly as the gateway would (embedder, guard, router) and finds
the objective's knob — lambda for kind: utility, min_quality for kind: threshold — that sends share X
of the prompts to backend B, or whose expected cost per 1000 requests is USD. --prompts is JSONL with a
"prompt" field per line (the datasets' schema) or chat bodies with "messages"; use a sample of your own
traffic. --split train keeps only rows whose id is in PROTOCOLS.md's train half (bucket 0), so a
dataset's test half never tunes a policy. Prints the value and the YAML line to put in the policy.`;

async function readPrompts(file: string, split: 'all' | 'train'): Promise<string[]> {
  const out: string[] = [];
  const lines = (await readFile(file, 'utf8')).split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let row: { id?: unknown; contaminated?: unknown; prompt?: unknown; messages?: Array<{ role?: string; content?: unknown }> };
    try {
      row = JSON.parse(line) as typeof row;
    } catch {
      throw new Error(`${file}:${i + 1}: not valid JSON`);
    }
    // Calibrating on a dataset: its train half only (PROTOCOLS.md's bucket), never contaminated rows.
    if (split === 'train' && (typeof row.id !== 'string' || bucket(row.id) !== 0)) return;
    if (row.contaminated === true) return;
    if (typeof row.prompt === 'string') out.push(row.prompt);
    else if (Array.isArray(row.messages)) {
      const last = [...row.messages].reverse().find((m) => m.role === 'user');
      if (typeof last?.content === 'string') out.push(last.content);
    } else throw new Error(`${file}:${i + 1}: needs a "prompt" string or a "messages" array`);
  });
  if (out.length === 0) throw new Error(`${file}: no prompts`);
  return out;
}

export async function calibratePolicyCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      policy: { type: 'string' },
      prompts: { type: 'string' },
      backend: { type: 'string' },
      'target-share': { type: 'string' },
      'target-cost-per-1k': { type: 'string' },
      split: { type: 'string', default: 'all' },
    },
    strict: true,
  });
  if (values.config === undefined || values.policy === undefined || values.prompts === undefined) {
    console.error(POLICY_USAGE);
    return 2;
  }
  let target: CalibrationTarget;
  if (values['target-share'] !== undefined) {
    const share = Number(values['target-share']);
    if (!(share >= 0 && share <= 1) || values.backend === undefined) {
      console.error('signalman calibrate-policy: --target-share takes a number in 0..1 and needs --backend');
      return 2;
    }
    target = { kind: 'share', backend: values.backend, share };
  } else if (values['target-cost-per-1k'] !== undefined) {
    const usdPer1k = Number(values['target-cost-per-1k']);
    if (!(usdPer1k > 0)) {
      console.error('signalman calibrate-policy: --target-cost-per-1k takes a positive number of USD');
      return 2;
    }
    target = { kind: 'cost', usdPer1k };
  } else {
    console.error(POLICY_USAGE);
    return 2;
  }
  const shared = createSharedPools();
  try {
    const loaded = await loadConfigFile(resolve(values.config));
    const runtime = await compileRuntime(loaded, shared, 1, { scoringThreads: false });
    try {
      if (values.split !== 'all' && values.split !== 'train') throw new Error(`--split must be all or train, got '${values.split}'`);
      const prompts = await readPrompts(values.prompts, values.split);
      const { scored, guarded } = await scorePrompts(runtime, values.policy, prompts);
      const r = calibrateKnob(runtime, values.policy, scored, guarded, target);
      const shares = Object.entries(r.share)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${(v * 100).toFixed(1)}%`)
        .join(', ');
      console.log(`policy ${values.policy}: ${r.prompts} prompts (${r.guarded} sent by the guard, not counted)`);
      console.log(`${r.knob} = ${r.value.toPrecision(4)} -> ${shares}; expected cost ${r.usdPer1k.toFixed(4)} USD per 1000 requests`);
      console.log(
        r.knob === 'lambda'
          ? `YAML: objective: { kind: utility, lambda: ${Number(r.value.toPrecision(4))} }`
          : `YAML: objective: { kind: threshold, min_quality: ${Number(r.value.toPrecision(4))} }`,
      );
      return 0;
    } finally {
      await runtime.dispose();
    }
  } catch (err) {
    if (err instanceof ConfigErrors) for (const p of err.problems) console.error(p.message);
    else console.error(`signalman calibrate-policy: ${(err as Error).message}`);
    return 1;
  } finally {
    await shared.pools.closeAll();
    await shared.embedders.closeAll();
  }
}
