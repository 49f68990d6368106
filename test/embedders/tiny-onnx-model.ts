import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

// Builds, at test time, a tiny BERT-shaped sentence model that @huggingface/transformers loads like a
// real one: a WordPiece tokenizer over letters, digits and a few words, and an ONNX graph
// last_hidden_state = Gather(table, input_ids) * attention_mask. Mean pooling and normalisation are
// then transformers' own. Nothing is downloaded.

const SPECIAL = ['[PAD]', '[UNK]', '[CLS]', '[SEP]'];
const WORDS = ['the', 'law', 'code', 'python', 'math', 'tort', 'sort', 'list', 'what', 'is', 'how', 'to'];
const letters = 'abcdefghijklmnopqrstuvwxyz0123456789';
const PUNCT = ['.', ',', '?', '!', "'", '(', ')', '-', ':'];

export const TINY_DIM = 24;

function vocab(): string[] {
  return [...SPECIAL, ...WORDS, ...letters.split(''), ...letters.split('').map((c) => `##${c}`), ...PUNCT];
}

/** Deterministic pseudo-random table (seededRandom), so two builds give the same vectors. */
function table(rows: number, dim: number): Float32Array {
  let a = 0x2545f491;
  const t = new Float32Array(rows * dim);
  for (let i = 0; i < t.length; i++) {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    t[i] = ((x ^ (x >>> 14)) >>> 0) / 4294967296 - 0.5;
  }
  return t;
}

function modelBytes(vocabSize: number, dim: number): Uint8Array {
  const { TensorProto } = onnx;
  const F = TensorProto.DataType.FLOAT;
  const I64 = TensorProto.DataType.INT64;
  const valueInfo = (name: string, elemType: number, dims: (string | number)[]) =>
    onnx.ValueInfoProto.create({
      name,
      type: {
        tensorType: {
          elemType,
          shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
        },
      },
    });
  const weights = table(vocabSize, dim);
  const graph = onnx.GraphProto.create({
    name: 'tiny',
    initializer: [
      TensorProto.create({ name: 'table', dataType: F, dims: [vocabSize, dim], rawData: new Uint8Array(weights.buffer) }),
      TensorProto.create({ name: 'axes', dataType: I64, dims: [1], int64Data: [-1] }),
    ],
    node: [
      onnx.NodeProto.create({
        opType: 'Gather',
        input: ['table', 'input_ids'],
        output: ['emb'],
        attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }],
      }),
      onnx.NodeProto.create({
        opType: 'Cast',
        input: ['attention_mask'],
        output: ['maskf'],
        attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: F }],
      }),
      onnx.NodeProto.create({ opType: 'Unsqueeze', input: ['maskf', 'axes'], output: ['mask3'] }),
      onnx.NodeProto.create({ opType: 'Mul', input: ['emb', 'mask3'], output: ['last_hidden_state'] }),
    ],
    input: [valueInfo('input_ids', I64, ['batch', 'seq']), valueInfo('attention_mask', I64, ['batch', 'seq'])],
    output: [valueInfo('last_hidden_state', F, ['batch', 'seq', dim])],
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'signalman-test',
    opsetImport: [{ domain: '', version: 13 }],
    graph,
  });
  return onnx.ModelProto.encode(model).finish();
}

/** Writes the model folder at `dir` (config.json, tokenizer files, onnx/model.onnx). */
export async function writeTinyOnnxModel(dir: string): Promise<void> {
  const v = vocab();
  await mkdir(join(dir, 'onnx'), { recursive: true });
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: { type: 'BertProcessing', sep: ['[SEP]', 3], cls: ['[CLS]', 2] },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(v.map((t, i) => [t, i])),
    },
  };
  const tokenizerConfig = {
    tokenizer_class: 'BertTokenizer',
    model_max_length: 64,
    do_lower_case: true,
    pad_token: '[PAD]',
    unk_token: '[UNK]',
    cls_token: '[CLS]',
    sep_token: '[SEP]',
  };
  const config = {
    model_type: 'bert',
    architectures: ['BertModel'],
    hidden_size: TINY_DIM,
    vocab_size: v.length,
    num_hidden_layers: 1,
    num_attention_heads: 1,
    max_position_embeddings: 64,
    type_vocab_size: 2,
  };
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  await writeFile(join(dir, 'onnx', 'model.onnx'), modelBytes(v.length, TINY_DIM));
}
