import { describe, expect, it } from 'vitest';
import type { CompiledPolicy } from '../../src/routers/compile.js';
import type { CompiledBackend } from '../../src/upstream/backend.js';
import { Policy } from '../../src/config/schema.js';
import { decide, effectiveLambda } from '../../src/routers/policy.js';
import { SteerController } from '../../src/routers/steer.js';
import { conversationKey, StickyStore } from '../../src/routers/sticky.js';
import { seededRandom } from '../../src/util/random.js';

const backend = (name: string, input: number, output: number) =>
  ({ name, config: { price: { input_per_mtok: input, output_per_mtok: output } } }) as unknown as CompiledBackend;
const backends = new Map([
  ['big', backend('big', 10, 30)],
  ['mid', backend('mid', 1, 3)],
  ['small', backend('small', 0.1, 0.3)],
]);
const policy = (objective: unknown, fallbacks: string[] = []) => {
  const config = Policy.parse({ name: 'p', candidates: ['big', 'mid', 'small'], objective, fallbacks, expected_output_tokens: 1000 });
  return { name: 'p', config, candidateNames: ['big', 'mid', 'small'], fallbacks, router: { type: 'x' } } as unknown as CompiledPolicy;
};
const scores = (big: number, mid: number, small: number) => [
  { backend: 'big', quality: big, evidence: {} },
  { backend: 'mid', quality: mid, evidence: {} },
  { backend: 'small', quality: small, evidence: {} },
];

describe('decide', () => {
  it('maximises quality - lambda x expected cost', () => {
    // Expected costs at 4000 prompt chars (1000 tokens) + 1000 output tokens: big 0.04, mid 0.004, small 0.0004 USD.
    const p = policy({ kind: 'utility', lambda: 0 });
    expect(decide({ policy: p, backends, scores: scores(0.9, 0.8, 0.5), promptChars: 4000 }).chosen).toBe('big');
    const d = decide({ policy: p, backends, scores: scores(0.9, 0.8, 0.5), promptChars: 4000, lambda: 5 });
    expect(d.chosen).toBe('mid'); // 0.9-0.2=0.7 < 0.8-0.02=0.78
    expect(d.candidates.find((c) => c.backend === 'big')?.expectedCostUsd).toBeCloseTo(0.04, 9);
    expect(decide({ policy: p, backends, scores: scores(0.9, 0.8, 0.5), promptChars: 4000, lambda: 200 }).chosen).toBe('small');
  });

  it('threshold: the cheapest candidate over the bar, else the best', () => {
    const p = policy({ kind: 'threshold', min_quality: 0.7 });
    expect(decide({ policy: p, backends, scores: scores(0.9, 0.75, 0.5), promptChars: 100 }).chosen).toBe('mid');
    expect(decide({ policy: p, backends, scores: scores(0.6, 0.65, 0.5), promptChars: 100 }).chosen).toBe('mid');
    expect(decide({ policy: p, backends, scores: scores(0.9, 0.75, 0.5), promptChars: 100, qualityBias: 0.8 }).chosen).toBe('big');
  });

  it('orders the chosen backend first, then only the declared fallbacks', () => {
    const d = decide({
      policy: policy({ kind: 'utility', lambda: 0 }, ['small', 'big']),
      backends,
      scores: scores(0.9, 0.1, 0.1),
      promptChars: 10,
    });
    expect(d.order).toEqual(['big', 'small']);
  });

  it('scales lambda by the quality bias', () => {
    const p = policy({ kind: 'utility', lambda: 4 });
    expect(effectiveLambda({ policy: p })).toBe(4);
    expect(effectiveLambda({ policy: p, qualityBias: 0.5 })).toBe(4);
    expect(effectiveLambda({ policy: p, qualityBias: 0.8 })).toBeCloseTo(1, 9);
    expect(effectiveLambda({ policy: p, qualityBias: 1 })).toBe(0);
  });
});

describe('steering', () => {
  it('drives the share of the expensive backend to its target', () => {
    // Quality gaps between big and small are spread out; lambda decides which side of the cost line each falls.
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const ctl = new SteerController({ target: 'share', backend: 'big', share: 0.3, window: 200 }, 1);
    const cost = 0.01; // big costs 0.01 USD more per call
    let recent = 0;
    for (let i = 0; i < 6000; i++) {
      const gap = rand() * 0.5;
      const chosen = gap - ctl.lambda() * cost > 0 ? 'big' : 'small';
      if (i >= 4000 && chosen === 'big') recent++;
      ctl.observe(chosen, chosen === 'big' ? cost : 0, i);
    }
    expect(recent / 2000).toBeGreaterThan(0.25);
    expect(recent / 2000).toBeLessThan(0.35);
  });

  it('drives expected spend per hour toward its target', () => {
    const ctl = new SteerController({ target: 'spend', usd_per_hour: 36, window_s: 60 }, 1); // 0.01 USD/s
    const rand = seededRandom(7);
    let spent = 0;
    let t = 0;
    for (let i = 0; i < 20_000; i++) {
      t += 100; // 10 requests per second
      const chosen = rand() * 0.5 - ctl.lambda() * 0.01 > 0 ? 'big' : 'small';
      const usd = chosen === 'big' ? 0.01 : 0.0001;
      if (i >= 15_000) spent += usd;
      ctl.observe(chosen, usd, t);
    }
    const perHour = (spent / (5000 * 0.1)) * 3600;
    expect(perHour).toBeGreaterThan(36 * 0.8);
    expect(perHour).toBeLessThan(36 * 1.2);
  });
});

describe('sticky conversations', () => {
  const cfg = { enabled: true, header: 'x-signalman-conversation-id', ttl_s: 60, max_entries: 2 };
  it('keys a conversation by its opening, the same on every turn', () => {
    const t1 = conversationKey(
      cfg,
      {
        messages: [
          { role: 'system', content: 's' },
          { role: 'user', content: 'q1' },
        ],
      },
      undefined,
    );
    const t2 = conversationKey(
      cfg,
      {
        messages: [
          { role: 'system', content: 's' },
          { role: 'user', content: 'q1' },
          { role: 'assistant', content: 'a' },
          { role: 'user', content: 'q2' },
        ],
      },
      undefined,
    );
    expect(t1?.key).toBe(t2?.key);
    expect(t1?.followUp).toBe(false);
    expect(t2?.followUp).toBe(true);
    const other = conversationKey(cfg, { messages: [{ role: 'user', content: 'q9' }] }, undefined);
    expect(other?.key).not.toBe(t1?.key);
    expect(typeof t1?.key).toBe('number'); // a hash, never equal to a header's 'h:' key
    expect(conversationKey(cfg, {}, 'abc')).toEqual({ key: 'h:abc', followUp: true });
  });

  it('forgets by TTL and by LRU bound', () => {
    const s = new StickyStore(2);
    s.set('a', 'big', 1000);
    s.set('b', 'mid', 1000);
    expect(s.get('a', 999)).toBe('big');
    expect(s.get('a', 1000)).toBeUndefined();
    s.set('c', 'small', 5000);
    s.set('d', 'small', 5000);
    expect(s.size).toBe(2);
    expect(s.get('b', 0)).toBeUndefined();
  });
});
