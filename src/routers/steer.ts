// Online steering of the utility objective's lambda (quality traded per USD): toward a target share of
// calls to one backend, or a target spend per hour. Log-space stochastic approximation: lambda moves
// multiplicatively, so it needs no knowledge of the scale of costs or quality gaps.
import type { z } from 'zod';
import type { SteerConfig } from '../config/schema.js';

type Steer = z.infer<typeof SteerConfig>;

const MIN_LOG = Math.log(1e-6);
const MAX_LOG = Math.log(1e9);

export class SteerController {
  private logLambda: number;
  private readonly eta: number;
  private readonly costs: Array<{ t: number; usd: number }> = [];
  private costSum = 0;
  private observed = 0;
  private lastMs: number | null = null;

  constructor(
    readonly cfg: Steer,
    initialLambda: number,
  ) {
    this.logLambda = Math.log(Math.max(initialLambda, 1e-3));
    // A step of ~5/window: the share settles within a few windows and wobbles little around it.
    this.eta = cfg.target === 'share' ? 5 / cfg.window : 0.5;
  }

  lambda(): number {
    return Math.exp(this.logLambda);
  }

  /** After each routed decision: which backend was chosen and its expected cost. */
  observe(chosen: string, expectedCostUsd: number, nowMs: number): void {
    this.observed++;
    if (this.cfg.target === 'share') {
      // Quantile tracking: choosing the steered backend raises the price of quality, else lowers it.
      const hit = chosen === this.cfg.backend ? 1 : 0;
      this.logLambda += this.eta * (hit - this.cfg.share);
    } else {
      const windowMs = this.cfg.window_s * 1000;
      this.costs.push({ t: nowMs, usd: expectedCostUsd });
      this.costSum += expectedCostUsd;
      while (this.costs.length > 0 && (this.costs[0] as { t: number }).t < nowMs - windowMs) {
        this.costSum -= (this.costs.shift() as { usd: number }).usd;
      }
      // Until a full window has passed, extrapolate from the time seen so far (at least 1 s).
      const spanMs = Math.max(1000, Math.min(windowMs, nowMs - (this.costs[0]?.t ?? nowMs)));
      const perHour = (this.costSum * 3_600_000) / spanMs;
      const ratio = perHour / this.cfg.usd_per_hour;
      // The spend estimate lags by about half a window, so lambda may move only a fraction of its error per
      // window's worth of time; faster and the controller chases its own delay and overshoots.
      const dt = this.lastMs === null ? 0 : Math.min(windowMs, nowMs - this.lastMs);
      this.lastMs = nowMs;
      this.logLambda += this.eta * (dt / windowMs) * Math.max(-1, Math.min(1, Math.log(Math.max(ratio, 1e-9))));
    }
    this.logLambda = Math.min(MAX_LOG, Math.max(MIN_LOG, this.logLambda));
  }

  stats(): { lambda: number; observed: number } {
    return { lambda: this.lambda(), observed: this.observed };
  }
}
