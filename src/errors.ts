// Every error a client or an operator can see is declared here once, with its code, HTTP status and
// OpenAI error type, so the README's error table, the tests and the code cannot drift apart.

export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'api_error'
  | 'timeout_error'
  | 'server_error';

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export class SignalmanError extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    readonly type: OpenAIErrorType,
    message: string,
    readonly param: string | null = null,
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
    this.name = 'SignalmanError';
  }

  /** Response headers that go with this error (retry-after, x-ratelimit-*), or null. */
  headers: Readonly<Record<string, string>> | null = null;

  withHeaders(h: Readonly<Record<string, string>>): this {
    this.headers = h;
    return this;
  }

  toJSON(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const def =
  (code: string, status: number, type: OpenAIErrorType) =>
  (message: string, param: string | null = null, cause?: unknown): SignalmanError =>
    new SignalmanError(code, status, type, message, param, cause === undefined ? undefined : { cause });

/** The catalogue. `test/unit/errors.test.ts` checks each code appears in the README's error table. */
export const E = {
  invalidJson: def('invalid_json', 400, 'invalid_request_error'),
  invalidRequest: def('invalid_request', 400, 'invalid_request_error'),
  outOfDomain: def('out_of_domain', 400, 'invalid_request_error'),
  unauthorized: def('unauthorized', 401, 'authentication_error'),
  invalidApiKey: def('invalid_api_key', 401, 'authentication_error'),
  adminDisabled: def('admin_disabled', 403, 'permission_error'),
  modelNotAllowed: def('model_not_allowed', 403, 'permission_error'),
  modelNotFound: def('model_not_found', 404, 'not_found_error'),
  notFound: def('not_found', 404, 'not_found_error'),
  methodNotAllowed: def('method_not_allowed', 405, 'invalid_request_error'),
  bodyTooLarge: def('body_too_large', 413, 'invalid_request_error'),
  unsupportedMediaType: def('unsupported_media_type', 415, 'invalid_request_error'),
  requestTooLarge: def('request_too_large', 400, 'invalid_request_error'),
  rateLimited: def('rate_limited', 429, 'rate_limit_error'),
  budgetExceeded: def('budget_exceeded', 429, 'rate_limit_error'),
  upstreamUnavailable: def('upstream_unavailable', 502, 'api_error'),
  upstreamBadResponse: def('upstream_bad_response', 502, 'api_error'),
  upstreamStreamFailed: def('upstream_stream_failed', 502, 'api_error'),
  notReady: def('not_ready', 503, 'server_error'),
  shuttingDown: def('shutting_down', 503, 'server_error'),
  overloaded: def('overloaded', 503, 'server_error'),
  limitsUnavailable: def('limits_unavailable', 503, 'server_error'),
  upstreamTimeout: def('upstream_timeout', 504, 'timeout_error'),
  configInvalid: def('config_invalid', 500, 'server_error'),
  routingFailed: def('routing_failed', 500, 'server_error'),
  internal: def('internal_error', 500, 'server_error'),
} as const;

/** Codes listed for documentation checks (README error table). */
export const errorCodes: readonly string[] = Object.values(E).map((make) => make('').code);

/** A config problem found at load: where it is and what to change. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly line: number | null,
    readonly column: number | null,
    readonly reason: string,
  ) {
    super(`${file}${line === null ? '' : `:${line}${column === null ? '' : `:${column}`}`}: ${reason}`);
    this.name = 'ConfigError';
  }
}

/** Several config problems reported together, so an operator fixes them in one pass. */
export class ConfigErrors extends Error {
  constructor(readonly problems: readonly ConfigError[]) {
    super(problems.map((p) => p.message).join('\n'));
    this.name = 'ConfigErrors';
  }
}
