// Prometheus metrics for the gateway: one prom-client Registry for the life of the process, fed from the
// finished RequestRecord (a pure function of the record, so what Redis stores and what Prometheus counts
// agree) plus the attempt stages for the in-flight gauge.
//
// Label values come only from config (setKnown) and from fixed enums, never from the client (the model
// it asked for, a key id): a client must not be able to grow the series count. Unknown → 'other',
// null → 'none'. A config reload replaces the known sets but never resets a series.
//
// Hot path: label-bound children are cached in nested Maps keyed by the (already normalised) label
// values, so after warm-up a finished request costs a few Set/Map lookups, and no key string is built per
// label set. Counter increments and histogram observations are tallied in plain numbers and handed to
// prom-client when it is scraped (its own inc/observe hash the label set on every call); prom-client still
// keeps the series and writes the exposition. Measured (bench/sinks.ts): ~3.5 -> ~1.5 µs per record.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ScoringThreadStats } from '../routers/scoring-threads.js';
import { ENDPOINTS, OUTCOMES, type RequestRecord } from './record.js';
import type { SinkStats, TelemetrySink } from './sink.js';

/** Resolves 0.5 ms (routing, overhead) and 60 s+ (slow completions, long streams) alike. */
export const SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** The decision reasons a router reports; anything else is 'other' (null, not routed, is not counted). */
export const REASONS = ['objective', 'guard_fallback', 'fixed', 'sticky', 'no_text', 'budget_downgrade'] as const;

export const OTHER = 'other';
export const NONE = 'none';

/** A sink whose health is exported; `counters` is optional (sinks that batch writes have it). */
export type WatchedSink = Pick<TelemetrySink, 'name' | 'stats'> & { counters?(): { flushes: number; written: number } };

/**
 * Children of one metric, bound to label values, cached in a tree of Maps (one level per label), so a
 * lookup allocates nothing. Only normalised (bounded) values reach it, so the tree stays bounded too.
 */
class Children<C> {
  private readonly root = new Map<string, unknown>();
  constructor(
    private readonly depth: 1 | 2 | 3 | 4,
    private readonly bind: (values: string[]) => C,
  ) {}

  get(a: string, b = '', c = '', d = ''): C {
    let m = this.root;
    let key = a;
    if (this.depth >= 2) {
      m = sub(m, a);
      key = b;
    }
    if (this.depth >= 3) {
      m = sub(m, b);
      key = c;
    }
    if (this.depth >= 4) {
      m = sub(m, c);
      key = d;
    }
    let child = m.get(key) as C | undefined;
    if (child === undefined) {
      child = this.bind([a, b, c, d].slice(0, this.depth));
      m.set(key, child);
    }
    return child;
  }
}

function sub(m: Map<string, unknown>, k: string): Map<string, unknown> {
  let n = m.get(k) as Map<string, unknown> | undefined;
  if (n === undefined) m.set(k, (n = new Map<string, unknown>()));
  return n;
}

/**
 * A counter child whose increments are summed in a plain number and handed to prom-client at scrape time.
 * prom-client hashes the label set on every inc (~0.3 µs measured); once per series per scrape is enough.
 */
class Tally {
  private pending = 0;
  constructor(private readonly child: Counter.Internal) {}
  inc(v = 1): void {
    this.pending += v;
  }
  flush(): void {
    if (this.pending === 0) return;
    this.child.inc(this.pending);
    this.pending = 0;
  }
}
const tallies = new WeakMap<Counter<string>, Tally[]>();
const counterChildren = (c: Counter<string>, depth: 1 | 2 | 3 | 4) =>
  new Children(depth, (v) => {
    const t = new Tally(c.labels(...v));
    tallies.get(c)?.push(t);
    return t;
  });

/** prom-client's own record of one histogram series (lib/histogram.js: hashMap values), which a tally adds into. */
interface HistogramSeries {
  labels: object;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}
const seriesOf = (h: Histogram<string>): Record<string, HistogramSeries> | undefined =>
  (h as unknown as { hashMap?: Record<string, HistogramSeries> }).hashMap;

/**
 * A histogram child that counts its observations per bucket in plain numbers and adds them into prom-client's
 * series at scrape time. prom-client's observe() builds a label object, validates and hashes it on every
 * call (four or more per request); here an observation is a bucket search and three additions.
 */
class HistogramTally {
  /** Per bucket, not cumulative (as prom-client keeps them); past the last bound only sum and count grow. */
  private readonly counts: number[] = new Array<number>(SECONDS_BUCKETS.length).fill(0);
  private sum = 0;
  private count = 0;
  constructor(
    private readonly h: Histogram<string>,
    private readonly labels: Record<string, string>,
  ) {
    h.zero(labels); // the series exists from its first observation on, as with observe()
  }
  /** Seconds; only finite, non-negative values reach it. */
  observe(v: number): void {
    let i = 0;
    while (i < SECONDS_BUCKETS.length && v > SECONDS_BUCKETS[i]!) i++;
    if (i < SECONDS_BUCKETS.length) this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
  /** Adds what was observed since the last scrape into prom-client's series (`byLabels`: its series by label object). */
  flush(byLabels: Map<object, HistogramSeries>): void {
    if (this.count === 0) return;
    let series = byLabels.get(this.labels);
    if (series === undefined) {
      this.h.zero(this.labels); // the histogram was reset: make the series again
      series = Object.values(seriesOf(this.h) ?? {}).find((x) => x.labels === this.labels);
      if (series === undefined) return;
    }
    for (let i = 0; i < this.counts.length; i++) {
      if (this.counts[i] === 0) continue;
      series.bucketValues[SECONDS_BUCKETS[i]!] = (series.bucketValues[SECONDS_BUCKETS[i]!] ?? 0) + this.counts[i]!;
      this.counts[i] = 0;
    }
    series.sum += this.sum;
    series.count += this.count;
    this.sum = 0;
    this.count = 0;
  }
}
const histogramChildren = (h: Histogram<string>, labelNames: readonly string[], own: HistogramTally[]) =>
  new Children(labelNames.length as 1 | 2 | 3 | 4, (v) => {
    const labels: Record<string, string> = {};
    labelNames.forEach((name, i) => (labels[name] = v[i]!));
    const t = new HistogramTally(h, labels);
    own.push(t);
    return t;
  });

/** Counters take only finite, non-negative increments (prom-client throws otherwise, and we must not). */
const countable = (x: number | null): x is number => x !== null && Number.isFinite(x) && x >= 0;

export class GatewayMetrics {
  readonly registry = new Registry();
  get contentType(): string {
    return this.registry.contentType;
  }

  private policies = new Set<string>();
  private backends = new Set<string>();
  private readonly endpoints = new Set<string>(ENDPOINTS);
  private readonly outcomes = new Set<string>(OUTCOMES);
  private readonly reasons = new Set<string>(REASONS);

  private readonly requests: Children<Tally>;
  private readonly duration: Children<HistogramTally>;
  private readonly ttft: Children<HistogramTally>;
  private readonly upstream: Children<HistogramTally>;
  private readonly routing: Children<HistogramTally>;
  private readonly overhead: Children<HistogramTally>;
  private readonly tokens: Children<Tally>;
  private readonly cost: Children<Tally>;
  private readonly counterfactual: Children<Tally>;
  private readonly estimated: Children<Tally>;
  private readonly decisions: Children<Tally>;
  private readonly guard: Children<Tally>;
  private readonly attempts: Children<Tally>;
  private readonly retries: Children<Tally>;
  private readonly fallbacks: Children<Tally>;
  private readonly feedback: Children<Tally>;
  private readonly shadowDecisions: Children<Tally>;
  private readonly shadowCost: Children<Tally>;
  private readonly shadowCounterfactual: Children<Tally>;
  private readonly keyRequests: Children<Tally>;
  private readonly keyCost: Children<Tally>;
  private readonly keyTokens: Children<Tally>;
  private keys = new Set<string>();
  private readonly reloads: Counter<'result'>;
  private readonly generation: Gauge;

  /** Upstream attempts started and not yet ended, per backend name. */
  private readonly inflight = new Map<string, number>();

  private readonly sinks = new Map<string, WatchedSink>();
  private scoringStats: (() => ScoringThreadStats | null) | null = null;
  /** Last value read from each sink's cumulative counts, to export deltas as monotonic counters. */
  private readonly seen = new Map<string, { dropped: number; flushes: number; written: number }>();

  constructor() {
    const r = this.registry;
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) => {
      const own: Tally[] = [];
      const c = new Counter<L>({
        name,
        help,
        labelNames,
        registers: [r],
        collect: () => {
          for (const t of own) t.flush();
        },
      });
      tallies.set(c as Counter<string>, own);
      return c;
    };
    /** A histogram fed through tallies, flushed into prom-client when it is scraped. */
    const histogram = <L extends string>(name: string, help: string, labelNames: L[]): Children<HistogramTally> => {
      const own: HistogramTally[] = [];
      const h = new Histogram<L>({
        name,
        help,
        labelNames,
        buckets: SECONDS_BUCKETS,
        registers: [r],
        collect() {
          const byLabels = new Map<object, HistogramSeries>();
          for (const series of Object.values(seriesOf(this) ?? {})) byLabels.set(series.labels, series);
          for (const t of own) t.flush(byLabels);
        },
      });
      // Tallies add into prom-client's own series (not part of its typed API): fail at start, not silently, if that moved.
      if (typeof seriesOf(h as Histogram<string>) !== 'object') throw new Error(`prom-client keeps no series map on ${name}`);
      return histogramChildren(h as Histogram<string>, labelNames, own);
    };

    this.requests = counterChildren(
      counter('signalman_requests_total', 'Client requests finished, by policy, answering backend, outcome and endpoint.', [
        'policy',
        'backend',
        'outcome',
        'endpoint',
      ]),
      4,
    );
    this.duration = histogram(
      'signalman_request_duration_seconds',
      'Time from request arrival to the end of the response (whole stream included).',
      ['policy', 'backend', 'stream'],
    );
    this.ttft = histogram(
      'signalman_time_to_first_token_seconds',
      'Time from request arrival to the first byte of the answer written to the client (streams and plain responses).',
      ['policy', 'backend'],
    );
    this.upstream = histogram(
      'signalman_upstream_duration_seconds',
      'Time of one upstream attempt (successful or failed), by the backend tried.',
      ['backend'],
    );
    this.routing = histogram(
      'signalman_routing_duration_seconds',
      'Time to route a request (embed, score, decide), routed requests only.',
      ['policy'],
    );
    this.overhead = histogram('signalman_gateway_overhead_seconds', 'Gateway time per request: total duration minus time spent upstream.', [
      'policy',
    ]);
    this.tokens = counterChildren(
      counter('signalman_tokens_total', 'Tokens billed, as reported by the upstream or estimated (see signalman_tokens_estimated_total).', [
        'policy',
        'backend',
        'kind',
      ]),
      3,
    );
    this.cost = counterChildren(counter('signalman_cost_usd_total', 'Cost of the answered requests in USD.', ['policy', 'backend']), 2);
    this.counterfactual = counterChildren(
      counter(
        'signalman_counterfactual_cost_usd_total',
        "Cost in USD had every request gone to its policy's most expensive candidate (= actual cost when not routed). " +
          'Savings = sum by (policy) (signalman_counterfactual_cost_usd_total) - sum by (policy) (signalman_cost_usd_total).',
        ['policy'],
      ),
      1,
    );
    this.estimated = counterChildren(
      counter(
        'signalman_tokens_estimated_total',
        'Tokens (prompt + completion) estimated from characters because the upstream reported no usage; also in signalman_tokens_total.',
        ['backend'],
      ),
      1,
    );
    this.decisions = counterChildren(
      counter(
        'signalman_routing_decisions_total',
        'Routing decisions, by policy, chosen backend and reason (objective, guard_fallback, fixed, sticky, no_text, other).',
        ['policy', 'backend', 'reason'],
      ),
      3,
    );
    this.guard = counterChildren(counter('signalman_guard_verdicts_total', 'Domain guard verdicts, by policy.', ['policy', 'verdict']), 2);
    this.attempts = counterChildren(
      counter('signalman_upstream_attempts_total', 'Upstream attempts, by backend and result (ok or error).', ['backend', 'result']),
      2,
    );
    this.retries = counterChildren(
      counter('signalman_retries_total', 'Upstream attempts on the same backend as the attempt before them.', ['backend']),
      1,
    );
    this.fallbacks = counterChildren(
      counter(
        'signalman_fallbacks_total',
        'Upstream attempts on another backend than the attempt before them, by policy, from and to backend.',
        ['policy', 'from', 'to'],
      ),
      3,
    );
    this.feedback = counterChildren(
      counter('signalman_feedback_total', 'Feedback received for finished requests, by policy and kind (score or label).', [
        'policy',
        'kind',
      ]),
      2,
    );
    this.shadowDecisions = counterChildren(
      counter(
        'signalman_shadow_decisions_total',
        'Shadow policy decisions, by live policy, shadow policy and whether the shadow chose the live backend.',
        ['policy', 'shadow', 'agree'],
      ),
      3,
    );
    this.shadowCost = counterChildren(
      counter('signalman_shadow_cost_usd_total', "Cost in USD the shadow policy's choices would have had for the same tokens.", [
        'policy',
        'shadow',
      ]),
      2,
    );
    this.shadowCounterfactual = counterChildren(
      counter(
        'signalman_shadow_counterfactual_cost_usd_total',
        "Cost in USD of the shadow policy's most expensive candidate for the same tokens.",
        ['policy', 'shadow'],
      ),
      2,
    );
    const inflight = this.inflight;
    const label = (b: string) => this.backend(b);
    new Gauge({
      name: 'signalman_inflight_requests',
      help: 'Upstream attempts in flight, by backend.',
      labelNames: ['backend'],
      registers: [r],
      collect() {
        this.reset();
        const by = new Map<string, number>();
        for (const [b, n] of inflight) by.set(label(b), (by.get(label(b)) ?? 0) + n);
        for (const [b, n] of by) this.labels(b).set(n);
      },
    });
    this.keyRequests = counterChildren(
      counter('signalman_key_requests_total', 'Client requests by client key id (keys: in the config) and outcome.', ['key', 'outcome']),
      2,
    );
    this.keyCost = counterChildren(counter('signalman_key_cost_usd_total', 'Cost in USD of the answers, by client key id.', ['key']), 1);
    this.keyTokens = counterChildren(
      counter('signalman_key_tokens_total', 'Tokens (prompt + completion) billed, by client key id.', ['key']),
      1,
    );
    this.reloads = counter('signalman_config_reloads_total', 'Config loads and reloads, by result (ok or error).', ['result']);
    this.generation = new Gauge({
      name: 'signalman_config_generation',
      help: 'Generation of the config in force (bumped by each successful reload).',
      registers: [r],
    });

    // Telemetry health is read from the sinks at scrape time. buffered is a level → Gauge. dropped,
    // flushes and written are cumulative counts → Counters, incremented in collect() by the growth
    // since the last scrape: a Gauge would lose counter semantics (rate(), reset handling), and a
    // counter must never go down, so a sink whose count went backwards (replaced on reload) is read
    // as a reset and its whole new value added, as rate() would treat it.
    const sinks = this.sinks;
    new Gauge({
      name: 'signalman_telemetry_buffered_records',
      help: 'Records waiting in a telemetry sink to be written.',
      labelNames: ['sink'],
      registers: [r],
      collect() {
        for (const [name, s] of sinks) this.labels(name).set(safeStats(s).buffered);
      },
    });
    const deltaCounter = (
      name: string,
      help: string,
      read: (s: WatchedSink) => number | undefined,
      key: 'dropped' | 'flushes' | 'written',
    ) => {
      const seen = this.seen;
      new Counter({
        name,
        help,
        labelNames: ['sink'],
        registers: [r],
        collect() {
          for (const [sinkName, s] of sinks) {
            let now: number | undefined;
            try {
              now = read(s);
            } catch {
              continue; // a sink that cannot report must not break the scrape
            }
            if (now === undefined || !countable(now)) continue;
            const last = seen.get(sinkName) ?? { dropped: 0, flushes: 0, written: 0 };
            seen.set(sinkName, last);
            const delta = now >= last[key] ? now - last[key] : now;
            last[key] = now;
            this.labels(sinkName).inc(delta); // inc(0) too: the series exists from the first scrape
          }
        },
      });
    };
    deltaCounter(
      'signalman_telemetry_dropped_records_total',
      'Records a telemetry sink dropped (buffer full, or a write that could not be retried).',
      (s) => safeStats(s).dropped,
      'dropped',
    );
    deltaCounter('signalman_telemetry_flushes_total', 'Batched writes a telemetry sink made.', (s) => s.counters?.().flushes, 'flushes');
    deltaCounter('signalman_telemetry_written_records_total', 'Records a telemetry sink wrote.', (s) => s.counters?.().written, 'written');

    // Scoring threads of the config in force, read at scrape time. A reload starts a new pool whose counts
    // start at 0: exported as counter growth since the last scrape, a count that went back read as a reset.
    const threads = () => {
      try {
        return this.scoringStats?.() ?? null;
      } catch {
        return null; // must not break the scrape
      }
    };
    new Gauge({
      name: 'signalman_scoring_threads',
      help: 'Scoring threads (server.routing_threads) of the config in force, configured and alive.',
      labelNames: ['state'],
      registers: [r],
      collect() {
        const s = threads();
        this.labels('configured').set(s?.threads ?? 0);
        this.labels('alive').set(s?.alive ?? 0);
      },
    });
    const grown = { scored: 0, declined: 0, idle: 0, lost: 0 };
    const growth = (k: keyof typeof grown, now: number): number => {
      const d = now >= grown[k] ? now - grown[k] : now;
      grown[k] = now;
      return d;
    };
    new Counter({
      name: 'signalman_scoring_thread_texts_total',
      help: 'Prompt texts of routed requests by where they were scored: worker; declined (every worker busy or restarting: the event loop scored it); idle (the event loop was not busy enough for a hand-off to pay: it scored it).',
      labelNames: ['where'],
      registers: [r],
      collect() {
        const s = threads();
        this.labels('worker').inc(growth('scored', s?.scored ?? 0));
        this.labels('declined').inc(growth('declined', s?.declined ?? 0));
        this.labels('idle').inc(growth('idle', s?.idle ?? 0));
      },
    });
    new Counter({
      name: 'signalman_scoring_threads_lost_total',
      help: 'Scoring threads that crashed or exited (each is restarted; its requests were scored on the event loop).',
      registers: [r],
      collect() {
        this.inc(growth('lost', threads()?.lost ?? 0));
      },
    });

    collectDefaultMetrics({ register: r, prefix: 'signalman_' });
    // prom-client exports these three totals as gauges named *_total, which `promtool check metrics`
    // rejects (and rate() would misread). The per-type gauges without the suffix stay: sum() them.
    for (const name of ['active_handles_total', 'active_requests_total', 'active_resources_total'])
      r.removeSingleMetric(`signalman_nodejs_${name}`);
  }

  /** The policies and backends of the config in force: on every (re)load. Series already made stay. */
  setKnown(known: { policies: readonly string[]; backends: readonly string[]; keys?: readonly string[] }): void {
    this.policies = new Set(known.policies);
    this.backends = new Set(known.backends);
    this.keys = new Set(known.keys ?? []);
  }

  /** Where the scoring threads of the config in force report from (null: none configured). */
  watchScoring(read: () => ScoringThreadStats | null): void {
    this.scoringStats = read;
  }

  configReloaded(ok: boolean, generation: number): void {
    this.reloads.labels(ok ? 'ok' : 'error').inc();
    // The caller passes the generation in force: unchanged after a failed reload.
    if (Number.isFinite(generation)) this.generation.set(generation);
  }

  feedbackReceived(policy: string | null, kind: 'score' | 'label'): void {
    this.feedback.get(this.policy(policy), kind === 'score' || kind === 'label' ? kind : OTHER).inc();
  }

  /** Exports the sink's buffered/dropped/flushes/written at scrape time; a sink of the same name replaces it. */
  watchSink(sink: WatchedSink): void {
    this.sinks.set(sink.name, sink);
  }

  unwatchSink(sink: WatchedSink): void {
    if (this.sinks.get(sink.name) === sink) this.sinks.delete(sink.name);
  }

  /**
   * In flight per backend, as plain numbers keyed by the backend's own name (names come from the config,
   * so the map is bounded) and labelled at scrape time: the pipeline publishes an end for every attempt
   * it starts, and a reload that renames a backend cannot leave a +1 on the wrong series.
   */
  attemptStarted(_id: string, backend: string): void {
    this.inflight.set(backend, (this.inflight.get(backend) ?? 0) + 1);
  }

  attemptEnded(_id: string, backend: string): void {
    const n = this.inflight.get(backend);
    if (n !== undefined && n > 0) this.inflight.set(backend, n - 1);
  }

  /** Everything about one finished request. Never throws on a record the schema accepts. */
  onFinish(rec: RequestRecord): void {
    const policy = this.policy(rec.policy);
    const backend = this.backend(rec.backend);
    const outcome = this.outcomes.has(rec.outcome) ? rec.outcome : OTHER;
    const endpoint = this.endpoints.has(rec.endpoint) ? rec.endpoint : OTHER;

    this.requests.get(policy, backend, outcome, endpoint).inc();
    // A series is made on its first valid observation only, as prom-client's observe() would (timed() first).
    if (timed(rec.total_ms)) this.duration.get(policy, backend, rec.stream ? 'true' : 'false').observe(rec.total_ms / 1000);
    if (rec.ttft_ms !== null && timed(rec.ttft_ms)) this.ttft.get(policy, backend).observe(rec.ttft_ms / 1000);
    const overhead = Math.max(0, rec.total_ms - rec.upstream_ms);
    if (timed(overhead)) this.overhead.get(policy).observe(overhead / 1000);

    if (rec.reason !== null) {
      if (timed(rec.route_ms)) this.routing.get(policy).observe(rec.route_ms / 1000);
      this.decisions.get(policy, backend, this.reasons.has(rec.reason) ? rec.reason : OTHER).inc();
    }
    if (rec.guard !== null) this.guard.get(policy, rec.guard.in_domain ? 'in_domain' : 'out_of_domain').inc();

    let estimated = 0;
    if (countable(rec.prompt_tokens)) {
      this.tokens.get(policy, backend, 'prompt').inc(rec.prompt_tokens);
      estimated += rec.prompt_tokens;
    }
    if (countable(rec.completion_tokens)) {
      this.tokens.get(policy, backend, 'completion').inc(rec.completion_tokens);
      estimated += rec.completion_tokens;
    }
    if (rec.tokens_estimated && estimated > 0) this.estimated.get(backend).inc(estimated);
    if (countable(rec.cost_usd)) this.cost.get(policy, backend).inc(rec.cost_usd);
    if (countable(rec.counterfactual_cost_usd)) this.counterfactual.get(policy).inc(rec.counterfactual_cost_usd);

    let prev: string | null = null;
    for (const a of rec.attempts) {
      const b = this.backend(a.backend);
      this.attempts.get(b, a.error === null ? 'ok' : 'error').inc();
      if (timed(a.ms)) this.upstream.get(b).observe(a.ms / 1000);
      if (prev !== null) {
        if (a.backend === prev) this.retries.get(b).inc();
        else this.fallbacks.get(policy, this.backend(prev), b).inc();
      }
      prev = a.backend;
    }

    // Per client key (ids from the config: bounded), only once keys are configured.
    if (rec.key_id !== null) {
      const key = this.key(rec.key_id);
      this.keyRequests.get(key, outcome).inc();
      if (countable(rec.cost_usd)) this.keyCost.get(key).inc(rec.cost_usd);
      if (estimated > 0) this.keyTokens.get(key).inc(estimated);
    }

    const sh = rec.shadow;
    if (sh !== null) {
      const shadow = this.policy(sh.policy);
      if (sh.error === null) this.shadowDecisions.get(policy, shadow, sh.agree ? 'true' : 'false').inc();
      if (countable(sh.cost_usd)) this.shadowCost.get(policy, shadow).inc(sh.cost_usd);
      if (countable(sh.counterfactual_cost_usd)) this.shadowCounterfactual.get(policy, shadow).inc(sh.counterfactual_cost_usd);
    }
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  private key(k: string): string {
    return this.keys.has(k) ? k : OTHER;
  }

  private policy(p: string | null): string {
    return p === null ? NONE : this.policies.has(p) ? p : OTHER;
  }

  private backend(b: string | null): string {
    return b === null ? NONE : this.backends.has(b) ? b : OTHER;
  }
}

/** A time worth observing: a non-finite or negative one (clock trouble) is skipped, not thrown. */
const timed = (ms: number): boolean => Number.isFinite(ms) && ms >= 0;

/** A sink whose stats() throws must not break the scrape. */
function safeStats(s: WatchedSink): SinkStats {
  try {
    return s.stats();
  } catch {
    return { buffered: 0, dropped: 0, lastError: null };
  }
}
