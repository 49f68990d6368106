// GET …/models and …/models/{id}: a fixed list, serialised once at load.
import { E } from '../errors.js';
import type { Reply } from './common.js';

export const MOCK_MODEL_IDS = ['mock-strong', 'mock-weak', 'mock-embedding'] as const;

const CREATED = 1735689600; // 2025-01-01: fixed so the list is byte-identical across runs
const model = (id: string) => ({ id, object: 'model', created: CREATED, owned_by: 'signalman-mock' });
const LIST: Reply = { kind: 'json', body: JSON.stringify({ object: 'list', data: MOCK_MODEL_IDS.map(model) }) };

export function listModels(): Reply {
  return LIST;
}

/** Any id is "known" (the mock answers every model), so retrieval echoes it. */
export function retrieveModel(id: string): Reply {
  if (id === '') throw E.notFound('model id is empty: use GET /v1/models/{id}', 'model');
  return { kind: 'json', body: JSON.stringify(model(id)) };
}
