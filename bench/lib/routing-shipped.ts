// Part 4 of the routing bench: the demo policies exactly as they ship (configs/default.yaml: the trained
// routers of routers/, their embedders and guards) in a gateway of their own in front of the mock upstream,
// against pass-through in the same gateway and rounds (issue #15: the best sub-millisecond router serves at
// least half the pass-through rate at c=16), plus each policy's whole decision as POST /v1/route reports it.
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { summarize, type LatencySummary } from './loadgen.js';
import { chatBody, STREAM, syntheticPrompt } from './prompts.js';
import { runThroughput, type GatewayKnobs, type GwCell } from './routing-gateway.js';
import { startGateway, startMock } from './servers.js';

const ROOT = join(import.meta.dirname, '../../..'); // dist/bench/lib -> repo root (benches run built)
/**
 * ROUTING_SHIPPED_CONFIG / ROUTING_SHIPPED_POLICIES: another config served the same way (its `../routers/...`
 * paths resolve as the demo's do) and which of its policies to run, e.g. a copy of the demo config holding
 * variants of one policy, to compare them in one gateway and the same rounds.
 */
const CONFIG = process.env.ROUTING_SHIPPED_CONFIG ?? join(ROOT, 'configs/default.yaml');
/** A backend of the demo config, named directly: the pass-through baseline. */
export const SHIPPED_PASSTHROUGH = 'mixtral';
export const SHIPPED_POLICIES: readonly string[] = process.env.ROUTING_SHIPPED_POLICIES?.split(',') ?? ['auto', 'auto-open', 'expert'];

export interface DecisionTiming {
  policy: string;
  /** Whole decision (embed, guard, score, decide) as /v1/route's totalMs reports it, distinct prompts. */
  decisionMs: LatencySummary;
  /** Share of the prompts the guard sent to its fallback. */
  guarded: number;
}

/**
 * The demo config served from a temp folder laid out like the repository (configs/ beside links to
 * routers/ and embedders/), so every relative path in it, written or defaulted, resolves as it ships.
 */
function shippedDir(): string {
  const root = mkdtempSync(join(tmpdir(), 'signalman-shipped-'));
  mkdirSync(join(root, 'configs'));
  for (const d of ['routers', 'embedders']) symlinkSync(join(ROOT, d), join(root, d), 'dir');
  return join(root, 'configs');
}

/** The demo config on `port`; `threads` overrides its server.routing_threads (the bench's "off" run). */
function shippedConfig(port: number, threads?: number): string {
  const text = readFileSync(CONFIG, 'utf8').replace(/^(\s*port:\s*)8080\b/m, `$1${port}`);
  if (threads === undefined) return text;
  if (!/^\s*routing_threads:\s*\d+/m.test(text)) throw new Error(`${CONFIG} sets no server.routing_threads to override`);
  return text.replace(/^(\s*routing_threads:\s*)\d+/m, `$1${threads}`);
}

export async function runShipped(
  k: GatewayKnobs,
  decisions: number,
  log: (line: string) => void,
  /** Overrides the config's server.routing_threads (undefined: as shipped). */
  routingThreads?: number,
): Promise<{ cells: GwCell[]; timings: DecisionTiming[] }> {
  const mock = await startMock();
  try {
    const gw = await startGateway({
      name: 'signalman-shipped',
      config: (port) => shippedConfig(port, routingThreads),
      dir: shippedDir(),
      env: { SIGNALMAN_MOCK_URL: mock.origin, REDIS_URL: '' },
    });
    try {
      const timings: DecisionTiming[] = [];
      for (const policy of SHIPPED_POLICIES) {
        const ms = new Float64Array(decisions);
        let guarded = 0;
        for (let i = 0; i < decisions; i++) {
          const res = await request(`${gw.origin}/v1/route`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: chatBody(policy, syntheticPrompt(STREAM.query, 2e9 + i)),
          });
          const d = (await res.body.json()) as { totalMs?: number; reason?: string };
          if (res.statusCode !== 200 || typeof d.totalMs !== 'number') throw new Error(`${policy}: /v1/route answered ${res.statusCode}`);
          ms[i] = d.totalMs;
          if (d.reason === 'guard_fallback') guarded++;
        }
        timings.push({ policy, decisionMs: summarize(ms), guarded: guarded / decisions });
        log(`shipped ${policy}: whole decision p50 ${summarize(ms).p50.toFixed(3)} ms over ${decisions} distinct prompts`);
      }
      const cells = await runThroughput(
        gw,
        SHIPPED_POLICIES.map((name) => ({ name, slow: false })),
        k,
        (line) => log(`shipped ${line}`),
        SHIPPED_PASSTHROUGH,
        mock,
      );
      return { cells, timings };
    } finally {
      await gw.stop();
    }
  } finally {
    await mock.stop();
  }
}
