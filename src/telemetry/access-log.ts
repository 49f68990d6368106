// One JSON access line per request, in pino's line format (level, time, msg), built by hand from known
// fields of the record: no prompt, no key, no header, so no redaction pass. Profiling put pino's generic
// object serialisation plus redaction at ~50 µs of CPU per request; this line costs a few.
import type { RequestRecord } from './record.js';
import { FinishSink } from './sink.js';

/** Where access lines go: the batched writer (line-writer.ts) or any writable. */
export interface LineWriter {
  write(line: string): unknown;
}

const LEVEL_INFO = 30;
/**
 * Milliseconds to 3 decimals, as `(Math.round(x * 1000) / 1000).toString()` prints them, from integer parts:
 * a double's shortest form costs ~100 ns, integers are cheap (printing four times per line, this saved ~0.3 µs).
 */
const num = (x: number): string => {
  const n = Math.round(x * 1000);
  // Up to 15 digits a decimal is exactly the shortest form of its nearest double; negative, huge or NaN: the plain way.
  if (!(n >= 0 && n < 1e15)) return (n / 1000).toString();
  const int = Math.floor(n / 1000);
  const frac = n - int * 1000;
  if (frac === 0) return `${int}`;
  if (frac % 100 === 0) return `${int}.${frac / 100}`;
  if (frac % 10 === 0) return `${int}.${frac < 100 ? '0' : ''}${frac / 10}`;
  return `${int}.${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}`;
};
const usd = (x: number): string => (Math.round(x * 1e9) / 1e9).toString();
/** Printable ASCII other than `"` and `\`: quoted as is, the same as JSON.stringify would, without its call. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const str = (s: string | null): string => (s === null ? 'null' : PLAIN.test(s) ? `"${s}"` : JSON.stringify(s));
const maybe = (x: number | null): string => (x === null ? 'null' : num(x));

export function accessLine(r: RequestRecord): string {
  return (
    `{"level":${LEVEL_INFO},"time":${Date.now()},"msg":"request","reqId":${str(r.id)},"endpoint":"${r.endpoint}",` +
    `"model":${str(r.model)},"policy":${str(r.policy)},"backend":${str(r.backend)},"status":${r.status},` +
    `"outcome":"${r.outcome}","stream":${r.stream},"error":${str(r.error)},"attempts":${r.attempts.length},` +
    `"ms":${num(r.total_ms)},"ttftMs":${maybe(r.ttft_ms)},"upstreamMs":${num(r.upstream_ms)},"routeMs":${num(r.route_ms)},` +
    `"promptTokens":${r.prompt_tokens ?? 'null'},"completionTokens":${r.completion_tokens ?? 'null'},` +
    `"tokensEstimated":${r.tokens_estimated},"costUsd":${usd(r.cost_usd)}` +
    (r.reason === null ? '' : `,"route":{"chosen":${str(r.chosen)},"reason":"${r.reason}","router":${str(r.router)}}`) +
    (r.key_id === null ? '' : `,"keyId":${str(r.key_id)}`) +
    '}\n'
  );
}

export class AccessLogSink extends FinishSink {
  readonly name = 'access-log';
  /** `enabled` is asked per record, so `server.access_log` can be switched by a config reload. */
  constructor(
    private readonly out: LineWriter,
    private readonly enabled: () => boolean = () => true,
  ) {
    super();
  }

  protected onRecord(r: RequestRecord): void {
    if (this.enabled()) this.out.write(accessLine(r));
  }
}
