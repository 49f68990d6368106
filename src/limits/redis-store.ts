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
import { createHash } from 'node:crypto';
import { Cluster } from 'ioredis';
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

// A lease: up to ARGV[3] requests of this minute at once, for a process to hand out by itself (limiter.ts).
const LEASE = `
local rpm, frac, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local used = tonumber(redis.call('GET', KEYS[2]) or '0') * (1 - frac) + tonumber(redis.call('GET', KEYS[1]) or '0')
local granted = math.min(want, math.floor(rpm - used))
if granted < 1 then return {0, tostring(used)} end
redis.call('INCRBY', KEYS[1], granted); redis.call('EXPIRE', KEYS[1], 120)
return {granted, tostring(used + granted)}`;

const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');
const ADMIT_SHA = sha1(ADMIT);
const CHARGE_SHA = sha1(CHARGE);
const LEASE_SHA = sha1(LEASE);

type AdmitReply = [Verdict, string, string, string, string];

interface Queued {
  sha: string;
  lua: string;
  keys: number;
  args: string[];
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/**
 * Checks and charges are sent in batches: the ones made in one turn of the event loop go out as one
 * pipeline (one socket write, one read), EVALSHA each. With one write per check, a CPU profile at c=16 on a
 * 2-core VM put ~80 µs per request in that socket write; a batch shares it. A script Redis does not know (a restart without
 * persistence) is sent once in full (EVAL). In a cluster, where one pipeline must stay on one slot, each goes alone.
 */
export class RedisLimitStore implements LimitStore {
  private queue: Queued[] = [];
  private scheduled = false;
  private readonly batching: boolean;

  /** `redis` is this store's own connection (fast-failing options: see limiter.ts); closed by close(). */
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    /** A batch not answered within this is failed (a hung Redis must not hang requests). */
    private readonly timeoutMs: number,
  ) {
    this.batching = !(redis instanceof Cluster);
  }

  private base(id: string): string {
    return `${this.prefix}rl:{${id}}:`;
  }

  private call(sha: string, lua: string, keys: number, args: string[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queue.push({ sha, lua, keys, args, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flush);
      }
    });
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (!this.batching) {
      for (const q of batch) this.one(q);
      return;
    }
    const p = this.redis.pipeline();
    for (const q of batch) p.evalsha(q.sha, q.keys, ...q.args);
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      const err = new Error(`Redis did not answer within ${this.timeoutMs} ms`);
      for (const q of batch) q.reject(err);
    }, this.timeoutMs);
    p.exec().then(
      (results) => {
        clearTimeout(timer);
        if (done) return;
        batch.forEach((q, i) => {
          const [err, value] = results?.[i] ?? [new Error('no reply'), null];
          if (err === null) q.resolve(value);
          else if (/NOSCRIPT/.test(err.message)) this.one(q);
          else q.reject(err);
        });
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (!done) for (const q of batch) q.reject(err);
      },
    );
  };

  /** One command alone: EVALSHA, then EVAL when Redis does not have the script yet. */
  private one(q: Queued): void {
    this.redis.evalsha(q.sha, q.keys, ...q.args).then(q.resolve, (err: Error) => {
      if (/NOSCRIPT/.test(err.message)) this.redis.eval(q.lua, q.keys, ...q.args).then(q.resolve, q.reject);
      else q.reject(err);
    });
  }

  async admit(i: AdmitInput): Promise<Usage> {
    const b = this.base(i.keyId);
    const { index, frac } = minuteOf(i.nowMs);
    const [verdict, req, tok, day, month] = (await this.call(ADMIT_SHA, ADMIT, 6, [
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
    ])) as AdmitReply;
    return { verdict, requests: Number(req), tokens: Number(tok), usdDay: Number(day), usdMonth: Number(month) };
  }

  async charge(c: ChargeInput): Promise<void> {
    const b = this.base(c.keyId);
    await this.call(CHARGE_SHA, CHARGE, 3, [
      `${b}t:${minuteOf(c.nowMs).index}`,
      `${b}usd:d:${dayOf(c.nowMs)}`,
      `${b}usd:m:${monthOf(c.nowMs)}`,
      String(c.tokens),
      String(c.usd),
    ]);
  }

  /** Up to `want` requests of this minute for `keyId` under `rpm`: how many were granted, and the count after. */
  async lease(keyId: string, rpm: number, want: number, nowMs: number): Promise<{ granted: number; requests: number }> {
    const b = this.base(keyId);
    const { index, frac } = minuteOf(nowMs);
    const [granted, used] = (await this.call(LEASE_SHA, LEASE, 2, [
      `${b}r:${index}`,
      `${b}r:${index - 1}`,
      String(rpm),
      String(frac),
      String(want),
    ])) as [number, string];
    return { granted: Number(granted), requests: Number(used) };
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
