import type { z } from 'zod';
import type { Embedder } from '../embedders/types.js';

/** One candidate's predicted quality, with the evidence behind it (shown by /v1/route). */
export interface CandidateScore {
  backend: string;
  /** Predicted quality in 0..1. */
  quality: number;
  evidence: Readonly<Record<string, number | string>>;
}

export interface RouteQuery {
  /** The text that was embedded (see routers/prompt-text.ts). */
  text: string;
  /** Unit-length embedding, or null for routers that do not need one (needsEmbedding: false). */
  embedding: Float32Array | null;
  /** Candidate backend names, in policy order. */
  candidates: readonly string[];
  /** Request metadata rules may match on (e.g. header values, message count, has tools). */
  meta: Readonly<Record<string, string | number | boolean>>;
}

export interface Router {
  readonly type: string;
  /** false: the pipeline skips the embedding stage for this router. */
  readonly needsEmbedding: boolean;
  /**
   * true: scores are a pure function of the prompt text (no request metadata, no clock), so the engine
   * may cache them per text. kNN (without online learning) and MLP routers are; rules are unless one of
   * them reads request metadata (`when.meta`).
   */
  readonly textOnly?: boolean;
  /** Exactly one score per candidate. */
  score(q: RouteQuery): readonly CandidateScore[] | Promise<readonly CandidateScore[]>;
  /** An out-of-domain guard over the router's own data (e.g. kNN distance), or null if it has none. */
  makeGuard?(o: { threshold?: number }): Guard | null;
  /**
   * Online learning (kNN with `learn.online`): rows learned from feedback join the router's live index.
   * Returns how many were kept (rows of the wrong dimension, or scoring no candidate, are not).
   */
  addRows?(rows: readonly LiveRow[]): number;
  close?(): Promise<void>;
}

/** A labelled row learned at run time: a request's embedding and the score(s) its feedback gave. */
export interface LiveRow {
  /** Unit-length embedding from the policy's embedder. */
  embedding: Float32Array;
  /** Backend name -> score in 0..1; usually only the backend that answered. */
  scores: ReadonlyMap<string, number>;
}

/** Runs before scoring; kNN guards answer synchronously, classifier guards need one model call. */
export interface Guard {
  readonly kind: string;
  check(embedding: Float32Array): GuardResult | Promise<GuardResult>;
  /**
   * Judges the prompt text itself, embedding only what the guard reads (one member of a concat). When a
   * guard has it, the engine asks it first and embeds the policy's whole vector only for a prompt it lets
   * through (or when online learning wants the vector anyway).
   */
  checkText?(text: string): GuardResult | Promise<GuardResult>;
}

export interface GuardVerdict {
  score: number;
  threshold: number;
  inDomain: boolean;
}

/** A verdict, with the classifier's best label where the guard has one. */
export type GuardResult = GuardVerdict & { label?: string };

export interface RouterContext {
  resolvePath(p: string): string;
  /** The policy's embedder, or null when the policy declares none. */
  embedder: Embedder | null;
  /** Candidate backends: name -> the model name this backend is known as in trained artifacts. */
  candidates: ReadonlyArray<{ backend: string; as: string }>;
}

export interface RouterPlugin<S extends z.ZodType = z.ZodType> {
  readonly type: string;
  readonly options: S;
  create(opts: z.infer<S>, ctx: RouterContext): Promise<Router>;
}

export const defineRouter = <S extends z.ZodType>(p: RouterPlugin<S>): RouterPlugin<S> => p;
