import type { KnipConfig } from 'knip';

// knip: unused files, exports and dependencies. `npm run lint` runs it after eslint and prettier.
const config: KnipConfig = {
  // Also entries, found by knip's own plugins (listing them again only earns a "redundant" hint):
  // src/cli/main.ts (package.json bin, mapped from dist/ through tsconfig), vitest.config.ts (vitest),
  // eslint.config.js (eslint).
  entry: [
    // Worker threads are started by file path (worker-pool.ts, scoring-threads.ts, protocol-report.ts), never imported.
    'src/embedders/*.worker.ts',
    'src/routers/*.worker.ts',
    'src/training/*.worker.ts',
    'bench/*.ts',
    // Spawned as a child process by path from bench/lib/servers.ts (startBareProxy).
    'bench/lib/bare-proxy.ts',
    'test/**/*.test.ts',
  ],
  project: ['src/**/*.ts', 'bench/**/*.ts', 'test/**/*.ts'],
  // dist/ needs no `ignore`: knip skips what .gitignore lists.
  // An export its own file also uses is at worst over-exported, not dead: report only exports nothing uses.
  ignoreExportsUsedInFile: true,
  // Only dependencies whose use is real but invisible to static analysis. Dynamic `import('x')`
  // (@energetic-ai/*, @huggingface/transformers, onnxruntime-node, hnswlib-node) is seen by knip itself.
  // Debian packages the tests spawn; .ci/run installs them when absent.
  ignoreBinaries: ['promtool', 'prometheus', 'redis-server', 'redis-cli'],
  ignoreDependencies: [
    // Font file read by path: createRequire(...).resolve('dejavu-fonts-ttf/package.json') in training/plot.ts.
    'dejavu-fonts-ttf',
    // Started by path (node_modules/@portkey-ai/gateway/build/start-server.js) in bench/lib/servers.ts.
    '@portkey-ai/gateway',
    // Loader resolved via createRequire(...).resolve('tsx/esm/api') in embedders/worker-pool.ts,
    // and `node --import tsx` in the tests' child processes.
    'tsx',
    // vitest's peer, pinned to one major here; never imported directly.
    'vite',
  ],
};

export default config;
