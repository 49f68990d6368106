// Routing state that must outlive one config: sticky conversations and steering controllers. Kept per
// policy name by the RuntimeRef, so a reload neither forgets conversations nor resets a tuned lambda.
import type { PolicyConfig } from '../config/schema.js';
import { SteerController } from './steer.js';
import { StickyStore } from './sticky.js';

export class RoutingState {
  private readonly sticky = new Map<string, StickyStore>();
  private readonly steer = new Map<string, { key: string; ctl: SteerController }>();

  stickyFor(p: PolicyConfig): StickyStore {
    let s = this.sticky.get(p.name);
    if (!s) {
      s = new StickyStore(p.sticky.max_entries);
      this.sticky.set(p.name, s);
    }
    return s;
  }

  /** The policy's controller; a changed steer section starts a fresh one. */
  steerFor(p: PolicyConfig): SteerController | null {
    if (p.steer === undefined) return null;
    const key = JSON.stringify(p.steer);
    const hit = this.steer.get(p.name);
    if (hit && hit.key === key) return hit.ctl;
    const lambda = p.objective.kind === 'utility' ? p.objective.lambda : 0;
    const ctl = new SteerController(p.steer, lambda > 0 ? lambda : 1);
    this.steer.set(p.name, { key, ctl });
    return ctl;
  }
}
