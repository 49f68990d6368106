// Per-request fault injection. A spec arrives in the `x-mock-fault` header (JSON) or in a body field
// `mock` (the gateway forwards unknown body fields untouched, so tests can inject faults through it).
import { z } from 'zod';
import { hashSeeded32 } from '../util/hash.js';

const ms = z.number().int().min(0).max(600_000);
const count = z.number().int().min(0).max(1_000_000);

export const FaultSpec = z
  .object({
    latency_ms: ms.optional(), // before response headers
    ttft_ms: ms.optional(), // stream: headers → first chunk; plain: added to latency_ms
    inter_token_ms: ms.optional(),
    status: z.number().int().min(400).max(599).optional(),
    retry_after_s: z.number().min(0).optional(),
    fail_times: count.optional(), // only the first N requests with the same key fail
    key: z.string().min(1).optional(),
    stall: z.boolean().optional(),
    stall_after_chunks: count.optional(),
    cut_after_chunks: count.optional(),
    destroy: z.boolean().optional(),
    // A broken 200: plain, the body is cut in half (truncated) or not JSON at all (garbage); streamed, the
    // event after `corrupt_after_chunks` good ones (default 0) has such data, and the rest follow as usual.
    corrupt: z.enum(['truncated', 'garbage']).optional(),
    corrupt_after_chunks: count.optional(),
    only_models: z.array(z.string()).optional(),
    only_paths: z.array(z.string()).optional(),
  })
  .strict();
export type FaultSpec = z.infer<typeof FaultSpec>;

/** What went wrong in a spec, phrased so the test author knows which field to fix. */
export class FaultSpecError extends Error {
  constructor(
    message: string,
    readonly param: string,
  ) {
    super(message);
    this.name = 'FaultSpecError';
  }
}

/** The failure part of a fault: at most one of these kinds applies, checked in this order. */
export type Failure =
  | { kind: 'destroy' }
  | { kind: 'status'; status: number; retryAfterS: number | null }
  | { kind: 'stall' }
  | { kind: 'stall_after'; chunks: number }
  | { kind: 'cut_after'; chunks: number }
  | { kind: 'corrupt'; how: 'truncated' | 'garbage'; afterChunks: number };

export interface ResolvedFault {
  latencyMs: number;
  ttftMs: number;
  interTokenMs: number;
  failure: Failure | null;
}

export interface FaultDefaults {
  latencyMs: number;
  ttftMs: number;
  interTokenMs: number;
}

function parseSpec(raw: unknown, where: string): FaultSpec {
  const r = FaultSpec.safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue && issue.path.length > 0 ? `${where}.${issue.path.join('.')}` : where;
  throw new FaultSpecError(
    `invalid fault spec in ${field}: ${issue?.message ?? 'invalid'}; ` + `allowed fields: ${Object.keys(FaultSpec.shape).join(', ')}`,
    field,
  );
}

/** Read the spec from the header and/or body (header fields win). Returns null when there is none. */
export function readFaultSpec(header: string | string[] | undefined, bodyMock: unknown): FaultSpec | null {
  let spec: FaultSpec | null = null;
  if (bodyMock !== undefined) spec = parseSpec(bodyMock, 'mock');
  if (typeof header === 'string' && header !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(header);
    } catch {
      throw new FaultSpecError(`header x-mock-fault is not valid JSON: ${header.slice(0, 80)}`, 'x-mock-fault');
    }
    const fromHeader = parseSpec(parsed, 'x-mock-fault');
    spec = spec === null ? fromHeader : { ...spec, ...fromHeader };
  }
  return spec;
}

/** Counts failures per key for `fail_times`; cleared by reset(). */
export class FailCounter {
  private readonly counts = new Map<string, number>();
  /** True while the key has failed fewer than `times` times; counts this failure. */
  take(key: string, times: number): boolean {
    const n = this.counts.get(key) ?? 0;
    if (n >= times) return false;
    this.counts.set(key, n + 1);
    return true;
  }
  clear(): void {
    this.counts.clear();
  }
}

/** Stable key for `fail_times` when the spec names none: the body without its `mock` field. */
function defaultKey(body: unknown): string {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return String(hashSeeded32(JSON.stringify(body) ?? ''));
  const { mock: _omit, ...rest } = body as Record<string, unknown>;
  return String(hashSeeded32(JSON.stringify(rest)));
}

function failureOf(spec: FaultSpec): Failure | null {
  if (spec.destroy === true) return { kind: 'destroy' };
  if (spec.status !== undefined) return { kind: 'status', status: spec.status, retryAfterS: spec.retry_after_s ?? null };
  if (spec.stall === true) return { kind: 'stall' };
  if (spec.stall_after_chunks !== undefined) return { kind: 'stall_after', chunks: spec.stall_after_chunks };
  if (spec.cut_after_chunks !== undefined) return { kind: 'cut_after', chunks: spec.cut_after_chunks };
  if (spec.corrupt !== undefined) return { kind: 'corrupt', how: spec.corrupt, afterChunks: spec.corrupt_after_chunks ?? 0 };
  return null;
}

/**
 * Merge a spec with the process defaults. `only_models`/`only_paths` gate the whole spec; `fail_times`
 * gates only the failure (destroy, status, stall, stall/cut after chunks, corrupt), never the delays.
 */
export function resolveFault(
  spec: FaultSpec | null,
  defaults: FaultDefaults,
  ctx: { path: string; model: string | null; body: unknown },
  counter: FailCounter,
): ResolvedFault {
  const base: ResolvedFault = {
    latencyMs: defaults.latencyMs,
    ttftMs: defaults.ttftMs,
    interTokenMs: defaults.interTokenMs,
    failure: null,
  };
  if (spec === null) return base;
  if (spec.only_models !== undefined && (ctx.model === null || !spec.only_models.includes(ctx.model))) return base;
  if (spec.only_paths !== undefined && !spec.only_paths.some((p) => ctx.path.startsWith(p))) return base;
  let failure = failureOf(spec);
  if (failure !== null && spec.fail_times !== undefined) {
    const key = spec.key ?? defaultKey(ctx.body);
    if (!counter.take(key, spec.fail_times)) failure = null;
  }
  return {
    latencyMs: spec.latency_ms ?? base.latencyMs,
    ttftMs: spec.ttft_ms ?? base.ttftMs,
    interTokenMs: spec.inter_token_ms ?? base.interTokenMs,
    failure,
  };
}
