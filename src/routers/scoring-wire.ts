// How texts and their scores cross between the event loop and a scoring thread (scoring-threads.ts,
// scoring.worker.ts). Why not post the objects: a structured clone of a Scored (nine candidates with their
// evidence records, a guard verdict) took ~8 µs to read back on the event loop, per routed request at
// c=16, and most of it is the same every time. So the numbers travel as one flat array, and the rest (the
// candidates' names, their evidence, the guard's label) as a JSON string only when it differs from what
// the same worker last sent for the same policy. A worker's messages arrive in the order it sent them, so
// each side's "last shape" per policy stays in step; a restarted worker starts afresh on both sides.
import { SignalmanError, type OpenAIErrorType } from '../errors.js';
import type { Scored } from './engine.js';
import type { CandidateScore, GuardResult, RouteQuery } from './types.js';

/**
 * Parent -> worker: the texts handed over in one run of the event loop's callbacks, flat:
 * [id, policy index, text, meta or null, id, …]. meta is null for text-only routers (they never read it).
 */
export type ScoreBatch = Array<number | string | RouteQuery['meta'] | null>;
export const BATCH_STRIDE = 4;

/** A thrown error, as it crosses threads. */
export interface WireError {
  message: string;
  signalman?: { code: string; status: number; type: OpenAIErrorType; param: string | null };
}

/**
 * Worker -> parent, one per text as soon as it is scored: [id, policy index, numbers, shape] on success
 * (shape: the JSON of a Shape, or null for "as last time"), [id, policy index, null, error] on failure.
 */
export type ScoredWire =
  [id: number, p: number, numbers: number[], shape: string | null] | [id: number, p: number, numbers: null, error: WireError];

/** Worker -> parent. */
export type ScoreReply = { kind: 'ready' } | { kind: 'init_error'; message: string } | ScoredWire;

/** What is not a number in a Scored. */
interface Shape {
  backends: string[];
  evidence: Array<CandidateScore['evidence']>;
  label: string | null;
}

// numbers: [flags, embedMs, guardMs, scoreMs, guard score, guard threshold, quality of each candidate…]
const HIT = 1;
const GUARDED = 2;
const IN_DOMAIN = 4;
const HEAD = 6;

export function fromWire(e: WireError): Error {
  const s = e.signalman;
  return s === undefined ? new Error(e.message) : new SignalmanError(s.code, s.status, s.type, e.message, s.param);
}

export function toWire(e: unknown): WireError {
  if (e instanceof SignalmanError)
    return { message: e.message, signalman: { code: e.code, status: e.status, type: e.type, param: e.param } };
  return { message: e instanceof Error ? e.message : String(e) };
}

function sameRecord(a: CandidateScore['evidence'], b: CandidateScore['evidence']): boolean {
  if (a === b) return true;
  let n = 0;
  for (const k in a) {
    if (a[k] !== b[k]) return false;
    n++;
  }
  for (const _ in b) n--;
  return n === 0;
}

/** The worker's side: one encoder per worker, remembering the shape it last sent for each policy. */
export class ScoredEncoder {
  private readonly last: Array<Shape | undefined> = [];

  encode(id: number, p: number, r: Scored): ScoredWire {
    const { guard, scores } = r;
    const n = scores.length;
    // Built by push, not new Array(n): a holey array is cloned in V8's slower sparse format.
    const numbers = [
      (r.embedCacheHit ? HIT : 0) | (guard === null ? 0 : GUARDED | (guard.inDomain ? IN_DOMAIN : 0)),
      r.embedMs,
      r.guardMs,
      r.scoreMs,
      guard === null ? 0 : guard.score,
      guard === null ? 0 : guard.threshold,
    ];
    for (let i = 0; i < n; i++) numbers.push(scores[i]!.quality);
    const label = guard?.label ?? null;
    const prev = this.last[p];
    let same = prev !== undefined && prev.label === label && prev.backends.length === n;
    for (let i = 0; same && i < n; i++) {
      const s = scores[i]!;
      same = prev!.backends[i] === s.backend && sameRecord(prev!.evidence[i]!, s.evidence);
    }
    if (same) return [id, p, numbers, null];
    const shape: Shape = { backends: scores.map((s) => s.backend), evidence: scores.map((s) => s.evidence), label };
    this.last[p] = shape;
    return [id, p, numbers, JSON.stringify(shape)];
  }
}

/** The event loop's side: one decoder per worker, the mirror of its ScoredEncoder. */
export class ScoredDecoder {
  private readonly last: Array<Shape | undefined> = [];

  decode(p: number, numbers: number[], shapeJson: string | null): Scored {
    let shape = this.last[p];
    if (shapeJson !== null) this.last[p] = shape = JSON.parse(shapeJson) as Shape;
    if (shape === undefined) throw new Error('scoring thread sent scores before their shape');
    const flags = numbers[0]!;
    let guard: GuardResult | null = null;
    if ((flags & GUARDED) !== 0) {
      guard = { score: numbers[4]!, threshold: numbers[5]!, inDomain: (flags & IN_DOMAIN) !== 0 };
      if (shape.label !== null) guard.label = shape.label;
    }
    const n = numbers.length - HEAD;
    const scores: CandidateScore[] = [];
    // The evidence records are shared by every decision decoded from one shape: they are read-only.
    for (let i = 0; i < n; i++) scores.push({ backend: shape.backends[i]!, quality: numbers[HEAD + i]!, evidence: shape.evidence[i]! });
    return { guard, scores, embedCacheHit: (flags & HIT) !== 0, embedMs: numbers[1]!, guardMs: numbers[2]!, scoreMs: numbers[3]! };
  }
}
