// A thread of `signalman eval` (protocol-report.ts): runs one protocol's job and posts its report.
// A failure becomes the thread's error event, with the protocol's own message.
import { parentPort, workerData } from 'node:worker_threads';
import { EmbedderPool } from './fit.js';
import { type ProtocolJob, reportProtocol } from './protocol-report.js';

const port = parentPort;
if (port === null) throw new Error('protocol.worker runs inside a worker thread');

const pool = new EmbedderPool();
try {
  port.postMessage(await reportProtocol(workerData as ProtocolJob, pool));
} finally {
  await pool.close();
}
