// One table from what undici (or the upstream) can throw at us to what the client sees.
import { E, SignalmanError } from '../errors.js';

export type FailureKind = 'connect' | 'timeout' | 'status' | 'aborted' | 'protocol' | 'bad_response';

export interface UpstreamFailure {
  kind: FailureKind;
  /** Worth retrying the same backend (before any byte reached the client). */
  retryable: boolean;
  /** Worth trying the next fallback backend. */
  fallback: boolean;
  error: SignalmanError;
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Maps a thrown error from a call to backend `name`. */
export function classifyThrown(err: unknown, name: string, phase: 'headers' | 'body'): UpstreamFailure {
  const code = (err as { code?: string } | null)?.code ?? '';
  const errName = (err as { name?: string } | null)?.name ?? '';
  if (errName === 'AbortError' || code === 'UND_ERR_ABORTED' || code === 'ABORT_ERR') {
    return {
      kind: 'aborted',
      retryable: false,
      fallback: false,
      error: E.upstreamUnavailable(`request to backend '${name}' was aborted`, null, err),
    };
  }
  if (TIMEOUT_CODES.has(code)) {
    const what = code === 'UND_ERR_HEADERS_TIMEOUT' ? 'did not start answering' : 'went silent mid-response';
    return {
      kind: 'timeout',
      retryable: false,
      fallback: true,
      error: E.upstreamTimeout(
        `backend '${name}' ${what} within its timeout (${code}); raise timeout_ms / stream_idle_timeout_ms if it is just slow`,
        null,
        err,
      ),
    };
  }
  if (CONNECT_CODES.has(code)) {
    return {
      kind: 'connect',
      retryable: phase === 'headers',
      fallback: true,
      error: E.upstreamUnavailable(`cannot reach backend '${name}' (${code}); check its base_url and that it is up`, null, err),
    };
  }
  return {
    kind: 'protocol',
    retryable: false,
    fallback: true,
    error: E.upstreamBadResponse(`backend '${name}' failed: ${(err as Error)?.message ?? String(err)}`, null, err),
  };
}

/** A non-2xx upstream status: 429 and 5xx are retried then fall back; other 4xx are the client's to fix and pass through. */
export function classifyStatus(status: number, name: string): UpstreamFailure | null {
  if (status < 400) return null;
  if (status === 429 || status >= 500) {
    const error =
      status === 429
        ? new SignalmanError(
            'rate_limit_exceeded',
            429,
            'rate_limit_error',
            `backend '${name}' is rate limiting (429) and no fallback could answer`,
          )
        : E.upstreamUnavailable(`backend '${name}' answered ${status}`);
    return { kind: 'status', retryable: true, fallback: true, error };
  }
  return null;
}

/** A 2xx answer that is broken (a body or a streamed event that is not valid JSON): retried, then the next fallback. */
export function badAnswer(name: string, what: string): UpstreamFailure {
  return {
    kind: 'bad_response',
    retryable: true,
    fallback: true,
    error: E.upstreamBadResponse(`backend '${name}' answered ${what}; nothing of it was passed on`),
  };
}
