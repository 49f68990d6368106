import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddingsModel } from '@energetic-ai/embeddings';
import { UnigramTokenizer, type Vocabulary } from '../../src/embedders/sp-tokenizer.js';
import { createStaticEmbedder, StaticOptions, StaticVectorizer } from '../../src/embedders/static.js';
import { loadStaticArtifact, writeStaticArtifact } from '../../src/embedders/static-artifact.js';
import { createUseLiteEmbedder, UseLiteOptions } from '../../src/embedders/use-lite.js';
import { bindArtifact, type ArtifactManifest } from '../../src/routers/artifacts.js';
import { distill, type DistillInput } from '../../src/training/distill.js';
import { secondMoment, symmetricEigen } from '../../src/training/pca.js';
import { readTeacherVocab } from '../../src/training/distill-data.js';
import { seededRandom } from '../../src/util/random.js';
import { writeTinyStaticArtifact } from './tiny-static-artifact.js';

const SHIPPED = join(import.meta.dirname, '../../embedders/static-use-lite');
const opts = (o: Record<string, unknown> = {}) => StaticOptions.parse({ type: 'static', ...o });

let dir: string;
let vocab: Vocabulary;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'signalman-static-'));
  vocab = (await readTeacherVocab()).vocab;
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('tokenizer', () => {
  // The teacher's own tokenizer (@energetic-ai/embeddings), run on the same vocabulary.
  const teacher = () => new EmbeddingsModel({ vocabulary: vocab as Array<[string, number]>, model: null as never }).tokenizer;

  it('segments exactly as the teacher on tricky text', () => {
    const mine = new UnigramTokenizer(vocab);
    const t = teacher();
    const texts = [
      '',
      ' ',
      '  two  spaces ',
      'Hello, World! :) :-( http://x.io',
      '数学 😀 émigré',
      'ﬁ ligature ① ＡＢＣ', // NFKC folds these
      '😀😀😀 x \ud800 lone surrogate',
      'e\u0301 combining, \t tab, \n newline',
      "What's the derivative of x^2? Answer: (A) 2x (B) x",
      'a'.repeat(300),
      'The quick brown fox. '.repeat(150),
    ];
    for (const s of texts) expect(mine.encodeToArray(s), JSON.stringify(s.slice(0, 40))).toEqual(t.encode(s));
  });

  it('is linear on a very long text and its pieces spell the text back', () => {
    const mine = new UnigramTokenizer(vocab);
    const long = 'Explain the tort of negligence in café law, 数学 😀. '.repeat(20_000); // ~1 MB
    const t0 = performance.now();
    const ids = mine.encodeToArray(long);
    expect(performance.now() - t0).toBeLessThan(5_000); // the teacher's is quadratic: hours at this size
    // Unknown runs (id 0) stand for the characters no piece covers; everything else spells the text.
    const spelled = ids.map((id) => (id === 0 ? '?' : vocab[id]![0])).join('');
    const want = `▁${long.replace(/ /g, '▁')}`.replace(/[数学😀]+/gu, '?');
    expect(spelled.replace(/\?+/g, '?')).toBe(want.replace(/\?+/g, '?'));
  });

  it('gives the whole-text segmentation word by word from its memo, cold and warm', async () => {
    const memo = new UnigramTokenizer(vocab);
    const whole = new UnigramTokenizer(vocab, 6, { memo: false });
    const data = join(import.meta.dirname, '../../../shared/datasets');
    const texts: string[] = [
      // Zero-score starts (unknown characters, the null-scored ':' pieces) make the memo step aside.
      '数学 数学 x',
      ': : :: a',
      '😀 hello there 😀 again',
      '  leading spaces and  double  ones ',
      'Hello, World! :) :-( http://x.io',
    ];
    for (const f of ['routellm/mmlu.jsonl', 'routellm/mt-bench.jsonl', 'llmrouter/train.jsonl']) {
      const lines = (await readFile(join(data, f), 'utf8')).split('\n').filter(Boolean).slice(0, 2000);
      for (const l of lines) texts.push((JSON.parse(l) as { prompt: string }).prompt.slice(0, 2048));
    }
    for (let pass = 0; pass < 2; pass++) {
      for (const s of texts) expect(memo.encodeToArray(s), JSON.stringify(s.slice(0, 40))).toEqual(whole.encodeToArray(s));
    }
  });

  it('gives no ids for empty text and reuses its buffer', () => {
    const mine = new UnigramTokenizer(vocab);
    expect(mine.encode('')).toBe(0);
    mine.encode('short');
    const buf = mine.ids;
    mine.encode('also short');
    expect(mine.ids).toBe(buf);
  });
});

describe('the wasm sum of table rows', () => {
  it("gives the JS loop's vectors bit for bit", async () => {
    const t = await loadStaticArtifact(SHIPPED);
    const wasm = new StaticVectorizer(t, 2048);
    const js = new StaticVectorizer(t, 2048, { kernel: false });
    const texts = ['', ' ', '数学', '😀 x', 'a'.repeat(5000), 'The quick brown fox. '.repeat(300)];
    const data = join(import.meta.dirname, '../../../shared/datasets');
    for (const f of ['routellm/mmlu.jsonl', 'llmrouter/train.jsonl']) {
      const lines = (await readFile(join(data, f), 'utf8')).split('\n').filter(Boolean).slice(0, 1500);
      for (const l of lines) texts.push((JSON.parse(l) as { prompt: string }).prompt);
    }
    for (const s of texts) {
      const a = wasm.vectorize(s);
      const b = js.vectorize(s);
      expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), JSON.stringify(s.slice(0, 40))).toBe(true);
    }
  });
});

describe('artifact checks', () => {
  const fresh = async (name: string): Promise<string> => {
    const d = join(dir, name);
    await writeTinyStaticArtifact(d);
    return d;
  };
  const patchManifest = async (d: string, f: (m: Record<string, unknown>) => void) => {
    const m = JSON.parse(await readFile(join(d, 'manifest.json'), 'utf8')) as Record<string, unknown>;
    f(m);
    await writeFile(join(d, 'manifest.json'), JSON.stringify(m));
  };

  it('refuses a table whose bytes changed, naming the file and the hashes', async () => {
    const d = await fresh('flip');
    const buf = await readFile(join(d, 'table.bin'));
    buf[buf.length - 1] = buf[buf.length - 1]! ^ 1;
    await writeFile(join(d, 'table.bin'), buf);
    await expect(createStaticEmbedder(opts(), d)).rejects.toThrow(/table\.bin: sha256 [0-9a-f]{64} does not match manifest\.json's/);
  });

  it('refuses a truncated table, naming both sizes', async () => {
    const d = await fresh('short');
    const buf = await readFile(join(d, 'table.bin'));
    await writeFile(join(d, 'table.bin'), buf.subarray(0, buf.length - 16));
    await expect(createStaticEmbedder(opts(), d)).rejects.toThrow(/table\.bin: \d+ bytes, but manifest\.json says \d+/);
  });

  it('refuses a manifest whose dims do not fit the table', async () => {
    const d = await fresh('dims');
    await patchManifest(d, (m) => {
      m.dim = 32;
    });
    await expect(createStaticEmbedder(opts(), d)).rejects.toThrow(
      /manifest\.json: table\.bytes is \d+, but 8000 rows x 32 dims as int8-row take/,
    );
  });

  it('refuses a vocabulary that is not the one the table was built on', async () => {
    const d = await fresh('vocab');
    const v = JSON.parse(await readFile(join(d, 'vocab.json'), 'utf8')) as unknown[];
    await writeFile(join(d, 'vocab.json'), JSON.stringify(v.slice(0, -1)));
    await expect(createStaticEmbedder(opts(), d)).rejects.toThrow(/vocab\.json: sha256 .* does not match/);
  });

  it('refuses a missing or malformed manifest', async () => {
    await expect(createStaticEmbedder(opts(), join(dir, 'nowhere'))).rejects.toThrow(/manifest\.json: cannot read/);
    const d = await fresh('bad-manifest');
    await patchManifest(d, (m) => {
      m.format = 'other/v9';
    });
    await expect(createStaticEmbedder(opts(), d)).rejects.toThrow(/manifest\.json: format/);
  });

  it('gives the same vectors from an f32 and an int8 table within int8 rounding', async () => {
    const a = join(dir, 'enc-f32');
    const b = join(dir, 'enc-i8');
    await writeTinyStaticArtifact(a, { encoding: 'f32', seed: 7 });
    await writeTinyStaticArtifact(b, { encoding: 'int8-row', seed: 7 });
    const [ea, eb] = await Promise.all([createStaticEmbedder(opts(), a), createStaticEmbedder(opts(), b)]);
    for (const t of ['What is a tort?', 'Write a sort in Python.']) {
      const [va, vb] = [ea.embedSync(t), eb.embedSync(t)];
      expect(va.reduce((s, x, i) => s + x * vb[i]!, 0)).toBeGreaterThan(0.999);
    }
  });
});

describe('id', () => {
  it('encodes the table, the vocabulary, the dimension and the cut, so routers trained on another table are refused', async () => {
    const a = join(dir, 'id-a');
    const b = join(dir, 'id-b');
    await writeTinyStaticArtifact(a, { seed: 1 });
    await writeTinyStaticArtifact(b, { seed: 2 });
    const ea = await createStaticEmbedder(opts(), a);
    const ea2 = await createStaticEmbedder(opts(), a);
    const eb = await createStaticEmbedder(opts(), b);
    const ec = await createStaticEmbedder(opts({ max_chars: 512 }), a);
    expect(ea.id).toBe(ea2.id);
    expect(ea.id).toMatch(/^static\/v1\/t[0-9a-f]{12}\/v[0-9a-f]{8}\/d16\/m2048$/);
    expect(eb.id).not.toBe(ea.id);
    expect(ec.id).toBe(ea.id.replace('/m2048', '/m512'));
    const trainedOnA = { embedder: { id: ea.id, dim: ea.dim }, models: ['m'] } as unknown as ArtifactManifest;
    expect(() => bindArtifact('routers/x', trainedOnA, eb, [])).toThrow(/was trained with embedder 'static\/v1\/t/);
    expect(() => bindArtifact('routers/x', trainedOnA, ea2, [])).not.toThrow();
  });
});

describe('distill (tiny vocabulary, tiny data)', () => {
  // 6 reserved ids, then letters and a few words; a "teacher" whose sentence vectors are a weighted
  // sum of hidden per-piece vectors, so the static table can learn it and fine-tuning must help.
  const WORDS = ['▁the', '▁law', '▁tort', '▁code', '▁sort', '▁list', '▁math', '▁is', '▁what', '▁how'];
  const letters = 'abcdefghijklmnopqrstuvwxyz'.split('');
  const tinyVocab: Vocabulary = [
    ['<unk>', 0],
    ['<s>', 0],
    ['</s>', 0],
    ['x1', 0],
    ['x2', 0],
    ['x3', 0],
    ['▁', -2],
    ...WORDS.map((w, i) => [w, -3 - i / 10] as const),
    ...letters.map((c) => [c, -6] as const),
  ];
  const T = 24;
  const input = (seed: number, epochs: number): DistillInput => {
    const next = seededRandom(99);
    const unit = (): Float32Array => {
      const v = Float32Array.from({ length: T }, () => next() * 2 - 1);
      const n = Math.hypot(...v);
      return v.map((x) => x / n);
    };
    const pv = tinyVocab.map((_, i) => (i >= 1 && i < 6 ? new Float32Array(T) : unit()));
    const hidden = tinyVocab.map(() => unit());
    const tok = new UnigramTokenizer(tinyVocab);
    const texts: string[] = [];
    const targets = new Float32Array(120 * T);
    for (let r = 0; r < 120; r++) {
      const words = Array.from({ length: 3 + (r % 5) }, () => WORDS[Math.floor(next() * WORDS.length)]!.slice(1));
      const text = `${words.join(' ')} ${letters[r % 26]}${letters[(r * 7) % 26]}`;
      texts.push(text);
      const n = tok.encode(text);
      const t = new Float32Array(T);
      for (let i = 0; i < n; i++) for (let k = 0; k < T; k++) t[k] = t[k]! + 0.5 * pv[tok.ids[i]!]![k]! + hidden[tok.ids[i]!]![k]!;
      const norm = Math.hypot(...t);
      targets.set(
        t.map((x) => x / norm),
        r * T,
      );
    }
    const pieceData = new Float32Array(tinyVocab.length * T);
    pv.forEach((v, i) => pieceData.set(v, i * T));
    return {
      vocab: tinyVocab,
      reserved: 6,
      pieceVectors: { rows: tinyVocab.length, dim: T, data: pieceData },
      train: { texts, targets: { rows: 120, dim: T, data: targets } },
      dims: 12,
      pcaOn: 'train',
      sifCandidates: [0.01, null],
      epochs,
      lr: 0.01,
      l2: 0,
      linearMap: true,
      batch: 8,
      valShare: 0.2,
      seed,
      maxChars: 2048,
      log: () => {},
    };
  };
  const sha = (a: Float32Array) => createHash('sha256').update(new Uint8Array(a.buffer)).digest('hex');

  it('PCA: exact eigenpairs, largest first, orthonormal', () => {
    const next = seededRandom(5);
    const n = 40;
    const m = secondMoment(
      Float32Array.from({ length: 300 * n }, () => next() - 0.5 + (next() < 0.2 ? 1 : 0)),
      n,
    );
    const { values, vectors } = symmetricEigen(m, n);
    for (let q = 0; q < n; q++) {
      if (q > 0) expect(values[q]!).toBeLessThanOrEqual(values[q - 1]!);
      for (let i = 0; i < n; i++) {
        let av = 0;
        for (let j = 0; j < n; j++) av += m[i * n + j]! * vectors[q * n + j]!;
        expect(Math.abs(av - values[q]! * vectors[q * n + i]!)).toBeLessThan(1e-9 * values[0]!);
      }
      let dot = 0;
      for (let j = 0; j < n; j++) dot += vectors[q * n + j]! * vectors[((q + 1) % n) * n + j]!;
      expect(Math.abs(dot)).toBeLessThan(1e-12);
    }
  });

  it('gives the same bytes for the same seed, and other bytes for another seed', () => {
    const a = distill(input(1, 6));
    const b = distill(input(1, 6));
    const c = distill(input(2, 6));
    expect(sha(a.table)).toBe(sha(b.table));
    expect(sha(a.basis)).toBe(sha(b.basis));
    expect(sha(c.table)).not.toBe(sha(a.table));
  });

  it('fine-tuning raises validation agreement over the PCA + weights table', () => {
    const r = distill(input(1, 20));
    expect(r.finetune).not.toBeNull();
    expect(r.valAgreement).toBeGreaterThan(r.valAgreementInit + 0.02);
    expect(distill(input(1, 0)).finetune).toBeNull();
  });

  it('writes byte-identical artifacts from identical inputs', async () => {
    const r = distill(input(3, 3));
    const tv = await readTeacherVocab();
    const write = async (d: string) => {
      await writeStaticArtifact(d, {
        table: Float32Array.from({ length: tv.vocab.length * 12 }, (_, i) => r.table[i % r.table.length]!),
        dim: 12,
        encoding: 'int8-row',
        vocabBytes: tv.bytes,
        vocabSource: tv.source,
        reserved: 6,
        projection: { data: r.basis, teacherDim: T },
        teacher: { id: 'tiny', package: 'none', version: '0' },
        build: {
          seed: 3,
          command: 'test',
          data: [],
          pca: { fitted_on: 'train', dims: 12, captured_energy_val: r.capturedEnergyVal },
          weighting: { kind: 'sif', a: r.sifA, counted_on_tokens: r.countedTokens },
          linear_map: true,
          extra_pairs: null,
          finetune: null,
        },
        agreement: {},
      });
      const files = ['manifest.json', 'table.bin', 'vocab.json', 'projection.bin'];
      return Promise.all(
        files.map(async (f) =>
          createHash('sha256')
            .update(await readFile(join(d, f)))
            .digest('hex'),
        ),
      );
    };
    expect(await write(join(dir, 'w1'))).toEqual(await write(join(dir, 'w2')));
    const loaded = await loadStaticArtifact(join(dir, 'w1'));
    expect(loaded.projection).toEqual(r.basis);
  });
});

describe('shipped artifact embedders/static-use-lite', () => {
  it('agrees with USE-lite on a handful of prompts (cosine in the teacher space)', async () => {
    const art = await loadStaticArtifact(SHIPPED);
    const st = await createStaticEmbedder(opts(), SHIPPED);
    const teacher = await createUseLiteEmbedder(UseLiteOptions.parse({ type: 'use-lite', batch_window_ms: 0 }));
    try {
      const prompts = [
        'What is a tort?',
        'Write a Python function that reverses a linked list.',
        'Solve for x: 3x + 5 = 20.',
        'Which of the following best describes the role of the Federal Reserve in monetary policy?',
        'Summarise the plot of Hamlet in two sentences.',
        'What are the symptoms of iron deficiency anaemia?',
      ];
      const t = await teacher.embedMany(prompts);
      const P = art.projection!;
      const T = art.manifest.projection!.teacher_dim;
      const cos = prompts.map((p, i) => {
        const s = st.embedSync(p); // unit length in the basis; B^T s is unit length in the teacher's space
        let dot = 0;
        for (let r = 0; r < art.dim; r++) for (let k = 0; k < T; k++) dot += s[r]! * P[r * T + k]! * t[i]![k]!;
        return dot;
      });
      const mean = cos.reduce((a, b) => a + b, 0) / cos.length;
      expect(mean).toBeGreaterThan(0.75);
      for (const c of cos) expect(c).toBeGreaterThan(0.55); // measured 0.61-0.90, mean 0.79
      // And it is not just "every prompt looks alike": a prompt is closer to its own teacher vector
      // than to the other prompts' ones.
      for (let i = 0; i < prompts.length; i++) {
        const s = st.embedSync(prompts[i]!);
        const back = new Float32Array(T);
        for (let r = 0; r < art.dim; r++) for (let k = 0; k < T; k++) back[k] = back[k]! + s[r]! * P[r * T + k]!;
        const sims = t.map((tv) => tv.reduce((a, x, k) => a + x * back[k]!, 0));
        expect(sims.indexOf(Math.max(...sims))).toBe(i);
      }
    } finally {
      await teacher.close();
      await st.close();
    }
  }, 60_000);
});
