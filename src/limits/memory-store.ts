// Limits counted in this process only: the store without Redis, and the stand-in while Redis fails under
// `limits.on_redis_error: fail_open`. Same windows and checks as the Redis script.
import { dayOf, judge, minuteOf, monthOf, type AdmitInput, type ChargeInput, type LimitStore, type Usage } from './store.js';

interface Window {
  index: number;
  cur: number;
  prev: number;
}
interface Spend {
  bucket: string;
  usd: number;
}
interface KeyUsage {
  requests: Window;
  tokens: Window;
  day: Spend;
  month: Spend;
}

/** Rolls a window forward to minute `index` and returns its sliding count at `frac`. */
function slide(w: Window, index: number, frac: number): number {
  if (index !== w.index) {
    w.prev = index === w.index + 1 ? w.cur : 0;
    w.cur = 0;
    w.index = index;
  }
  return w.prev * (1 - frac) + w.cur;
}
const spendIn = (s: Spend, bucket: string): number => {
  if (s.bucket !== bucket) {
    s.bucket = bucket;
    s.usd = 0;
  }
  return s.usd;
};

export class MemoryLimitStore implements LimitStore {
  private readonly keys = new Map<string, KeyUsage>();

  private of(id: string): KeyUsage {
    let u = this.keys.get(id);
    if (u === undefined) {
      u = {
        requests: { index: 0, cur: 0, prev: 0 },
        tokens: { index: 0, cur: 0, prev: 0 },
        day: { bucket: '', usd: 0 },
        month: { bucket: '', usd: 0 },
      };
      this.keys.set(id, u);
    }
    return u;
  }

  admit(i: AdmitInput): Promise<Usage> {
    const u = this.of(i.keyId);
    const { index, frac } = minuteOf(i.nowMs);
    let requests = slide(u.requests, index, frac);
    const tokens = slide(u.tokens, index, frac);
    let usdDay = spendIn(u.day, dayOf(i.nowMs));
    let usdMonth = spendIn(u.month, monthOf(i.nowMs));
    const verdict = judge(i, requests, tokens, usdDay, usdMonth);
    if (verdict !== 'requests' && verdict !== 'tokens') {
      u.requests.cur++;
      requests++;
    }
    if (verdict === 'ok' && i.reserveUsd > 0) {
      usdDay = u.day.usd += i.reserveUsd;
      usdMonth = u.month.usd += i.reserveUsd;
    }
    return Promise.resolve({ verdict, requests, tokens, usdDay, usdMonth });
  }

  charge(c: ChargeInput): Promise<void> {
    const u = this.of(c.keyId);
    const { index, frac } = minuteOf(c.nowMs);
    slide(u.tokens, index, frac);
    u.tokens.cur += c.tokens;
    spendIn(u.day, dayOf(c.nowMs));
    spendIn(u.month, monthOf(c.nowMs));
    u.day.usd += c.usd;
    u.month.usd += c.usd;
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
