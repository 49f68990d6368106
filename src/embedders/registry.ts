import lexical from './lexical.js';
import useLite from './use-lite.js';
import onnx from './onnx.js';
import remote from './remote.js';
import concat from './concat.js';
import staticTable from './static.js';
import shape from './shape.js';
import type { EmbedderPlugin } from './types.js';

// Adding an embedder is one line here: the config builds its `embedder:` union (discriminated on
// `type`) and the published JSON Schema from this list. Heavy libraries load inside create().
export const embedderPlugins = [lexical, useLite, onnx, remote, concat, staticTable, shape] as const;

const byType = new Map<string, EmbedderPlugin>(embedderPlugins.map((p) => [p.type, p as unknown as EmbedderPlugin]));

/** The plugin for `type`, or undefined (the config schema rejects unknown types before this). */
export function getEmbedderPlugin(type: string): EmbedderPlugin | undefined {
  return byType.get(type);
}
