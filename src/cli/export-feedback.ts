// `signalman export-feedback`: production outcomes as a routing-outcome dataset (../shared/datasets/README.md).
// Each request that got feedback becomes one JSONL row scoring the backend that answered it, so
// `signalman train --input FILE --kind knn` retrains a router on what users said about real answers.
import { writeFile } from 'node:fs/promises';
import { loadConfigFile } from '../config/load.js';
import { createRedisClient, redact } from '../telemetry/redis-client.js';
import { DEFAULT_KEY_PREFIX } from '../telemetry/redis-keys.js';
import { listFeedback, type FeedbackRow } from '../telemetry/redis-store.js';
import { parseCommand } from './args.js';

const USAGE = `usage: signalman export-feedback [--redis URL] [--prefix P] [--since ISO | --hours N]
                                 [--model-names CONFIG.yaml] [--out FILE]

Writes every request that got feedback as one routing-outcome JSONL row: id signalman/<request id>,
benchmark 'signalman', category = the policy, prompt = the recorded prompt text, scores = { <backend>: score }
(label good = 1, bad = 0; several feedback sources on one request: their mean), contaminated false.
Only requests whose policy sets record_prompts have a prompt; the others are skipped and counted.

  --redis URL        default: $REDIS_URL
  --prefix P         key prefix of the gateway's telemetry (default ${DEFAULT_KEY_PREFIX})
  --since ISO        feedback given at or after this time; --hours N: in the last N hours
  --model-names F    name models by their backend's \`model\` in this gateway config (default: backend names)
  --out FILE         default: stdout

Retrain with: signalman train --input FILE --kind knn --split all --out DIR`;

type SkipReason = 'no_record' | 'not_answered' | 'no_prompt' | 'no_score';
const SKIP_TEXT: Record<SkipReason, string> = {
  no_record: 'record expired or unknown',
  not_answered: 'request not answered',
  no_prompt: 'no prompt text (policy without record_prompts)',
  no_score: 'no usable score',
};

/** A feedback value as a score: its score, else its label (good = 1, bad = 0), else nothing. */
function feedbackScore(f: FeedbackRow['feedback'][number]): number | null {
  const s = f.score ?? (f.label === 'good' ? 1 : f.label === 'bad' ? 0 : null);
  return s !== null && s >= 0 && s <= 1 ? s : null;
}

/** One JSONL row, or why there is none. */
function toRow(fr: FeedbackRow, modelOf: (backend: string) => string): object | SkipReason {
  const rec = fr.record;
  if (rec === null) return 'no_record';
  if (rec.backend === null || (rec.outcome !== 'ok' && rec.outcome !== 'fallback_ok')) return 'not_answered';
  if (rec.prompt === null || rec.prompt === '') return 'no_prompt';
  const scores = fr.feedback.map(feedbackScore).filter((s): s is number => s !== null);
  if (scores.length === 0) return 'no_score';
  const score = scores.reduce((a, b) => a + b, 0) / scores.length;
  return {
    id: `signalman/${rec.id}`,
    benchmark: 'signalman',
    category: rec.policy ?? '-',
    prompt: rec.prompt,
    scores: { [modelOf(rec.backend)]: score },
    contaminated: false,
  };
}

function sinceOf(since: string | undefined, hours: string | undefined): Date | undefined {
  if (since !== undefined && hours !== undefined) throw new Error('give --since or --hours, not both');
  if (since !== undefined) {
    const d = new Date(since);
    if (Number.isNaN(d.getTime())) throw new Error(`--since '${since}' is not an ISO date/time`);
    return d;
  }
  if (hours === undefined) return undefined;
  const h = Number(hours);
  if (!(h > 0)) throw new Error(`--hours must be a positive number, got '${hours}'`);
  return new Date(Date.now() - h * 3_600_000);
}

async function backendModels(file: string | undefined): Promise<(backend: string) => string> {
  if (file === undefined) return (b) => b;
  const { config } = await loadConfigFile(file);
  const models = new Map(config.backends.map((b) => [b.name, b.model]));
  return (b) => models.get(b) ?? b;
}

export async function exportFeedbackCommand(argv: string[]): Promise<number> {
  const values = parseCommand('export-feedback', USAGE, argv, {
    redis: { type: 'string' },
    prefix: { type: 'string', default: DEFAULT_KEY_PREFIX },
    since: { type: 'string' },
    hours: { type: 'string' },
    'model-names': { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (typeof values === 'number') return values;
  const url = values.redis ?? process.env.REDIS_URL;
  if (url === undefined || url === '') {
    process.stderr.write(`signalman export-feedback: give --redis URL or set REDIS_URL\n${USAGE}\n`);
    return 2;
  }
  // Fail fast on a Redis that is not there instead of reconnecting forever.
  const client = createRedisClient(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    const since = sinceOf(values.since, values.hours);
    const modelOf = await backendModels(values['model-names']);
    const lines: string[] = [];
    const skipped = new Map<SkipReason, number>();
    for (const fr of await listFeedback(client, values.prefix, since === undefined ? {} : { since })) {
      const row = toRow(fr, modelOf);
      if (typeof row === 'string') skipped.set(row, (skipped.get(row) ?? 0) + 1);
      else lines.push(JSON.stringify(row));
    }
    const text = lines.length === 0 ? '' : `${lines.join('\n')}\n`;
    if (values.out === undefined) process.stdout.write(text);
    else await writeFile(values.out, text);
    const why = [...skipped].map(([r, n]) => `${n} ${SKIP_TEXT[r]}`).join(', ');
    process.stderr.write(
      `export-feedback: wrote ${lines.length} rows to ${values.out ?? 'stdout'} from ${redact(url)}; skipped ${[...skipped.values()].reduce((a, b) => a + b, 0)}${why === '' ? '' : ` (${why})`}\n`,
    );
    return 0;
  } catch (err) {
    process.stderr.write(`signalman export-feedback: ${(err as Error).message}\n`);
    return 1;
  } finally {
    client.disconnect();
  }
}
