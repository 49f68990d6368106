import { z } from 'zod';
import { defineRouter, type CandidateScore } from './types.js';

/** Always prefers one backend (the named one, else the first candidate); the others keep the fallback order. */
export default defineRouter({
  type: 'fixed',
  options: z
    .object({
      type: z.literal('fixed'),
      backend: z.string().optional().describe('Candidate to prefer; defaults to the first candidate.'),
    })
    .strict()
    .describe('No scoring: prefer one backend. For plain proxying and for tests.'),
  async create(opts, ctx) {
    const preferred = opts.backend ?? ctx.candidates[0]?.backend;
    if (preferred === undefined || !ctx.candidates.some((c) => c.backend === preferred)) {
      throw new Error(`router 'fixed' prefers '${String(preferred)}', which is not one of the policy's candidates`);
    }
    // Scores depend only on the candidate list, so build them once per candidate list and reuse.
    let lastCandidates: readonly string[] | null = null;
    let lastScores: readonly CandidateScore[] = [];
    return {
      type: 'fixed',
      needsEmbedding: false,
      score(q) {
        if (q.candidates !== lastCandidates) {
          lastScores = q.candidates.map((backend) => ({
            backend,
            quality: backend === preferred ? 1 : 0,
            evidence: { rule: backend === preferred ? 'preferred' : 'other' },
          }));
          lastCandidates = q.candidates;
        }
        return lastScores;
      },
    };
  },
});
