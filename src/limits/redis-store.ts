// Limits counted in Redis, so any number of replicas on one Redis enforce one limit: each check is one
// atomic script (read the windows and spend, decide, count the request and reserve its cost).
//
//   {p}rl:{<key id>}:r:<minute>     string  requests that arrived in that minute (epoch minute); TTL 120 s
//   {p}rl:{<key id>}:t:<minute>     string  tokens charged in that minute; TTL 120 s
//   {p}rl:{<key id>}:usd:d:<yyyymmdd>   string  USD spent that UTC day (reserved at admission, corrected after); TTL 2 d
//   {p}rl:{<key id>}:usd:m:<yyyymm>     string  USD spent that UTC month; TTL 32 d
//
// The key id is a hash tag, so in a Redis Cluster one script's keys share a slot (or the prefix's own tag,
// when it has one, which Redis reads first: then every limit key lives on the prefix's slot).
import type { RedisClient } from '../telemetry/redis-client.js';
import { dayOf, minuteOf, monthOf, type AdmitInput, type ChargeInput, type LimitStore, type Usage, type Verdict } from './store.js';

// The checks in the order of store.ts judge(); numbers go back as strings (Lua would truncate floats).
const ADMIT = `
local frac = tonumber(ARGV[5])
local function num(k) return tonumber(redis.call('GET', k) or '0') end
local rpm, tpm, bd, bm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local req, tok, day, month = 0, 0, 0, 0
if rpm > 0 then req = num(KEYS[2]) * (1 - frac) + num(KEYS[1]) end
if tpm > 0 then tok = num(KEYS[4]) * (1 - frac) + num(KEYS[3]) end
if bd > 0 or bm > 0 then day = num(KEYS[5]); month = num(KEYS[6]) end
local verdict = 'ok'
if rpm > 0 and req + 1 > rpm then verdict = 'requests'
elseif tpm > 0 and tok + tonumber(ARGV[6]) > tpm then verdict = 'tokens'
elseif bd > 0 and day >= bd then verdict = 'usd_per_day'
elseif bm > 0 and month >= bm then verdict = 'usd_per_month' end
if verdict ~= 'requests' and verdict ~= 'tokens' and rpm > 0 then
  redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], 120); req = req + 1
end
if verdict == 'ok' and tonumber(ARGV[7]) > 0 then
  day = tonumber(redis.call('INCRBYFLOAT', KEYS[5], ARGV[7])); redis.call('EXPIRE', KEYS[5], 172800)
  month = tonumber(redis.call('INCRBYFLOAT', KEYS[6], ARGV[7])); redis.call('EXPIRE', KEYS[6], 2764800)
end
return {verdict, tostring(req), tostring(tok), tostring(day), tostring(month)}`;

const CHARGE = `
if tonumber(ARGV[1]) > 0 then redis.call('INCRBY', KEYS[1], ARGV[1]); redis.call('EXPIRE', KEYS[1], 120) end
if tonumber(ARGV[2]) ~= 0 then
  redis.call('INCRBYFLOAT', KEYS[2], ARGV[2]); redis.call('EXPIRE', KEYS[2], 172800)
  redis.call('INCRBYFLOAT', KEYS[3], ARGV[2]); redis.call('EXPIRE', KEYS[3], 2764800)
end
return 1`;

interface LimitCommands {
  signalmanAdmit(...args: string[]): Promise<[Verdict, string, string, string, string]>;
  signalmanCharge(...args: string[]): Promise<number>;
}

export class RedisLimitStore implements LimitStore {
  private readonly redis: RedisClient & LimitCommands;

  /** `redis` is this store's own connection (fast-failing options: see limiter.ts); closed by close(). */
  constructor(
    redis: RedisClient,
    private readonly prefix: string,
  ) {
    redis.defineCommand('signalmanAdmit', { numberOfKeys: 6, lua: ADMIT });
    redis.defineCommand('signalmanCharge', { numberOfKeys: 3, lua: CHARGE });
    this.redis = redis as RedisClient & LimitCommands;
  }

  private base(id: string): string {
    return `${this.prefix}rl:{${id}}:`;
  }

  async admit(i: AdmitInput): Promise<Usage> {
    const b = this.base(i.keyId);
    const { index, frac } = minuteOf(i.nowMs);
    const [verdict, req, tok, day, month] = await this.redis.signalmanAdmit(
      `${b}r:${index}`,
      `${b}r:${index - 1}`,
      `${b}t:${index}`,
      `${b}t:${index - 1}`,
      `${b}usd:d:${dayOf(i.nowMs)}`,
      `${b}usd:m:${monthOf(i.nowMs)}`,
      String(i.rpm),
      String(i.tpm),
      String(i.usdPerDay),
      String(i.usdPerMonth),
      String(frac),
      String(i.tokens),
      String(i.reserveUsd),
    );
    return { verdict, requests: Number(req), tokens: Number(tok), usdDay: Number(day), usdMonth: Number(month) };
  }

  async charge(c: ChargeInput): Promise<void> {
    const b = this.base(c.keyId);
    await this.redis.signalmanCharge(
      `${b}t:${minuteOf(c.nowMs).index}`,
      `${b}usd:d:${dayOf(c.nowMs)}`,
      `${b}usd:m:${monthOf(c.nowMs)}`,
      String(c.tokens),
      String(c.usd),
    );
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
