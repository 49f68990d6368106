// The shipped routers' manifests promise that their command rebuilds them bit for bit. Check it for the
// lexical ones the demo config runs (seconds each; the USE-lite ones take minutes and are checked by hand),
// so a change to the embedder, the splits or the trainer cannot silently leave stale artifacts behind.
import { readFile, mkdtemp } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { trainCommand } from '../../src/cli/train.js';

const DATA = resolve(import.meta.dirname, '..', '..', '..', 'shared', 'datasets');
const ROUTERS = resolve(import.meta.dirname, '..', '..', 'routers');
const haveData = existsSync(join(DATA, 'routellm', 'mmlu.jsonl'));

describe.runIf(haveData)('shipped lexical routers rebuild bit for bit', () => {
  for (const [protocol, name] of [
    ['p1', 'p1-lexical-lr'],
    ['p2', 'p2-lexical-lr'],
    ['p3', 'p3-lexical-lr'],
  ] as const) {
    it(`${name}: the manifest's command writes the same model.onnx`, async () => {
      const manifest = JSON.parse(await readFile(join(ROUTERS, name, 'manifest.json'), 'utf8')) as { command: string };
      expect(manifest.command).toContain(`--protocol ${protocol} --router ${name}`);
      const out = join(await mkdtemp(join(tmpdir(), 'signalman-rebuild-')), name);
      expect(await trainCommand(['--protocol', protocol, '--router', name, '--data', DATA, '--no-cache', '--out', out])).toBe(0);
      const [shipped, rebuilt] = await Promise.all([readFile(join(ROUTERS, name, 'model.onnx')), readFile(join(out, 'model.onnx'))]);
      expect(rebuilt.equals(shipped)).toBe(true);
    }, 180_000);
  }
});

describe.runIf(haveData)('shipped kNN guards rebuild bit for bit from their manifest command', () => {
  for (const name of ['p1-knn-guard', 'p2-knn-guard']) {
    it(`${name}: the same index and calibrated threshold`, async () => {
      const manifest = JSON.parse(await readFile(join(ROUTERS, name, 'manifest.json'), 'utf8')) as {
        command: string;
        guard: { threshold: number };
      };
      // The command as recorded, run from the repository root (its paths are relative to it), into a temp dir.
      const argv = manifest.command.replace(/^signalman train /, '').split(' ');
      const at = argv.indexOf('--out');
      expect(argv[at + 1]).toBe(`routers/${name}`);
      const out = join(await mkdtemp(join(tmpdir(), 'signalman-rebuild-')), name);
      argv[at + 1] = out;
      const root = resolve(import.meta.dirname, '..', '..');
      const abs = argv.map((a) => (a.startsWith('../shared/') || a.startsWith('embedders/') ? resolve(root, a) : a));
      const embedderAt = abs.indexOf('--embedder') + 1;
      abs[embedderAt] = abs[embedderAt]!.replace('"embedders/', `"${root}/embedders/`);
      expect(await trainCommand([...abs, '--no-cache'])).toBe(0);
      for (const f of ['vectors.f32', 'scores.f32']) {
        const [shipped, rebuilt] = await Promise.all([readFile(join(ROUTERS, name, f)), readFile(join(out, f))]);
        expect(rebuilt.equals(shipped)).toBe(true);
      }
      const again = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { guard: { threshold: number } };
      expect(again.guard.threshold).toBe(manifest.guard.threshold);
    }, 120_000);
  }
});
