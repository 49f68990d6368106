// A thread of `signalman eval` (protocol-report.ts): runs one protocol's job, or one recipe's
// cross-validation, and posts the result. A failure becomes the thread's error event, with its own message.
import { parentPort, workerData } from 'node:worker_threads';
import { EmbedderPool } from './fit.js';
import { type ThreadJob, crossValidateJob, reportProtocol } from './protocol-report.js';

const port = parentPort;
if (port === null) throw new Error('protocol.worker runs inside a worker thread');

const pool = new EmbedderPool();
try {
  const t = workerData as ThreadJob;
  port.postMessage(await (t.kind === 'cv' ? crossValidateJob(t.job, pool) : reportProtocol(t.job, pool)));
} finally {
  await pool.close();
}
