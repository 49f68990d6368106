import fixed from './fixed.js';
import knn from './knn.js';
import mlp from './mlp.js';
import rules from './rules.js';
import type { RouterPlugin } from './types.js';

/** Adding a router is one file and one line here. */
export const routerPlugins = [fixed, knn, mlp, rules] as const;

export function getRouterPlugin(type: string): RouterPlugin | undefined {
  return (routerPlugins as readonly RouterPlugin[]).find((p) => p.type === type);
}
