// Where a client key's usage is counted. Requests and tokens per minute use a sliding window (this minute's
// count plus the previous minute's, weighted by how much of it is still inside the last 60 s); spend is
// per UTC day and month. Two stores with the same semantics: Redis (shared by every replica: one atomic
// script per check) and memory (one process: no Redis, or Redis failing under `fail_open`).

export type Verdict = 'ok' | 'requests' | 'tokens' | 'usd_per_day' | 'usd_per_month';

export interface AdmitInput {
  keyId: string;
  rpm: number; // 0 = no limit
  tpm: number;
  usdPerDay: number;
  usdPerMonth: number;
  /** Tokens this request will use at least (its prompt, estimated): checked against what is left of tpm. */
  tokens: number;
  /** USD put aside now toward the budgets (the request's estimated cost), corrected by charge() later. */
  reserveUsd: number;
  nowMs: number;
}

/** Usage after the check (a request that passes is counted in `requests`). */
export interface Usage {
  verdict: Verdict;
  requests: number;
  tokens: number;
  usdDay: number;
  usdMonth: number;
}

export interface ChargeInput {
  keyId: string;
  tokens: number;
  /** Actual cost minus what admit() reserved (may be negative). */
  usd: number;
  nowMs: number;
}

export interface LimitStore {
  admit(i: AdmitInput): Promise<Usage>;
  charge(c: ChargeInput): Promise<void>;
  close(): Promise<void>;
}

const MINUTE = 60_000;
/** The minute index of `ms` and how far into it we are (0..1). */
export const minuteOf = (ms: number) => ({ index: Math.floor(ms / MINUTE), frac: (ms % MINUTE) / MINUTE });
/** UTC day and month bucket names. */
export const dayOf = (ms: number) => new Date(ms).toISOString().slice(0, 10).replaceAll('-', '');
export const monthOf = (ms: number) => new Date(ms).toISOString().slice(0, 7).replace('-', '');

/** The verdict for counts seen before this request: the order of checks is the same in Lua (redis-store.ts). */
export function judge(i: AdmitInput, requests: number, tokens: number, usdDay: number, usdMonth: number): Verdict {
  if (i.rpm > 0 && requests + 1 > i.rpm) return 'requests';
  if (i.tpm > 0 && tokens + i.tokens > i.tpm) return 'tokens';
  if (i.usdPerDay > 0 && usdDay >= i.usdPerDay) return 'usd_per_day';
  if (i.usdPerMonth > 0 && usdMonth >= i.usdPerMonth) return 'usd_per_month';
  return 'ok';
}
