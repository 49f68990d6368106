#!/usr/bin/env node
// `signalman <command>`: one table of subcommands, each module loaded only when it runs.
const COMMANDS: Record<string, { about: string; run: (argv: string[]) => Promise<number | void> }> = {
  serve: {
    about: 'run the gateway (embedded demo config + mock upstream when no --config is given)',
    run: async (a) => (await import('./serve.js')).serveCommand(a),
  },
  'mock-upstream': {
    about: 'run the deterministic OpenAI-compatible mock upstream',
    run: async (a) => (await import('./mock-upstream.js')).mockUpstreamCommand(a),
  },
  train: {
    about: 'train a router (kNN index or MLP exported to ONNX) from routing-outcome JSONL',
    run: async (a) => (await import('./train.js')).trainCommand(a),
  },
  distill: {
    about: 'distil USE-lite into a static table over its own vocabulary (for the static embedder)',
    run: async (a) => (await import('./distill.js')).distillCommand(a),
  },
  'export-feedback': {
    about: 'write requests with feedback as routing-outcome JSONL (for train --input)',
    run: async (a) => (await import('./export-feedback.js')).exportFeedbackCommand(a),
  },
  eval: {
    about: 'run the evaluation protocols (P1, P2, P3) against baselines; tables, PNG curves, per-prompt dumps',
    run: async (a) => (await import('./eval.js')).evalCommand(a),
  },
  'calibrate-router': {
    about: "a trained router's threshold or lambda for a target strong-model share or cost (P1, P2)",
    run: async (a) => (await import('./calibrate-router.js')).calibrateRouterCommand(a),
  },
  'calibrate-policy': {
    about: "a gateway policy's lambda or min_quality for a target backend share or cost, found by running the policy",
    run: async (a) => (await import('./calibrate-policy.js')).calibratePolicyCommand(a),
  },
  route: {
    about: 'where each policy of a config sends each prompt of a file, and why (a dry run: no upstream is called)',
    run: async (a) => (await import('./route.js')).routeCommand(a),
  },
  report: {
    about: 'requests, spend, savings, errors and routing share per policy and backend for a time window (from Redis)',
    run: async (a) => (await import('./report.js')).reportCommand(a),
  },
  schema: {
    about: "print (or --write FILE) the config's JSON Schema, generated from the zod schema",
    run: async (a) => (await import('./schema.js')).schemaCommand(a),
  },
  'validate-config': {
    about: 'check a config file; prints file:line: reason for each problem',
    run: async (a) => (await import('./validate-config.js')).validateConfigCommand(a),
  },
};

function usage(): string {
  const rows = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(16)} ${c.about}`);
  return `usage: signalman <command> [options]\n\ncommands:\n${rows.join('\n')}\n\nsignalman <command> --help for a command's options`;
}

async function main(): Promise<void> {
  const [name, ...rest] = process.argv.slice(2);
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    console.error(`signalman: unknown command '${name}'\n\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  const code = await cmd.run(rest);
  if (typeof code === 'number') process.exitCode = code;
}

main().catch((err: unknown) => {
  console.error(`signalman: ${(err as Error)?.message ?? String(err)}`);
  process.exitCode = 1;
});
