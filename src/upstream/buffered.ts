// A whole upstream response in one Buffer, through undici's dispatch handler API rather than
// `pool.request()`: no Readable body stream, no AsyncResource per call. Measured on a bare proxy at c=16:
// ~20 µs less CPU per request. Used for non-streamed calls; streams have their own handler (streaming.ts).
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { CancellableDispatch, type Cancellation } from './cancel.js';

export interface BufferedResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export function requestBuffered(dispatcher: Dispatcher, opts: Dispatcher.DispatchOptions, cancel: Cancellation): Promise<BufferedResponse> {
  return new Promise((resolve, reject) => {
    if (cancel.aborted) {
      reject(cancel.reason);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let status = 0;
    let headers: IncomingHttpHeaders = {};
    const call = new CancellableDispatch(cancel);
    dispatcher.dispatch(opts, {
      onRequestStart: call.onStart,
      onResponseStart(_c, statusCode, h) {
        status = statusCode;
        headers = h;
      },
      onResponseData(_c, chunk) {
        chunks.push(chunk);
        size += chunk.length;
      },
      onResponseEnd() {
        call.done();
        resolve({ status, headers, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size) });
      },
      onResponseError(_c, err) {
        call.done();
        reject(err);
      },
    });
  });
}
