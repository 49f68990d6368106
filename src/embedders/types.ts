import type { z } from 'zod';

/** Turns text into a unit-length vector. Implementations are plugins (see registry.ts). */
export interface Embedder {
  /** Stable identity written into artifact manifests, e.g. 'lexical/v1/d512'. */
  readonly id: string;
  readonly dim: number;
  /** One prompt on the request path; must never block the event loop for long. Unit length. */
  embed(text: string, signal?: AbortSignal): Promise<Float32Array>;
  /** Many texts at once (training, eval). Same vectors as embed() would give. */
  embedMany(texts: readonly string[], onProgress?: (done: number) => void): Promise<Float32Array[]>;
  close(): Promise<void>;
}

export interface EmbedderContext {
  /** Resolves a path written in the config relative to the config file's folder. */
  resolvePath(p: string): string;
  /**
   * The caller keeps no vector and is done with each one before it asks for the next (a scoring thread:
   * no vector cache, one text at a time). An embedder may then write every vector into one buffer of its
   * own, calling noteVectorRewrite() (common.ts) each time: no allocation per prompt.
   */
  reuseVectors?: boolean;
}

export interface EmbedderPlugin<S extends z.ZodType = z.ZodType> {
  readonly type: string;
  /** zod schema of this embedder's YAML options (with `type` literal); drives validation and JSON Schema. */
  readonly options: S;
  create(opts: z.infer<S>, ctx: EmbedderContext): Promise<Embedder>;
}

export const defineEmbedder = <S extends z.ZodType>(p: EmbedderPlugin<S>): EmbedderPlugin<S> => p;
