// The README's Redis key table and metrics table are the operator's reference: they must say what the
// code does. Keys come from redis-keys.ts; metric names from the live registry.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { registerLimitMetrics } from '../../src/telemetry/limit-metrics.js';
import { GatewayMetrics } from '../../src/telemetry/metrics.js';
import { registerResilienceMetrics } from '../../src/telemetry/resilience-metrics.js';
import { keySchemeMarkdown } from '../../src/telemetry/redis-keys.js';

const readme = () => readFile(join(import.meta.dirname, '../../README.md'), 'utf8');

describe('README telemetry reference', () => {
  it('lists every Redis key the telemetry writes, as redis-keys.ts names it', async () => {
    const text = await readme();
    const table = keySchemeMarkdown().split('\n\n')[0]!;
    for (const row of table.split('\n')) expect(text).toContain(row);
  });

  it('lists every metric /metrics exports, and no metric it does not', async () => {
    const text = await readme();
    // The registry as listen.ts assembles it: the gateway's metrics plus the resilience and limit collectors.
    const { registry } = new GatewayMetrics();
    registerResilienceMetrics(registry, () => null);
    registerLimitMetrics(registry, { refused: new Map(), storeErrors: 0 });
    const exported = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
    const ours = [...exported].filter((n) => !/^signalman_(process|nodejs)_/.test(n));
    for (const name of ours) expect(text, name).toContain(`| \`${name}\` |`);
    const documented = [...text.matchAll(/^\| `(signalman_[a-z_]+)` \|/gm)].map((m) => m[1]!);
    for (const name of documented) expect(exported.has(name), name).toBe(true);
  });
});
