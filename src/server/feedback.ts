// POST /v1/feedback: attaches an outcome to a finished request's decision. Idempotent per request id and
// source (a retry replaces, never duplicates); counted in metrics; with online learning on for the
// request's policy, the first feedback from a source becomes a labelled routing row on every replica.
import { z } from 'zod';
import { E } from '../errors.js';
import type { Telemetry } from '../telemetry/telemetry.js';
import type { ApiHandler } from './front-door.js';
import { paramOf } from './openai-schema.js';
import { isBug, sendError, sendJson, serverTiming, toSignalmanError } from './respond.js';

const FeedbackBody = z
  .object({
    request_id: z.string().min(1).max(128),
    score: z.number().min(0).max(1).optional(),
    label: z.enum(['good', 'bad']).optional(),
    comment: z.string().max(2_000).optional(),
    source: z
      .string()
      .regex(/^[A-Za-z0-9._:-]{1,64}$/, 'letters, digits and . _ : - (at most 64)')
      .default('default'),
  })
  .strict()
  .refine((b) => (b.score === undefined) !== (b.label === undefined), {
    message: "give either 'score' (0..1) or 'label' (good | bad)",
    path: ['score'],
  });

/** Turns a feedback into a row for the router (online learning); null when nobody learns. */
export interface FeedbackLearner {
  isLearning(policy: string): boolean;
  learn(policy: string, requestId: string, backend: string, score: number): Promise<string>;
}

export const feedbackHandler =
  (telemetry: Telemetry, learning: FeedbackLearner | null): ApiHandler =>
  async (req) => {
    try {
      const parsed = FeedbackBody.safeParse(req.body);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        // An unknown field is named as the bad one, not as the body around it.
        const path = issue?.code === 'unrecognized_keys' ? [...issue.path, ...issue.keys.slice(0, 1)] : (issue?.path ?? []);
        const param = path.length > 0 ? paramOf(path) : null;
        throw E.invalidRequest(`${param ?? 'body'}: ${issue?.message ?? 'invalid feedback'}`, param);
      }
      const fb = parsed.data;
      const rec = await store(telemetry.findRecord(fb.request_id));
      if (rec === null) {
        throw E.notFound(`no request '${fb.request_id}' is on record (unknown, or older than the records kept)`, 'request_id');
      }
      const status = await store(
        telemetry.putFeedback(fb.request_id, fb.source, { score: fb.score, label: fb.label, comment: fb.comment }),
      );
      telemetry.prometheus?.gateway.feedbackReceived(rec.policy, fb.score !== undefined ? 'score' : 'label');
      let learned: string | null = null;
      // A new source's first word on an answered request becomes a labelled row (the answering backend's score).
      const answered = rec.outcome === 'ok' || rec.outcome === 'fallback_ok';
      if (
        status === 'created' &&
        answered &&
        learning !== null &&
        rec.policy !== null &&
        rec.backend !== null &&
        learning.isLearning(rec.policy)
      ) {
        learned = await store(learning.learn(rec.policy, rec.id, rec.backend, fb.score ?? (fb.label === 'good' ? 1 : 0)));
      }
      const out = { object: 'signalman.feedback', request_id: fb.request_id, source: fb.source, status, learned };
      sendJson(req.res, req.id, 200, out, serverTiming(performance.now() - req.startedAt, 0, 0));
    } catch (err) {
      const e = toSignalmanError(err);
      if (isBug(e)) throw err; // the front door logs it and answers 500
      sendError(req.res, req.id, e, serverTiming(performance.now() - req.startedAt, 0, 0));
    }
  };

/** A store that cannot answer (Redis down) is a 503 the client may retry, not an internal error. */
const store = <T>(p: Promise<T>): Promise<T> =>
  p.catch((err: unknown) => {
    throw E.notReady(`the feedback store is unavailable (${(err as Error)?.message ?? String(err)}); retry later`);
  });
