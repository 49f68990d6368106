// POST /v1/route: the decision the gateway would make for a chat request, with each candidate's
// predicted quality, expected cost and utility, and the stage timings. A dry run: nothing is forwarded
// and no sticky or steering state changes.
import type { RoutingState } from '../routers/state.js';
import { permit } from '../auth/keys.js';
import { resolveRoute } from '../routers/resolve.js';
import type { ApiHandler } from './front-door.js';
import { validateBody } from './request-checks.js';
import { isBug, sendError, sendJson, serverTiming, toSignalmanError } from './respond.js';

export const explainRoute =
  (state: RoutingState): ApiHandler =>
  async (req, runtime) => {
    const t0 = performance.now();
    try {
      const body = validateBody('chat', req.body, runtime.config.server);
      const denied = req.key === null || !runtime.policies.has(body.model as string) ? null : permit(req.key, body.model as string, true);
      if (denied !== null) throw denied;
      const { decision } = await resolveRoute({ table: runtime, endpoint: 'chat', body, headers: req.headers, state, dryRun: true });
      const totalMs = performance.now() - t0;
      const timing = serverTiming(performance.now() - req.startedAt, totalMs, 0);
      sendJson(req.res, req.id, 200, { object: 'signalman.route', ...decision, totalMs, generation: runtime.generation }, timing);
    } catch (err) {
      const e = toSignalmanError(err);
      if (isBug(e)) throw err; // the front door logs it and answers 500
      sendError(req.res, req.id, e, serverTiming(performance.now() - req.startedAt, 0, 0));
    }
  };
