// Writes a trained MLP as an ONNX graph (Gemm + activation per layer) so the gateway runs it with
// onnxruntime-node, and any other ONNX runtime can run the same file. An ensemble (ensemble.ts) becomes
// one graph with the same input 'x' and output 'y', so the `mlp` router needs no change for it.
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { ONNX_FILE, writeManifest, type ManifestInput } from '../routers/artifacts.js';
import type { TrainedMlp } from './mlp-train.js';
import { isEnsemble, type TrainedEnsemble } from './ensemble.js';

const { onnx } = onnxProto;
const OPSET = 13;
const IR_VERSION = 8;
/** Metadata key holding the MlpSpec as JSON, so a loader can check the graph against its manifest. */
export const SPEC_METADATA_KEY = 'signalman.mlp_spec';

type Node = InstanceType<typeof onnx.NodeProto>;
type Tensor = InstanceType<typeof onnx.TensorProto>;

/** Appends the layers of `m` (Gemm + activation each) reading `input`; names get `prefix`. Returns the output name. */
function appendMlp(m: TrainedMlp, input: string, prefix: string, output: string, nodes: Node[], initializer: Tensor[]): string {
  const { spec } = m;
  const dims = [spec.inputDim, ...spec.hidden, spec.outputDim];
  if (m.weights.length !== dims.length - 1)
    throw new Error(`mlpToOnnx: ${m.weights.length} weight layers, the spec has ${dims.length - 1}`);
  let at = input;
  m.weights.forEach((layer, l) => {
    const inDim = dims[l]!;
    const outDim = dims[l + 1]!;
    if (layer.W.length !== inDim * outDim || layer.b.length !== outDim) {
      throw new Error(`mlpToOnnx: layer ${l} weights do not match ${inDim} -> ${outDim}`);
    }
    initializer.push(floatTensor(`${prefix}W${l}`, [inDim, outDim], layer.W), floatTensor(`${prefix}b${l}`, [outDim], layer.b));
    const last = l === m.weights.length - 1;
    const pre = `${prefix}z${l}`;
    nodes.push(
      onnx.NodeProto.create({ name: `${prefix}gemm${l}`, opType: 'Gemm', input: [at, `${prefix}W${l}`, `${prefix}b${l}`], output: [pre] }),
    );
    const out = last ? output : `${prefix}h${l}`;
    if (!last) {
      nodes.push(
        onnx.NodeProto.create({
          name: `${prefix}act${l}`,
          opType: spec.activation === 'relu' ? 'Relu' : 'Tanh',
          input: [pre],
          output: [out],
        }),
      );
    } else if (spec.output === 'sigmoid') {
      nodes.push(onnx.NodeProto.create({ name: `${prefix}out`, opType: 'Sigmoid', input: [pre], output: [out] }));
    } else {
      const axis = onnx.AttributeProto.create({ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 });
      nodes.push(onnx.NodeProto.create({ name: `${prefix}out`, opType: 'Softmax', input: [pre], output: [out], attribute: [axis] }));
    }
    at = out;
  });
  return at;
}

/**
 * An ensemble as one graph: per part, Slice the input, run the part's layers, MatMul by its table if
 * it has one, scale by its weight; Sum the parts into 'y'. Same input and output as a plain MLP, so
 * the `mlp` router runs it unchanged.
 */
function ensembleNodes(m: TrainedEnsemble, nodes: Node[], initializer: Tensor[]): void {
  const summed: string[] = [];
  const axes = int64Tensor('slice_axes', [1]);
  initializer.push(axes);
  m.ensemble.parts.forEach((p, k) => {
    const pre = `p${k}_`;
    initializer.push(int64Tensor(`${pre}starts`, [p.start]), int64Tensor(`${pre}ends`, [p.end]));
    nodes.push(
      onnx.NodeProto.create({
        name: `${pre}slice`,
        opType: 'Slice',
        input: ['x', `${pre}starts`, `${pre}ends`, 'slice_axes'],
        output: [`${pre}x`],
      }),
    );
    let out = appendMlp(p.mlp, `${pre}x`, pre, `${pre}y`, nodes, initializer);
    if (p.table !== undefined) {
      initializer.push(floatTensor(`${pre}table`, [p.mlp.spec.outputDim, m.spec.outputDim], p.table));
      nodes.push(onnx.NodeProto.create({ name: `${pre}prior`, opType: 'MatMul', input: [out, `${pre}table`], output: [`${pre}q`] }));
      out = `${pre}q`;
    }
    initializer.push(floatTensor(`${pre}weight`, [1], Float32Array.of(p.weight)));
    nodes.push(onnx.NodeProto.create({ name: `${pre}scale`, opType: 'Mul', input: [out, `${pre}weight`], output: [`${pre}w`] }));
    summed.push(`${pre}w`);
  });
  nodes.push(onnx.NodeProto.create({ name: 'mix', opType: 'Sum', input: summed, output: ['y'] }));
}

/** input 'x' [N, inputDim] float32 -> output 'y' [N, outputDim]. */
export function mlpToOnnx(m: TrainedMlp): Uint8Array {
  const { spec } = m;
  const nodes: Node[] = [];
  const initializer: Tensor[] = [];
  let doc: string;
  if (isEnsemble(m)) {
    ensembleNodes(m, nodes, initializer);
    doc = `ensemble of ${m.ensemble.parts.length}: ${m.ensemble.parts
      .map(
        (p) =>
          `${p.weight.toFixed(3)} x MLP ${[p.mlp.spec.inputDim, ...p.mlp.spec.hidden, p.mlp.spec.outputDim].join('-')} on [${p.start}, ${p.end})${p.table ? ' x prior table' : ''}`,
      )
      .join(' + ')}`;
  } else {
    appendMlp(m, 'x', '', 'y', nodes, initializer);
    doc = `MLP ${[spec.inputDim, ...spec.hidden, spec.outputDim].join('-')} ${spec.activation}/${spec.output}`;
  }
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: OPSET })],
    producerName: 'signalman',
    producerVersion: '1',
    docString: doc,
    metadataProps: [onnx.StringStringEntryProto.create({ key: SPEC_METADATA_KEY, value: JSON.stringify(spec) })],
    graph: onnx.GraphProto.create({
      name: 'signalman_mlp',
      node: nodes,
      initializer,
      input: [valueInfo('x', spec.inputDim)],
      output: [valueInfo('y', spec.outputDim)],
    }),
  });
  return onnx.ModelProto.encode(model).finish();
}

function int64Tensor(name: string, values: number[]): Tensor {
  return onnx.TensorProto.create({ name, dims: [values.length], dataType: onnx.TensorProto.DataType.INT64, int64Data: values });
}

function floatTensor(name: string, dims: number[], data: Float32Array): Tensor {
  // raw_data is little-endian by the ONNX spec, as is every machine Node runs on in practice.
  const raw = new Uint8Array(data.byteLength);
  raw.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return onnx.TensorProto.create({ name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: raw });
}

function valueInfo(name: string, width: number): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: onnx.TensorShapeProto.create({
          dim: [onnx.TensorShapeProto.Dimension.create({ dimParam: 'N' }), onnx.TensorShapeProto.Dimension.create({ dimValue: width })],
        }),
      }),
    }),
  });
}

/**
 * Writes model.onnx and the manifest. Output columns are the manifest's `labels` when it has them (a
 * softmax classifier: guard or category-to-expert map), otherwise its `models` (predicted quality).
 */
export async function writeMlpArtifact(dir: string, m: TrainedMlp, manifest: ManifestInput): Promise<void> {
  if (manifest.embedder.dim !== m.spec.inputDim) {
    throw new Error(`writeMlpArtifact: the MLP takes ${m.spec.inputDim} inputs, the manifest's embedder.dim is ${manifest.embedder.dim}`);
  }
  const columns = manifest.labels ?? manifest.models;
  const what = manifest.labels ? 'labels' : 'models';
  if (columns.length !== m.spec.outputDim) {
    throw new Error(`writeMlpArtifact: the MLP has ${m.spec.outputDim} outputs, the manifest lists ${columns.length} ${what}`);
  }
  if (manifest.labels && m.spec.output !== 'softmax') {
    throw new Error('writeMlpArtifact: a classifier with labels must use a softmax output');
  }
  await mkdir(dir, { recursive: true });
  const file = join(dir, ONNX_FILE);
  await writeFile(`${file}.tmp`, mlpToOnnx(m));
  await rename(`${file}.tmp`, file);
  await writeManifest(dir, { format: 'mlp', version: 1, ...manifest });
}
