// Routing config problems surface at load, with file:line and a reason — never as a silent wrong route.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileRuntime, createSharedPools } from '../../src/runtime/compile.js';
import { parseConfigText } from '../../src/config/load.js';
import { ConfigErrors } from '../../src/errors.js';
import { writeKnnArtifact } from '../../src/training/knn-build.js';
import { makeRows, manifestFor } from '../routers/helpers.js';

const cfg = (policy: string) => `version: 1
backends:
  - { name: strong, base_url: "http://127.0.0.1:1/v1", model: s }
  - { name: weak, base_url: "http://127.0.0.1:1/v1", model: w }
policies:
  - name: auto
    candidates: [strong, weak]
${policy}`;

async function compileErrors(text: string): Promise<string[]> {
  const shared = createSharedPools();
  try {
    const rt = await compileRuntime(parseConfigText(text, '/cfg/signalman.yaml', {}), shared, 1);
    await rt.dispose();
    return [];
  } catch (err) {
    if (err instanceof ConfigErrors) return err.problems.map((p) => p.message);
    throw err;
  } finally {
    await shared.pools.closeAll();
    await shared.embedders.closeAll();
  }
}

async function knnArtifact(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'signalman-rc-'));
  const rows = makeRows(4, 2);
  await writeKnnArtifact(dir, rows.vectors, rows.scores, manifestFor(['strong', 'weak'], rows.vectors.length));
  return dir;
}

describe('routing config errors', () => {
  it('a missing artifact folder names the policy, the router and the line', async () => {
    const [p] = await compileErrors(cfg('    embedder: { type: lexical, dim: 64 }\n    router: { type: knn, artifact: /nowhere/knn }'));
    expect(p).toMatch(/^\/cfg\/signalman\.yaml:9:\d+: policy 'auto': router 'knn' failed to load: .*\/nowhere\/knn/);
  });

  it('an artifact trained with another embedder (wrong dimension) is refused, naming both sides', async () => {
    const dir = await knnArtifact();
    const [p] = await compileErrors(cfg(`    embedder: { type: lexical, dim: 128 }\n    router: { type: knn, artifact: ${dir} }`));
    expect(p).toMatch(/policy 'auto': router 'knn' failed to load/);
    expect(p).toMatch(/d64/);
    expect(p).toMatch(/d128/);
  });

  it('a candidate missing from the artifact is refused', async () => {
    const dir = await knnArtifact();
    const [p] = await compileErrors(
      cfg(`    embedder: { type: lexical, dim: 64 }\n    router: { type: knn, artifact: ${dir} }`).replace(
        'candidates: [strong, weak]',
        'candidates: [strong, { backend: weak, as: gpt-3 }]',
      ),
    );
    expect(p).toMatch(/gpt-3/);
  });

  it('a router that needs an embedder, without one, is a load error', async () => {
    const dir = await knnArtifact();
    const [p] = await compileErrors(cfg(`    router: { type: knn, artifact: ${dir} }`));
    expect(p).toMatch(/the policy declares no embedder/);
  });

  it('a corrupt ONNX file is a load error, not a crash', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalman-rc-'));
    await writeFile(join(dir, 'manifest.json'), JSON.stringify({ format: 'mlp', version: 1, ...manifestFor(['strong', 'weak'], 1) }));
    await writeFile(join(dir, 'model.onnx'), Buffer.from('definitely not protobuf'));
    const [p] = await compileErrors(cfg(`    embedder: { type: lexical, dim: 64 }\n    router: { type: mlp, artifact: ${dir} }`));
    expect(p).toMatch(/policy 'auto': router 'mlp' failed to load/);
  });

  it('an unknown router type and a guard without fallback are rejected at validation', async () => {
    expect((await compileErrors(cfg('    router: { type: telepathy }')))[0]).toMatch(/:8:\d+: policies\[0\]\.router/);
    expect((await compileErrors(cfg('    embedder: { type: lexical }\n    guard: { on_out_of_domain: fallback }')))[0]).toMatch(
      /needs a `fallback` backend/,
    );
    expect((await compileErrors(cfg('    guard: { on_out_of_domain: fallback, fallback: ghost }')))[0]).toMatch(
      /guard falls back to 'ghost'/,
    );
  });

  it('a guard on a router with no index of its own needs an artifact', async () => {
    const [p] = await compileErrors(cfg('    embedder: { type: lexical, dim: 64 }\n    guard: { on_out_of_domain: reject }'));
    expect(p).toMatch(/router 'fixed' has no built-in guard: give guard\.artifact/);
  });
});
