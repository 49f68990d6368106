import { spawnSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GatewayMetrics, type WatchedSink } from '../../src/telemetry/metrics.js';
import { PrometheusSink } from '../../src/telemetry/prometheus-sink.js';
import { Stages } from '../../src/telemetry/stages.js';
import { fallbackRecord, makeRecord } from './metric-records.js';

const KNOWN = { policies: ['auto', 'cheap'], backends: ['weak', 'strong'] };

/** The value of one series: `name` is the sample name (e.g. x_count for a histogram), labels match exactly. */
async function value(m: GatewayMetrics, metric: string, labels: Record<string, string>, sample = metric): Promise<number | undefined> {
  const got = await m.registry.getSingleMetric(metric)?.get();
  if (got === undefined) throw new Error(`no metric ${metric}`);
  const want = JSON.stringify(Object.entries(labels).sort());
  for (const v of got.values) {
    const name = 'metricName' in v && typeof v.metricName === 'string' ? v.metricName : metric;
    if (name !== sample) continue;
    const ls = Object.entries(v.labels).filter(([k]) => k !== 'le');
    if ('le' in v.labels) continue; // bucket samples are not asked for here
    if (JSON.stringify(ls.map(([k, x]) => [k, String(x)]).sort()) === want) return v.value;
  }
  return undefined;
}

/** Series lines of our own metrics (not the process/nodejs defaults, whose count moves with the runtime). */
async function ownSeriesLines(m: GatewayMetrics): Promise<number> {
  const text = await m.metrics();
  return text.split('\n').filter((l) => l.startsWith('signalman_') && !/^signalman_(process|nodejs)_/.test(l)).length;
}

let stages: Stages;
let sink: PrometheusSink;
let metrics: GatewayMetrics;

beforeEach(() => {
  stages = new Stages();
  metrics = new GatewayMetrics();
  metrics.setKnown(KNOWN);
  sink = new PrometheusSink(metrics);
  sink.attach(stages);
});
afterEach(() => sink.detach(stages));

describe('GatewayMetrics from finished records', () => {
  it('counts requests, tokens, cost and durations per policy/backend/outcome', async () => {
    stages.finish.publish(makeRecord());
    stages.finish.publish(makeRecord({ stream: true, total_ms: 2000, ttft_ms: 300 }));
    stages.finish.publish(makeRecord({ backend: 'strong', cost_usd: 0.01, prompt_tokens: 50, completion_tokens: 5 }));
    stages.finish.publish(makeRecord({ endpoint: 'embeddings', completion_tokens: null, ttft_ms: null }));
    stages.finish.publish(fallbackRecord('strong', 'weak'));

    expect(await value(metrics, 'signalman_requests_total', { policy: 'auto', backend: 'weak', outcome: 'ok', endpoint: 'chat' })).toBe(2);
    expect(await value(metrics, 'signalman_requests_total', { policy: 'auto', backend: 'strong', outcome: 'ok', endpoint: 'chat' })).toBe(
      1,
    );
    expect(
      await value(metrics, 'signalman_requests_total', { policy: 'auto', backend: 'weak', outcome: 'ok', endpoint: 'embeddings' }),
    ).toBe(1);
    expect(
      await value(metrics, 'signalman_requests_total', { policy: 'auto', backend: 'weak', outcome: 'fallback_ok', endpoint: 'chat' }),
    ).toBe(1);

    expect(await value(metrics, 'signalman_tokens_total', { policy: 'auto', backend: 'weak', kind: 'prompt' })).toBe(400);
    expect(await value(metrics, 'signalman_tokens_total', { policy: 'auto', backend: 'weak', kind: 'completion' })).toBe(60);
    expect(await value(metrics, 'signalman_tokens_total', { policy: 'auto', backend: 'strong', kind: 'prompt' })).toBe(50);
    expect(await value(metrics, 'signalman_cost_usd_total', { policy: 'auto', backend: 'weak' })).toBeCloseTo(0.004, 12);
    expect(await value(metrics, 'signalman_cost_usd_total', { policy: 'auto', backend: 'strong' })).toBeCloseTo(0.01, 12);
    expect(await value(metrics, 'signalman_counterfactual_cost_usd_total', { policy: 'auto' })).toBeCloseTo(0.05, 12);

    const d = 'signalman_request_duration_seconds';
    expect(await value(metrics, d, { policy: 'auto', backend: 'weak', stream: 'false' }, `${d}_count`)).toBe(3);
    expect(await value(metrics, d, { policy: 'auto', backend: 'weak', stream: 'true' }, `${d}_count`)).toBe(1);
    expect(await value(metrics, d, { policy: 'auto', backend: 'weak', stream: 'true' }, `${d}_sum`)).toBeCloseTo(2, 9);
    const t = 'signalman_time_to_first_token_seconds';
    expect(await value(metrics, t, { policy: 'auto', backend: 'weak' }, `${t}_count`)).toBe(3); // the embeddings one had none
    expect(await value(metrics, t, { policy: 'auto', backend: 'weak' }, `${t}_sum`)).toBeCloseTo(0.045 + 0.3 + 0.045, 9);
    const o = 'signalman_gateway_overhead_seconds';
    expect(await value(metrics, o, { policy: 'auto' }, `${o}_count`)).toBe(5);
    expect(await value(metrics, o, { policy: 'auto' }, `${o}_sum`)).toBeCloseTo((10 + 1960 + 10 + 10 + 10) / 1000, 9);
    const r = 'signalman_routing_duration_seconds';
    expect(await value(metrics, r, { policy: 'auto' }, `${r}_count`)).toBe(5);
    const u = 'signalman_upstream_duration_seconds';
    expect(await value(metrics, u, { backend: 'weak' }, `${u}_count`)).toBe(4);
    expect(await value(metrics, u, { backend: 'strong' }, `${u}_count`)).toBe(2);

    // 0.5 ms and 60 s both resolve: a 0.4 ms overhead lands in le=0.0005, a 50 s request below le=60.
    stages.finish.publish(makeRecord({ policy: 'cheap', total_ms: 50_000, upstream_ms: 49_999.6 }));
    const text = await metrics.registry.getSingleMetricAsString(o);
    expect(text).toContain('signalman_gateway_overhead_seconds_bucket{le="0.0005",policy="cheap"} 1');
    const dur = await metrics.registry.getSingleMetricAsString(d);
    expect(dur).toContain('signalman_request_duration_seconds_bucket{le="30",policy="cheap",backend="weak",stream="false"} 0');
    expect(dur).toContain('signalman_request_duration_seconds_bucket{le="60",policy="cheap",backend="weak",stream="false"} 1');
  });

  it('maps unknown policies and backends to other and null to none; the model is never a label', async () => {
    stages.finish.publish(makeRecord({ policy: 'not-configured', backend: 'rogue', model: 'gpt-secret' }));
    stages.finish.publish(
      makeRecord({ policy: null, backend: null, reason: null, attempts: [], outcome: 'invalid_request', status: 400, guard: null }),
    );
    expect(await value(metrics, 'signalman_requests_total', { policy: 'other', backend: 'other', outcome: 'ok', endpoint: 'chat' })).toBe(
      1,
    );
    expect(
      await value(metrics, 'signalman_requests_total', { policy: 'none', backend: 'none', outcome: 'invalid_request', endpoint: 'chat' }),
    ).toBe(1);
    expect(await value(metrics, 'signalman_upstream_attempts_total', { backend: 'other', result: 'ok' })).toBe(1);
    const text = await metrics.metrics();
    expect(text).not.toContain('gpt-secret');
    expect(text).not.toContain('not-configured');
    expect(text).not.toContain('rogue');
  });

  it('counts decisions by reason (unknown reasons as other), guard verdicts, attempts, retries and fallbacks', async () => {
    stages.finish.publish(makeRecord({ reason: 'sticky' }));
    stages.finish.publish(makeRecord({ reason: 'made_up_reason' }));
    stages.finish.publish(
      makeRecord({ reason: 'guard_fallback', backend: 'strong', guard: { score: 0.1, threshold: 0.5, in_domain: false } }),
    );
    stages.finish.publish(makeRecord({ reason: null, guard: null }));
    stages.finish.publish(
      makeRecord({
        attempts: [
          { backend: 'weak', status: 502, error: 'upstream_unavailable', ms: 5 },
          { backend: 'weak', status: 200, error: null, ms: 20 },
        ],
      }),
    );
    stages.finish.publish(fallbackRecord('strong', 'weak', { policy: 'cheap' }));

    expect(await value(metrics, 'signalman_routing_decisions_total', { policy: 'auto', backend: 'weak', reason: 'sticky' })).toBe(1);
    expect(await value(metrics, 'signalman_routing_decisions_total', { policy: 'auto', backend: 'weak', reason: 'other' })).toBe(1);
    expect(await value(metrics, 'signalman_routing_decisions_total', { policy: 'auto', backend: 'strong', reason: 'guard_fallback' })).toBe(
      1,
    );
    expect(await value(metrics, 'signalman_routing_decisions_total', { policy: 'auto', backend: 'weak', reason: 'objective' })).toBe(1);
    expect(await value(metrics, 'signalman_guard_verdicts_total', { policy: 'auto', verdict: 'in_domain' })).toBe(3);
    expect(await value(metrics, 'signalman_guard_verdicts_total', { policy: 'auto', verdict: 'out_of_domain' })).toBe(1);
    expect(await value(metrics, 'signalman_upstream_attempts_total', { backend: 'weak', result: 'error' })).toBe(1);
    expect(await value(metrics, 'signalman_upstream_attempts_total', { backend: 'strong', result: 'error' })).toBe(1);
    expect(await value(metrics, 'signalman_upstream_attempts_total', { backend: 'weak', result: 'ok' })).toBe(5);
    expect(await value(metrics, 'signalman_upstream_attempts_total', { backend: 'strong', result: 'ok' })).toBe(1);
    expect(await value(metrics, 'signalman_retries_total', { backend: 'weak' })).toBe(1);
    expect(await value(metrics, 'signalman_fallbacks_total', { policy: 'cheap', from: 'strong', to: 'weak' })).toBe(1);
  });

  it('counts estimated tokens, shadow decisions and shadow costs, and feedback', async () => {
    stages.finish.publish(makeRecord({ tokens_estimated: true, prompt_tokens: 30, completion_tokens: 7 }));
    const shadow = { policy: 'cheap', chosen: 'weak', agree: true, cost_usd: 0.002, counterfactual_cost_usd: 0.02, error: null };
    stages.finish.publish(makeRecord({ shadow }));
    stages.finish.publish(makeRecord({ shadow: { ...shadow, agree: false, chosen: 'strong', cost_usd: 0.005 } }));
    stages.finish.publish(
      makeRecord({
        shadow: {
          ...shadow,
          policy: 'unknown-shadow',
          chosen: null,
          agree: false,
          cost_usd: null,
          counterfactual_cost_usd: null,
          error: 'timeout',
        },
      }),
    );
    metrics.feedbackReceived('auto', 'score');
    metrics.feedbackReceived('auto', 'score');
    metrics.feedbackReceived('ghost', 'label');

    expect(await value(metrics, 'signalman_tokens_estimated_total', { backend: 'weak' })).toBe(37);
    expect(await value(metrics, 'signalman_shadow_decisions_total', { policy: 'auto', shadow: 'cheap', agree: 'true' })).toBe(1);
    expect(await value(metrics, 'signalman_shadow_decisions_total', { policy: 'auto', shadow: 'cheap', agree: 'false' })).toBe(1);
    expect(await value(metrics, 'signalman_shadow_decisions_total', { policy: 'auto', shadow: 'other', agree: 'false' })).toBeUndefined(); // errored: no decision
    expect(await value(metrics, 'signalman_shadow_cost_usd_total', { policy: 'auto', shadow: 'cheap' })).toBeCloseTo(0.007, 12);
    expect(await value(metrics, 'signalman_shadow_counterfactual_cost_usd_total', { policy: 'auto', shadow: 'cheap' })).toBeCloseTo(
      0.04,
      12,
    );
    expect(await value(metrics, 'signalman_feedback_total', { policy: 'auto', kind: 'score' })).toBe(2);
    expect(await value(metrics, 'signalman_feedback_total', { policy: 'other', kind: 'label' })).toBe(1);
  });

  it('tracks in-flight attempts per backend from attemptStart/attemptEnd, labelled at scrape time', async () => {
    const g = (b: string) => value(metrics, 'signalman_inflight_requests', { backend: b });
    stages.attemptStart.publish({ id: 'a', backend: 'weak' });
    stages.attemptStart.publish({ id: 'b', backend: 'weak' });
    stages.attemptStart.publish({ id: 'c', backend: 'strong' });
    expect(await g('weak')).toBe(2);
    expect(await g('strong')).toBe(1);
    stages.attemptEnd.publish({ id: 'a', backend: 'weak', status: 200, error: null, ms: 3 });
    expect(await g('weak')).toBe(1);
    // A reload that forgets 'strong' shows its attempt under 'other' until it ends, and never below zero.
    metrics.setKnown({ policies: ['auto'], backends: ['weak'] });
    expect(await g('other')).toBe(1);
    stages.attemptEnd.publish({ id: 'c', backend: 'strong', status: null, error: 'aborted', ms: 9 });
    stages.attemptEnd.publish({ id: 'c', backend: 'strong', status: null, error: 'aborted', ms: 9 });
    expect(await g('other')).toBe(0);
    stages.attemptEnd.publish({ id: 'b', backend: 'weak', status: 200, error: null, ms: 3 });
    expect(await g('weak')).toBe(0);
  });
});

describe('bounded series and reloads', () => {
  it('keeps the series count flat under 500 distinct random policy/backend/model values', async () => {
    // Warm-up: every normalised shape the random records can take ('other' policy/backend, the fallback pair).
    stages.finish.publish(makeRecord({ policy: 'x', backend: 'y', model: 'z' }));
    stages.finish.publish(
      makeRecord({
        policy: 'x',
        backend: 'y',
        attempts: [
          { backend: 'q', status: 503, error: 'e', ms: 1 },
          { backend: 'y', status: 200, error: null, ms: 1 },
        ],
        outcome: 'fallback_ok',
      }),
    );
    const before = await ownSeriesLines(metrics);
    for (let i = 0; i < 500; i++) {
      const rnd = () => Math.random().toString(36).slice(2);
      const b = `b-${rnd()}`;
      stages.finish.publish(
        makeRecord({
          policy: `p-${rnd()}`,
          backend: b,
          model: `m-${rnd()}`,
          outcome: 'fallback_ok',
          attempts: [
            { backend: `c-${rnd()}`, status: 503, error: 'e', ms: 1 },
            { backend: b, status: 200, error: null, ms: 1 },
          ],
        }),
      );
    }
    const after = await ownSeriesLines(metrics);
    expect(after).toBe(before);
    expect(
      await value(metrics, 'signalman_requests_total', { policy: 'other', backend: 'other', outcome: 'fallback_ok', endpoint: 'chat' }),
    ).toBe(501);
  });

  it('never resets a counter when the known sets are reloaded', async () => {
    stages.finish.publish(makeRecord());
    metrics.configReloaded(true, 1);
    metrics.setKnown({ policies: ['auto', 'new-policy'], backends: ['weak', 'strong', 'new-backend'] });
    metrics.configReloaded(true, 2);
    metrics.configReloaded(false, 2);
    stages.finish.publish(makeRecord());
    stages.finish.publish(makeRecord({ policy: 'new-policy', backend: 'new-backend' }));
    expect(await value(metrics, 'signalman_requests_total', { policy: 'auto', backend: 'weak', outcome: 'ok', endpoint: 'chat' })).toBe(2);
    expect(
      await value(metrics, 'signalman_requests_total', { policy: 'new-policy', backend: 'new-backend', outcome: 'ok', endpoint: 'chat' }),
    ).toBe(1);
    expect(await value(metrics, 'signalman_config_reloads_total', { result: 'ok' })).toBe(2);
    expect(await value(metrics, 'signalman_config_reloads_total', { result: 'error' })).toBe(1);
    expect(await value(metrics, 'signalman_config_generation', {})).toBe(2);
    // Forgetting a policy leaves its past series in place; new traffic for it is 'other'.
    metrics.setKnown({ policies: ['auto'], backends: ['weak'] });
    stages.finish.publish(makeRecord({ policy: 'new-policy', backend: 'new-backend' }));
    expect(
      await value(metrics, 'signalman_requests_total', { policy: 'new-policy', backend: 'new-backend', outcome: 'ok', endpoint: 'chat' }),
    ).toBe(1);
    expect(await value(metrics, 'signalman_requests_total', { policy: 'other', backend: 'other', outcome: 'ok', endpoint: 'chat' })).toBe(
      1,
    );
  });
});

describe('telemetry sink health', () => {
  it('reads buffered as a gauge and dropped/flushes/written as counters that never decrease', async () => {
    let stats = { buffered: 5, dropped: 2, lastError: null as string | null };
    let counters = { flushes: 3, written: 100 };
    const redis: WatchedSink = { name: 'redis', stats: () => stats, counters: () => counters };
    metrics.watchSink(redis);
    metrics.watchSink(sink);
    expect(await value(metrics, 'signalman_telemetry_buffered_records', { sink: 'redis' })).toBe(5);
    expect(await value(metrics, 'signalman_telemetry_dropped_records_total', { sink: 'redis' })).toBe(2);
    expect(await value(metrics, 'signalman_telemetry_flushes_total', { sink: 'redis' })).toBe(3);
    expect(await value(metrics, 'signalman_telemetry_written_records_total', { sink: 'redis' })).toBe(100);
    expect(await value(metrics, 'signalman_telemetry_dropped_records_total', { sink: 'prometheus' })).toBe(0);
    expect(await value(metrics, 'signalman_telemetry_flushes_total', { sink: 'prometheus' })).toBeUndefined(); // no counters()

    stats = { buffered: 0, dropped: 7, lastError: 'boom' };
    counters = { flushes: 4, written: 150 };
    expect(await value(metrics, 'signalman_telemetry_buffered_records', { sink: 'redis' })).toBe(0);
    expect(await value(metrics, 'signalman_telemetry_dropped_records_total', { sink: 'redis' })).toBe(7);
    expect(await value(metrics, 'signalman_telemetry_written_records_total', { sink: 'redis' })).toBe(150);
    expect(await value(metrics, 'signalman_telemetry_flushes_total', { sink: 'redis' })).toBe(4);

    // The sink is replaced (reload) and starts again from 0: the exported counters carry on upward.
    stats = { buffered: 1, dropped: 1, lastError: null };
    counters = { flushes: 1, written: 10 };
    expect(await value(metrics, 'signalman_telemetry_dropped_records_total', { sink: 'redis' })).toBe(8);
    expect(await value(metrics, 'signalman_telemetry_flushes_total', { sink: 'redis' })).toBe(5);
    expect(await value(metrics, 'signalman_telemetry_written_records_total', { sink: 'redis' })).toBe(160);

    // A sink whose stats() throws does not break the scrape.
    metrics.watchSink({
      name: 'broken',
      stats: () => {
        throw new Error('x');
      },
      counters: () => {
        throw new Error('y');
      },
    });
    await expect(metrics.metrics()).resolves.toContain('signalman_telemetry_buffered_records{sink="broken"} 0');
  });

  it('PrometheusSink is a TelemetrySink with nothing buffered', async () => {
    expect(sink.name).toBe('prometheus');
    expect(sink.stats()).toEqual({ buffered: 0, dropped: 0, lastError: null });
    await sink.flush(10);
    expect(sink.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await sink.metrics()).toContain('# TYPE signalman_requests_total counter');
    // After detach nothing more is counted.
    sink.detach(stages);
    stages.finish.publish(makeRecord());
    expect(
      await value(metrics, 'signalman_requests_total', { policy: 'auto', backend: 'weak', outcome: 'ok', endpoint: 'chat' }),
    ).toBeUndefined();
    sink.attach(stages);
  });
});

describe('exposition', () => {
  it('passes promtool check metrics', async () => {
    const which = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
    if (which.error !== undefined) {
      throw new Error(
        "promtool not found: install Debian's `prometheus` package (apt-get install -y --no-install-recommends prometheus); CI installs it",
      );
    }
    // Every metric with at least one series, and the odd shapes (none/other, shadow, sinks).
    stages.finish.publish(
      makeRecord({
        tokens_estimated: true,
        shadow: { policy: 'cheap', chosen: 'weak', agree: true, cost_usd: 0.001, counterfactual_cost_usd: 0.01, error: null },
      }),
    );
    stages.finish.publish(fallbackRecord('strong', 'weak'));
    stages.finish.publish(
      makeRecord({ policy: null, backend: null, reason: null, guard: null, attempts: [], outcome: 'rejected', status: 503 }),
    );
    stages.attemptStart.publish({ id: 'x', backend: 'weak' });
    metrics.configReloaded(true, 1);
    metrics.feedbackReceived('auto', 'label');
    metrics.watchSink({
      name: 'redis',
      stats: () => ({ buffered: 1, dropped: 0, lastError: null }),
      counters: () => ({ flushes: 1, written: 2 }),
    });
    const text = await sink.metrics();
    const res = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    const problems = `${res.stdout}${res.stderr}`.split('\n').filter((l) => l.trim() !== '');
    expect(problems).toEqual([]);
    expect(res.status).toBe(0);
  });
});
