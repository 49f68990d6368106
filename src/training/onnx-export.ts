// Writes a trained MLP as an ONNX graph (Gemm + activation per layer) so the gateway runs it with
// onnxruntime-node, and any other ONNX runtime can run the same file.
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { ONNX_FILE, writeManifest, type ManifestInput } from '../routers/artifacts.js';
import type { TrainedMlp } from './mlp-train.js';

const { onnx } = onnxProto;
const OPSET = 13;
const IR_VERSION = 8;
/** Metadata key holding the MlpSpec as JSON, so a loader can check the graph against its manifest. */
export const SPEC_METADATA_KEY = 'signalman.mlp_spec';

/** input 'x' [N, inputDim] float32 -> output 'y' [N, outputDim]. */
export function mlpToOnnx(m: TrainedMlp): Uint8Array {
  const { spec } = m;
  const dims = [spec.inputDim, ...spec.hidden, spec.outputDim];
  if (m.weights.length !== dims.length - 1) throw new Error(`mlpToOnnx: ${m.weights.length} weight layers, the spec has ${dims.length - 1}`);
  const nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  const initializer: InstanceType<typeof onnx.TensorProto>[] = [];
  let input = 'x';
  m.weights.forEach((layer, l) => {
    const inDim = dims[l]!;
    const outDim = dims[l + 1]!;
    if (layer.W.length !== inDim * outDim || layer.b.length !== outDim) {
      throw new Error(`mlpToOnnx: layer ${l} weights do not match ${inDim} -> ${outDim}`);
    }
    initializer.push(floatTensor(`W${l}`, [inDim, outDim], layer.W), floatTensor(`b${l}`, [outDim], layer.b));
    const last = l === m.weights.length - 1;
    const pre = `z${l}`;
    nodes.push(onnx.NodeProto.create({ name: `gemm${l}`, opType: 'Gemm', input: [input, `W${l}`, `b${l}`], output: [pre] }));
    const out = last ? 'y' : `h${l}`;
    if (!last) {
      nodes.push(onnx.NodeProto.create({ name: `act${l}`, opType: spec.activation === 'relu' ? 'Relu' : 'Tanh', input: [pre], output: [out] }));
    } else if (spec.output === 'sigmoid') {
      nodes.push(onnx.NodeProto.create({ name: 'out', opType: 'Sigmoid', input: [pre], output: [out] }));
    } else {
      const axis = onnx.AttributeProto.create({ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 });
      nodes.push(onnx.NodeProto.create({ name: 'out', opType: 'Softmax', input: [pre], output: [out], attribute: [axis] }));
    }
    input = out;
  });
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: OPSET })],
    producerName: 'signalman',
    producerVersion: '1',
    docString: `MLP ${dims.join('-')} ${spec.activation}/${spec.output}`,
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

function floatTensor(name: string, dims: number[], data: Float32Array): InstanceType<typeof onnx.TensorProto> {
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
