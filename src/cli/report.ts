// `signalman report`: requests, tokens, spend, savings against always taking each policy's most expensive
// candidate, error rates and routing share, per policy and backend, for a time window — read from the
// Redis totals the gateway keeps (telemetry.redis). A table for people, --json for scripts.
import { createRedisClient } from '../telemetry/redis-client.js';
import { readTotals } from '../telemetry/redis-store.js';
import { buildReport, chooseGranularity, formatReportTable } from '../telemetry/report.js';
import { parseCommand } from './args.js';

const USAGE = `usage: signalman report [--redis URL] [--prefix P] [--hours N | --since ISO [--until ISO]] [--json]

Reads the per-minute (windows up to 48 h) or per-day totals that the gateway writes to Redis and prints,
per policy, per backend and per policy -> backend route: requests, tokens, spend in USD, what the policy's
most expensive candidate would have cost, the savings, the error rate and the routing share.
  --redis URL   default: $REDIS_URL, else redis://127.0.0.1:6379
  --prefix P    the gateway's telemetry.redis.key_prefix (default signalman:)
  --hours N     the last N hours (default 24)
  --since/--until  an explicit window (ISO 8601 times, --until default now)
  --json        the report as JSON`;

export async function reportCommand(argv: string[]): Promise<number> {
  const values = parseCommand('report', USAGE, argv, {
    redis: { type: 'string' },
    prefix: { type: 'string', default: 'signalman:' },
    hours: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (typeof values === 'number') return values;
  const window = windowOf(values);
  if (typeof window === 'string') {
    process.stderr.write(`signalman report: ${window}\n${USAGE}\n`);
    return 2;
  }
  const url = values.redis ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const client = createRedisClient(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  try {
    await client.connect();
    const totals = await readTotals(client, values.prefix, { ...window, granularity: chooseGranularity(window.from, window.to) });
    const report = buildReport(totals, window);
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReportTable(report)}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`signalman report: cannot read the totals from Redis: ${(err as Error).message}\n`);
    return 1;
  } finally {
    client.disconnect();
  }
}

function windowOf(v: { hours?: string; since?: string; until?: string }): { from: Date; to: Date } | string {
  const to = v.until === undefined ? new Date() : new Date(v.until);
  if (Number.isNaN(to.getTime())) return `--until '${v.until}' is not an ISO 8601 time`;
  if (v.since !== undefined) {
    if (v.hours !== undefined) return 'give --hours or --since, not both';
    const from = new Date(v.since);
    if (Number.isNaN(from.getTime())) return `--since '${v.since}' is not an ISO 8601 time`;
    return from < to ? { from, to } : '--since must be before --until';
  }
  const hours = Number(v.hours ?? '24');
  if (!(hours > 0)) return `--hours takes a positive number, got '${v.hours}'`;
  return { from: new Date(to.getTime() - hours * 3_600_000), to };
}
