import { getEmbedderPlugin } from '../embedders/registry.js';
import type { Embedder } from '../embedders/types.js';
import type { EnsembleMemberRecipe } from './ensemble.js';
import type { TrainOptions } from './mlp-train.js';
import type { Augment } from './augment.js';

// A recipe is everything needed to rebuild a router bit for bit: which embedder (with its options),
// the MLP's shape and training settings, and the seed. `train`, `eval` and the shipped artifacts in
// routers/ all name recipes from this table, so a number in the README points at one entry here.

export type Protocol = 'p1' | 'p2' | 'p3';

export interface Recipe {
  name: string;
  protocol: Protocol;
  /** Embedder plugin options, exactly as they would appear in a policy's YAML. */
  embedder: { type: string } & Record<string, unknown>;
  /** One MLP's shape and training settings (or `ensemble` instead). */
  mlp?: Omit<TrainOptions, 'output' | 'seed' | 'sampleWeights' | 'onEpoch'>;
  /** Several networks mixed into one graph (src/training/ensemble.ts); each member has its own seed. */
  ensemble?: EnsembleMemberRecipe[];
  /**
   * Also train on copies of the train rows (same outcomes; src/training/augment-copies.ts): 'stems' the
   * option-less copy, 'shapes' that plus chat, system-prompt and multi-turn copies (src/training/shapes.ts),
   * 'stem-chat' the option-less and chat copies only.
   */
  augment?: Augment;
  /** P3: sample weight of each augmentation copy relative to an original row (default 1). */
  copyWeight?: number;
  /**
   * P3: how the guard's threshold is picked. 'inner' (default): the model fitted outside the held-out
   * part scores the held-out rows. 'both': also the model fitted on the held-out part scores the rest,
   * and the threshold is the best one over both halves' scores pooled (every train row votes once).
   */
  thresholdPick?: 'inner' | 'both';
  /**
   * P3: also train on the project's own labelled prompts (a file of the dataset schema, benchmark 'chat',
   * category = label; path from the project root, e.g. data/chat/train.jsonl), each weighing `weight`
   * original rows. They are never scored and never pick the threshold.
   */
  extra?: { file: string; weight: number };
  seed: number;
  /** Has a trained artifact in routers/<name>/. */
  shipped: boolean;
  /** The protocol's best shipped router: what `eval` and `train` use when no router is named. */
  best?: boolean;
  note: string;
}

const LEX4096 = { type: 'lexical', dim: 4096 } as const;
const USE = { type: 'use-lite', workers: 1, max_batch: 64 } as const;
/** Both signals in one vector, equal shares; each member's vectors come from its own embedding cache. */
const CONCAT = { type: 'concat', members: [LEX4096, USE], weights: [1, 1] };
/** USE-lite distilled into a static table (signalman distill; embedders/static-use-lite): microseconds a prompt. */
const STATIC = { type: 'static', artifact: 'embedders/static-use-lite' } as const;
const CONCAT_STATIC = { type: 'concat', members: [LEX4096, STATIC], weights: [1, 1] };
/** Hashed n-grams in `dim` buckets; wider ones collide less on topic words (P3 CV, routers/README.md session 17). */
const lexical = (dim: number) => ({ type: 'lexical', dim }) as const;
/** CONCAT_STATIC with `dim` buckets. */
const concatStatic = (dim: number) => ({ ...CONCAT_STATIC, members: [lexical(dim), STATIC] });

/**
 * The P1 ensemble over a concat vector [lexical | sentence embedder]: a joint-outcome softmax regression on
 * the lexical part, three seeds of a joint-outcome network on the sentence part (averaging them smooths the
 * ranking: CV CPT(50%) 29.1% -> 28.4% at the old weights), and a subject prior on the whole vector.
 */
const p1Ensemble = (lexical: number, network: number, prior: number): EnsembleMemberRecipe[] => [
  { input: 0, kind: 'joint', mlp: { hidden: [], epochs: 20, lr: 0.01, batchSize: 256, l2: 2.5e-4 }, seed: 1, weight: lexical },
  ...[1, 2, 3].map((seed) => ({
    input: 1,
    kind: 'joint' as const,
    mlp: { hidden: [128], epochs: 30, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2 },
    seed,
    weight: network / 3,
  })),
  { input: 'all', kind: 'category-prior', mlp: { hidden: [], epochs: 30, lr: 0.01, batchSize: 256, l2: 5e-6 }, seed: 1, weight: prior },
];

/** The P2 ensemble on one sentence embedder: a quality network plus centroid priors from three k-means seeds. */
const p2Ensemble = (hidden: number): EnsembleMemberRecipe[] => [
  {
    input: 'all',
    kind: 'quality',
    mlp: { hidden: [hidden], epochs: 30, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2 },
    seed: 1,
    weight: 0.4,
  },
  ...[1, 2, 3].map((seed) => ({
    input: 'all' as const,
    kind: 'centroid-prior' as const,
    clusters: 128,
    temperature: 0.05,
    seed,
    weight: 0.2,
  })),
];
const P2_ENSEMBLE = p2Ensemble(128);

/** The shipped P3 guard's MLP (p3-concat-static-mlp-shapes). */
const P3_MLP = { hidden: [128], epochs: 30, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2 };
/** p3-lexical-lr's softmax regression. */
const P3_LR = { hidden: [], epochs: 30, lr: 0.01, batchSize: 256, l2: 5e-6 };
/**
 * One softmax graph: 0.5 x P3_MLP + 0.5 x a softmax regression with P3_LR's settings, both on the whole
 * concat vector. (Until session 14 the regression said `input: 0`, meant as the lexical part, but P3's
 * trainer gave ensembles no member slices, so it read the whole vector; it is written here as trained.)
 */
const P3_MLP_LR: EnsembleMemberRecipe[] = [
  { input: 'all', kind: 'quality', mlp: P3_MLP, seed: 1, weight: 0.5 },
  { input: 'all', kind: 'quality', mlp: P3_LR, seed: 1, weight: 0.5 },
];

/** The project's own labelled everyday chat prompts (data/chat/README.md): law, finance, health and ood. */
const CHAT_TRAIN = 'data/chat/train.jsonl';

/** How the shipped P3 recipe trains besides its members: copies at a quarter weight, threshold over both halves. */
const P3_SHIPPED_TRAINING = { copyWeight: 0.25, thresholdPick: 'both' } as const;

/** p3-concat-static-mlp-lr's members and training plus the project's chat prompts, each weighing `weight` rows. */
const p3WithChat = (weight: number) => ({ ensemble: P3_MLP_LR, ...P3_SHIPPED_TRAINING, extra: { file: CHAT_TRAIN, weight } });
/** P3_LR alone, trained as p3-concat-static-mlp-lr-chat2 (session 17's shipped recipe and its CV candidates). */
const p3LrWithChat2 = { mlp: P3_LR, ...P3_SHIPPED_TRAINING, extra: { file: CHAT_TRAIN, weight: 2 } };
/**
 * P3_LR over fine classes (protocols/p3.ts p3FineClass: an MMLU subject, a llmrouter cluster, a chat
 * prompt's label) whose probabilities are summed into law / finance / health / ood: a linear model gets
 * one direction per subject instead of one for everything out of domain.
 */
const P3_FINE_LR: EnsembleMemberRecipe = { input: 'all', kind: 'category-prior', mlp: P3_LR, seed: 1, weight: 1 };
/** P3_FINE_LR trained as p3-lex16k-static-lr-chat2 (session 18). */
const p3FineWithChat2 = { ensemble: [P3_FINE_LR], ...P3_SHIPPED_TRAINING, extra: { file: CHAT_TRAIN, weight: 2 } };

/**
 * P3 CV candidates (not shipped; no artifact): variants of p3-concat-static-mlp-shapes compared only by
 * `signalman eval --cv 2 --protocol p3` inside the train split (routers/README.md, the P3 CV table); none was scored on a test set.
 */
const p3Candidate = (name: string, note: string, r: Partial<Recipe>): Recipe => ({
  name,
  protocol: 'p3',
  embedder: CONCAT_STATIC,
  ...(r.ensemble === undefined ? { mlp: P3_MLP } : {}),
  augment: 'shapes',
  seed: 1,
  shipped: false,
  ...r,
  note: `CV candidate (routers/README.md, P3 CV): ${note}`,
});

/** p1-ensemble-static with its subject prior's weight split: `pair` of it over (subject, joint outcome) pairs. */
const p1PairPrior = (lex: number, net: number, subject: number, pair: number): EnsembleMemberRecipe[] =>
  p1Ensemble(lex, net, subject + pair).flatMap((m) =>
    m.kind !== 'category-prior'
      ? [m]
      : [...(subject > 0 ? [{ ...m, weight: subject }] : []), ...(pair > 0 ? [{ ...m, weight: pair, joint: true }] : [])],
  );

/** P1 CV candidates (session 18; not shipped): a prior over (subject, joint outcome) pairs, which gives a linear member a direction per outcome within each subject. */
const P1_CV_CANDIDATES: readonly Recipe[] = (
  [
    ['p1-cv-static-jointprior-35-30-35', 'the subject prior over (subject, joint outcome) pairs', [0.35, 0.3, 0, 0.35]],
    ['p1-cv-static-jointprior-20-30-50', 'the same at 0.2 / 0.3 / 0.5', [0.2, 0.3, 0, 0.5]],
    [
      'p1-cv-static-both-priors',
      'the subject prior split in half, one half over (subject, joint outcome) pairs',
      [0.35, 0.3, 0.175, 0.175],
    ],
  ] as const
).map(([name, what, [lex, net, subject, pair]]) => ({
  name,
  protocol: 'p1',
  embedder: CONCAT_STATIC,
  augment: 'stems',
  ensemble: p1PairPrior(lex, net, subject, pair),
  seed: 1,
  shipped: false,
  note: `CV candidate (routers/README.md, session 18): p1-ensemble-static with ${what}`,
}));
/** p1-ensemble-static on lexical 16384 + static: the width that lifted P3's regression, for the joint regression on the n-grams. */
const P1_WIDE_CANDIDATE: Recipe = {
  name: 'p1-cv-static-lex16k',
  protocol: 'p1',
  embedder: concatStatic(16384),
  augment: 'stems',
  ensemble: p1Ensemble(0.35, 0.3, 0.35),
  seed: 1,
  shipped: false,
  note: 'CV candidate (routers/README.md, session 18): p1-ensemble-static with 16384 hashed n-gram buckets instead of 4096',
};
/** The pair prior at stronger l2 (the subject prior's 5e-6 leaves 228 classes of ~60 rows each nearly unregularised). */
const P1_PAIR_L2_CANDIDATES: readonly Recipe[] = [1e-4, 5e-4].map((l2) => ({
  ...P1_CV_CANDIDATES[0]!,
  name: `p1-cv-static-jointprior-l2-${l2.toExponential().replace('e-', 'e')}`,
  ensemble: P1_CV_CANDIDATES[0]!.ensemble!.map((m) => (m.joint === true ? { ...m, mlp: { ...m.mlp!, l2 } } : m)),
  note: `CV candidate (routers/README.md, session 18): p1-cv-static-jointprior-35-30-35 with the pair prior's l2 at ${l2}`,
}));

/**
 * P2 CV candidates (session 18; not shipped): the shipped ensemble on the static part of lexical 16384 +
 * static, plus a regression (p2-lexical-lr's settings) on the whole wide vector at weight `w`: width is what
 * lifted P3's regression. The static part of an equal-weight concat is the unit vector times sqrt(1/2), so
 * the priors' temperature is scaled by it to keep their softmax as shipped.
 */
const P2_CV_CANDIDATES: readonly Recipe[] = [0.1, 0.2].map((w) => ({
  name: `p2-cv-lex16k-lr${Math.round(w * 100)}`,
  protocol: 'p2',
  embedder: concatStatic(16384),
  augment: 'shapes',
  ensemble: [
    ...p2Ensemble(256).map((m) => ({
      ...m,
      input: 1,
      weight: m.weight * (1 - w),
      ...(m.temperature === undefined ? {} : { temperature: m.temperature * Math.SQRT1_2 }),
    })),
    { input: 'all', kind: 'quality', mlp: { hidden: [], epochs: 20, lr: 0.01, batchSize: 256, l2: 5e-5 }, seed: 1, weight: w },
  ],
  seed: 1,
  shipped: false,
  note: `CV candidate (routers/README.md, session 18): p2-ensemble-static-h256 on the static part of lexical 16384 + static, plus a regression on the whole vector at weight ${w}`,
}));

/** The static table beside the prompt's shape (length, lines, character shares: embedders/shape.ts), shape weighing `w`. */
const staticShape = (w: number) => ({ type: 'concat', members: [STATIC, { type: 'shape' }], weights: [1, w] });

const P2_SHAPE_CANDIDATES: readonly Recipe[] = [0.1, 0.3, 1].map((w) => ({
  name: `p2-cv-shape${Math.round(w * 100)}`,
  protocol: 'p2',
  embedder: staticShape(w),
  augment: 'shapes',
  // The network reads both parts; the centroid priors the static part, whose concat scale sqrt(1 / (1 + w))
  // the temperature takes on, so they are the shipped priors.
  ensemble: p2Ensemble(256).map((m) =>
    m.kind === 'centroid-prior' ? { ...m, input: 0, temperature: m.temperature! * Math.sqrt(1 / (1 + w)) } : m,
  ),
  seed: 1,
  shipped: false,
  note: `CV candidate (routers/README.md, session 20): p2-ensemble-static-h256 with the prompt's shape beside the static table at weight ${w}; the network reads both`,
}));

const MEMBER_SHAPE_W = 0.1;
const P2_SHAPE_MEMBER_CANDIDATES: readonly Recipe[] = [0.05, 0.1].map((share) => ({
  name: `p2-cv-shape-member${Math.round(share * 100)}`,
  protocol: 'p2',
  embedder: staticShape(MEMBER_SHAPE_W),
  augment: 'shapes',
  // The shipped members on the static part (priors at the shipped temperature, as above); the network gives up `share`.
  ensemble: [
    ...p2Ensemble(256).map((m) =>
      m.kind === 'centroid-prior'
        ? { ...m, input: 0, temperature: m.temperature! * Math.sqrt(1 / (1 + MEMBER_SHAPE_W)) }
        : { ...m, input: 0, weight: m.weight - share },
    ),
    { input: 1, kind: 'quality' as const, mlp: { hidden: [16], epochs: 30, lr: 0.01, batchSize: 64, l2: 1e-4 }, seed: 1, weight: share },
  ],
  seed: 1,
  shipped: false,
  note: `CV candidate (routers/README.md, session 20): p2-ensemble-static-h256 on the static part, plus a small network on the prompt's shape alone at weight ${share}`,
}));

const P1_SHAPE_CANDIDATES: readonly Recipe[] = [0.05, 0.1].map((share) => ({
  name: `p1-cv-shape-member${Math.round(share * 100)}`,
  protocol: 'p1',
  embedder: { ...CONCAT_STATIC, members: [LEX4096, STATIC, { type: 'shape' }], weights: [1, 1, 0.1] },
  augment: 'stems',
  ensemble: [
    ...p1Ensemble(0.35, 0.3, 0.35).map((m) => ({ ...m, weight: m.weight * (1 - share) })),
    {
      input: 2,
      kind: 'joint' as const,
      mlp: { hidden: [16], epochs: 30, lr: 0.01, batchSize: 64, l2: 1e-4 },
      seed: 1,
      weight: share,
    },
  ],
  seed: 1,
  shipped: false,
  note: `CV candidate (routers/README.md, session 20): p1-ensemble-static plus a small joint-outcome network on the prompt's shape at weight ${share}`,
}));

/** p2-ensemble-static-h256 trained with the chat copies only (no system-prompt or multi-turn copies). */
const P2_CHAT_ONLY_CANDIDATE: Recipe = {
  name: 'p2-cv-chat-only',
  protocol: 'p2',
  embedder: STATIC,
  augment: 'stem-chat',
  ensemble: p2Ensemble(256),
  seed: 1,
  shipped: false,
  note: 'CV candidate (routers/README.md, session 20): p2-ensemble-static-h256 trained with chat copies only (llmrouter rows have no options to strip)',
};

const P3_CV_CANDIDATES: readonly Recipe[] = [
  p3Candidate('p3-cv-seeds3', 'p3-concat-static-mlp-shapes averaged over MLP seeds 1-3 (mean of their softmaxes)', {
    ensemble: [1, 2, 3].map((seed) => ({ input: 'all' as const, kind: 'quality' as const, mlp: P3_MLP, seed, weight: 1 / 3 })),
  }),
  p3Candidate('p3-cv-h256', 'p3-concat-static-mlp-shapes with 256 hidden units', { mlp: { ...P3_MLP, hidden: [256] } }),
  p3Candidate('p3-cv-static2', 'p3-concat-static-mlp-shapes with the static member weighted 2:1 over lexical in the concat', {
    embedder: { ...CONCAT_STATIC, weights: [1, 2] },
  }),
  p3Candidate('p3-cv-stem-chat', 'p3-concat-static-mlp-shapes trained with option-less and chat copies only', { augment: 'stem-chat' }),
  p3Candidate(
    'p3-cv-mlp-lr',
    'one graph: 0.5 x the MLP of p3-concat-static-mlp-shapes + 0.5 x a softmax regression (p3-lexical-lr settings) on the same vector',
    {
      ensemble: P3_MLP_LR,
    },
  ),
  p3Candidate('p3-cv-copyw025', 'p3-concat-static-mlp-shapes with each copy weighted 0.25 (the 4 copies of a row weigh as much as it)', {
    copyWeight: 0.25,
  }),
  p3Candidate('p3-cv-mlp-lr-copyw025', 'p3-cv-mlp-lr with each copy weighted 0.25 (p3-cv-copyw025)', {
    ensemble: P3_MLP_LR,
    copyWeight: 0.25,
  }),
  p3Candidate(
    'p3-cv-both',
    'p3-concat-static-mlp-shapes with its threshold picked on both halves of the train split (thresholdPick both)',
    {
      thresholdPick: 'both',
    },
  ),
  p3Candidate('p3-cv-mlp-lr-copyw025-both', 'p3-cv-mlp-lr-copyw025 with its threshold picked on both halves (thresholdPick both)', {
    ensemble: P3_MLP_LR,
    copyWeight: 0.25,
    thresholdPick: 'both',
  }),
  // Session 14, on top of the shipped p3-concat-static-mlp-lr (copies at 0.25, threshold over both halves).
  p3Candidate('p3-cv-lrlex', 'p3-concat-static-mlp-lr with its regression on the lexical part only (as its recipe once meant)', {
    ensemble: [P3_MLP_LR[0]!, { ...P3_MLP_LR[1]!, input: 0 }],
    ...P3_SHIPPED_TRAINING,
  }),
  p3Candidate('p3-cv-three', 'p3-concat-static-mlp-lr plus an MLP on the static part: 0.4 / 0.3 / 0.3', {
    ensemble: [
      { ...P3_MLP_LR[0]!, weight: 0.4 },
      { ...P3_MLP_LR[1]!, weight: 0.3 },
      { input: 1, kind: 'quality', mlp: P3_MLP, seed: 2, weight: 0.3 },
    ],
    ...P3_SHIPPED_TRAINING,
  }),
  ...[0.65, 0.35].map((w) =>
    p3Candidate(`p3-cv-mix${w * 100}`, `p3-concat-static-mlp-lr weighted ${w} MLP / ${1 - w} regression`, {
      ensemble: [
        { ...P3_MLP_LR[0]!, weight: w },
        { ...P3_MLP_LR[1]!, weight: 1 - w },
      ],
      ...P3_SHIPPED_TRAINING,
    }),
  ),
  // Session 15: the shipped recipe plus the project's own everyday chat prompts (data/chat/train.jsonl).
  ...[0.5, 1, 2, 3].map((weight) =>
    p3Candidate(
      `p3-cv-chat${String(weight).replace('.', '')}`,
      `p3-concat-static-mlp-lr plus data/chat/train.jsonl at weight ${weight}`,
      p3WithChat(weight),
    ),
  ),
  // Session 17: wider hashed n-grams (fewer bucket collisions of topic words), then the regression alone.
  ...[4096, 16384, 32768, 65536].map((dim) =>
    p3Candidate(`p3-cv-lexlr${dim / 1024}k`, `p3-lexical-lr with ${dim} buckets`, {
      embedder: lexical(dim),
      mlp: P3_LR,
      augment: undefined,
    }),
  ),
  ...[16384, 32768].map((dim) =>
    p3Candidate(`p3-cv-chat2-lex${dim / 1024}k`, `p3-concat-static-mlp-lr-chat2 with a ${dim}-bucket lexical member`, {
      embedder: concatStatic(dim),
      ...p3WithChat(2),
    }),
  ),
  p3Candidate('p3-cv-chat2-lex16k-lrlex', 'p3-cv-chat2-lex16k with its regression on the lexical part only', {
    embedder: concatStatic(16384),
    ...p3WithChat(2),
    ensemble: [P3_MLP_LR[0]!, { ...P3_MLP_LR[1]!, input: 0 }],
  }),
  p3Candidate('p3-cv-lr32k-chat2', 'a softmax regression (P3_LR) on 32768 hashed n-grams alone, trained as p3-concat-static-mlp-lr-chat2', {
    embedder: lexical(32768),
    ...p3LrWithChat2,
  }),
  ...[4096, 16384, 32768].map((dim) =>
    p3Candidate(
      `p3-cv-lr${dim / 1024}k-static-chat2`,
      `a softmax regression (P3_LR) on ${dim} hashed n-grams + static, trained as p3-concat-static-mlp-lr-chat2`,
      {
        embedder: concatStatic(dim),
        ...p3LrWithChat2,
      },
    ),
  ),
  // Session 18: one regression direction per subject (fine classes summed into their labels), not one for all of 'ood'.
  p3Candidate('p3-cv-lr16k-static-fine-chat2', 'p3-lex16k-static-lr-chat2 over fine classes (p3FineClass), summed into the labels', {
    embedder: concatStatic(16384),
    ...p3FineWithChat2,
  }),
  p3Candidate('p3-cv-lr16k-static-mixfine-chat2', 'p3-lex16k-static-lr-chat2 mixed half and half with p3-cv-lr16k-static-fine-chat2', {
    embedder: concatStatic(16384),
    ...p3FineWithChat2,
    ensemble: [
      { input: 'all', kind: 'quality', mlp: P3_LR, seed: 1, weight: 0.5 },
      { ...P3_FINE_LR, weight: 0.5 },
    ],
  }),
  p3Candidate('p3-cv-reg', 'p3-concat-static-mlp-shapes with more regularisation: dropout 0.3, l2 3e-4, 20 epochs', {
    mlp: { ...P3_MLP, dropout: 0.3, l2: 3e-4, epochs: 20 },
  }),
];

export const RECIPES: readonly Recipe[] = [
  {
    name: 'p1-lexical-lr',
    protocol: 'p1',
    embedder: LEX4096,
    mlp: { hidden: [], epochs: 20, lr: 0.01, batchSize: 256, l2: 2.5e-4 },
    seed: 1,
    shipped: true,
    note: 'logistic regression (MLP without hidden layer) on 4096 hashed word/char n-grams; outputs P(correct) per model',
  },
  {
    name: 'p1-lexical-lr-shapes',
    protocol: 'p1',
    embedder: LEX4096,
    mlp: { hidden: [], epochs: 20, lr: 0.01, batchSize: 256, l2: 2.5e-4 },
    augment: 'shapes',
    seed: 1,
    shipped: false,
    note: 'p1-lexical-lr trained on the train rows plus their option-less, chat, system-prompt and multi-turn copies (robustness to prompt shape)',
  },
  {
    name: 'p1-use-lite-mlp',
    protocol: 'p1',
    embedder: USE,
    mlp: { hidden: [128], epochs: 30, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2 },
    seed: 1,
    shipped: false,
    note: 'one hidden layer of 128 on USE-lite sentence embeddings',
  },
  {
    name: 'p1-static-mlp',
    protocol: 'p1',
    embedder: STATIC,
    mlp: { hidden: [128], epochs: 30, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2 },
    seed: 1,
    shipped: false,
    note: 'settings of p1-use-lite-mlp on the static (distilled USE-lite) embedder',
  },
  {
    name: 'p1-concat-static-lr',
    protocol: 'p1',
    embedder: CONCAT_STATIC,
    mlp: { hidden: [], epochs: 20, lr: 0.01, batchSize: 256, l2: 2.5e-4 },
    seed: 1,
    shipped: false,
    note: 'logistic regression on lexical 4096 + static (concat, equal weights); settings of p1-concat-lr, no model call',
  },
  {
    name: 'p2-lexical-lr',
    protocol: 'p2',
    embedder: LEX4096,
    mlp: { hidden: [], epochs: 20, lr: 0.01, batchSize: 256, l2: 5e-5 },
    seed: 1,
    shipped: true,
    note: 'logistic regression on 4096 hashed n-grams; one sigmoid per model predicts P(correct)',
  },
  {
    name: 'p2-use-lite-mlp',
    protocol: 'p2',
    embedder: USE,
    mlp: { hidden: [128], epochs: 30, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2 },
    seed: 1,
    shipped: true,
    note: 'one hidden layer of 128 on USE-lite sentence embeddings; one sigmoid per model predicts P(correct)',
  },
  {
    name: 'p2-static-mlp',
    protocol: 'p2',
    embedder: STATIC,
    mlp: { hidden: [128], epochs: 30, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2 },
    seed: 1,
    shipped: false,
    note: 'settings of p2-use-lite-mlp on the static (distilled USE-lite) embedder',
  },
  {
    name: 'p3-lexical-lr',
    protocol: 'p3',
    embedder: LEX4096,
    mlp: { hidden: [], epochs: 30, lr: 0.01, batchSize: 256, l2: 5e-6 },
    seed: 1,
    shipped: true,
    note: 'softmax regression over law/finance/health/ood on 4096 hashed n-grams (the sub-millisecond guard)',
  },
  {
    name: 'p3-use-lite-mlp',
    protocol: 'p3',
    embedder: USE,
    mlp: { hidden: [128], epochs: 30, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2 },
    seed: 1,
    shipped: true,
    note: 'one hidden layer of 128 on USE-lite sentence embeddings; softmax over law/finance/health/ood',
  },
  {
    name: 'p1-concat-lr',
    protocol: 'p1',
    embedder: CONCAT,
    mlp: { hidden: [], epochs: 20, lr: 0.01, batchSize: 256, l2: 2.5e-4 },
    seed: 1,
    shipped: false,
    note: 'logistic regression on lexical 4096 and USE-lite 512 side by side (concat embedder, equal weights); settings of p1-lexical-lr',
  },
  {
    name: 'p2-concat-mlp',
    protocol: 'p2',
    embedder: CONCAT,
    mlp: { hidden: [128], epochs: 30, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2 },
    seed: 1,
    shipped: false,
    note: 'one hidden layer of 128 on lexical 4096 + USE-lite 512 (concat, equal weights); settings of p2-use-lite-mlp',
  },
  {
    name: 'p3-concat-mlp',
    protocol: 'p3',
    embedder: CONCAT,
    mlp: { hidden: [128], epochs: 30, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2 },
    seed: 1,
    shipped: true,
    note: 'one hidden layer of 128 on lexical 4096 + USE-lite 512 (concat, equal weights); softmax over law/finance/health/ood',
  },
  {
    name: 'p1-ensemble',
    protocol: 'p1',
    embedder: CONCAT,
    augment: 'stems',
    ensemble: p1Ensemble(0.4, 0.25, 0.35),
    seed: 1,
    shipped: true,
    note: "one graph on the concat vector: 0.4 x softmax regression over the 4 joint outcomes (both wrong / only weak right / only strong right / both right) on its lexical part + 3 x 0.25/3 x MLP 512-128-4 over the same outcomes on its USE-lite part (seeds 1-3) + 0.35 x subject prior (softmax regression over the 57 MMLU subjects on the whole vector, times each subject's mean outcome per model on the train rows); trained on the train rows plus a copy of each without its lettered options; chosen by 2-fold cross-validation on the train half (signalman eval --cv 2)",
  },
  {
    name: 'p1-ensemble-v1',
    protocol: 'p1',
    embedder: CONCAT,
    ensemble: [
      { input: 0, kind: 'joint', mlp: { hidden: [], epochs: 20, lr: 0.01, batchSize: 256, l2: 2.5e-4 }, seed: 1, weight: 0.45 },
      {
        input: 1,
        kind: 'joint',
        mlp: { hidden: [128], epochs: 30, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2 },
        seed: 1,
        weight: 0.2,
      },
      { input: 'all', kind: 'category-prior', mlp: { hidden: [], epochs: 30, lr: 0.01, batchSize: 256, l2: 5e-6 }, seed: 1, weight: 0.35 },
    ],
    seed: 1,
    shipped: false,
    note: "the shipped p1-ensemble until format augmentation and seed bagging (CV 0.668 / 29.1% against 0.672 / 28.1%): one graph on the concat vector: 0.45 x softmax regression over the 4 joint outcomes (both wrong / only weak right / only strong right / both right) on its lexical part + 0.2 x MLP 512-128-4 over the same outcomes on its USE-lite part + 0.35 x subject prior (softmax regression over the 57 MMLU subjects on the whole vector, times each subject's mean outcome per model on the train rows); weights chosen by 2-fold cross-validation on the train half",
  },
  {
    name: 'p2-ensemble',
    protocol: 'p2',
    embedder: USE,
    ensemble: P2_ENSEMBLE,
    seed: 1,
    shipped: true,
    note: "one graph on USE-lite: 0.4 x the MLP of p2-use-lite-mlp + 3 x 0.2 x centroid prior (128 spherical k-means clusters of the train vectors, seeds 1-3, softmax over cosine / 0.05, times each cluster's mean score per model); settings chosen by 2-fold cross-validation on the train half",
  },
  // The USE-lite member of an ensemble replaced by its distilled static table (issue #15: every decision < 1 ms).
  {
    name: 'p1-ensemble-static',
    protocol: 'p1',
    embedder: CONCAT_STATIC,
    augment: 'stems',
    ensemble: p1Ensemble(0.35, 0.3, 0.35),
    seed: 1,
    shipped: true,
    best: true,
    note: 'p1-ensemble with the static (distilled USE-lite) table in place of USE-lite, every decision < 1 ms: one graph on lexical 4096 + static 256 (concat): 0.35 x softmax regression over the 4 joint outcomes on the lexical part + 3 x 0.3/3 x MLP 256-128-4 over the same outcomes on the static part (seeds 1-3) + 0.35 x subject prior on the whole vector; trained on the train rows plus their option-less copies; weights chosen by 2-fold cross-validation on the train half (signalman eval --cv 2; routers/README.md)',
  },
  {
    name: 'p2-ensemble-static',
    protocol: 'p2',
    embedder: STATIC,
    augment: 'shapes',
    ensemble: P2_ENSEMBLE,
    seed: 1,
    shipped: true,
    note: 'p2-ensemble on the static (distilled USE-lite) table instead of USE-lite, every decision < 1 ms; same members and weights; trained on the train rows plus their chat, system-prompt and multi-turn copies (chosen over no copies by 2-fold cross-validation on the train rows)',
  },
  {
    name: 'p2-ensemble-static-h256',
    protocol: 'p2',
    embedder: STATIC,
    augment: 'shapes',
    ensemble: p2Ensemble(256),
    seed: 1,
    shipped: true,
    best: true,
    note: 'p2-ensemble-static with its quality network 256-256-9 instead of 256-128-9: chosen by cross-validation on the train rows (routers/README.md: on the same 2 and 3 folds never worse in AIQ or cost to match, better in both means)',
  },
  {
    name: 'p3-concat-static-mlp',
    protocol: 'p3',
    embedder: CONCAT_STATIC,
    mlp: { hidden: [128], epochs: 30, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2 },
    seed: 1,
    shipped: false,
    note: 'p3-concat-mlp with the static table in place of USE-lite: one hidden layer of 128 on lexical 4096 + static 256; softmax over law/finance/health/ood',
  },
  {
    name: 'p3-concat-static-mlp-shapes',
    protocol: 'p3',
    embedder: CONCAT_STATIC,
    mlp: { hidden: [128], epochs: 30, lr: 0.001, batchSize: 64, l2: 1e-4, dropout: 0.2 },
    augment: 'shapes',
    seed: 1,
    shipped: true,
    note: 'p3-concat-static-mlp trained on the train rows plus their option-less, chat, system-prompt and multi-turn copies (same labels), so an in-domain question asked conversationally is not taken for out-of-domain',
  },
  {
    name: 'p3-concat-static-mlp-lr',
    protocol: 'p3',
    embedder: CONCAT_STATIC,
    ensemble: P3_MLP_LR,
    augment: 'shapes',
    copyWeight: 0.25,
    thresholdPick: 'both',
    seed: 1,
    shipped: true,
    note: "the shipped P3 router of sessions 10-14, chosen by P3 cross-validation (routers/README.md; the CV candidate p3-cv-mlp-lr-copyw025-both): one softmax graph, 0.5 x p3-concat-static-mlp-shapes's MLP + 0.5 x a softmax regression with p3-lexical-lr's settings, both on the whole lexical + static vector; shaped copies weighted 0.25 each; guard threshold picked over both halves of the train split",
  },
  {
    name: 'p3-concat-static-mlp-lr-chat',
    protocol: 'p3',
    embedder: CONCAT_STATIC,
    augment: 'shapes',
    ...p3WithChat(0.5),
    seed: 1,
    shipped: true,
    note: 'the shipped P3 router of session 15: p3-concat-static-mlp-lr trained also on the project-written everyday chat prompts of data/chat/train.jsonl, each weighing half a train row (the CV candidate p3-cv-chat05): level with it on the P3 folds, better on everyday chat prompts (data/chat/heldout.jsonl; routers/README.md, session 15)',
  },
  {
    name: 'p3-concat-static-mlp-lr-chat2',
    protocol: 'p3',
    embedder: CONCAT_STATIC,
    augment: 'shapes',
    ...p3WithChat(2),
    seed: 1,
    shipped: true,
    note: 'the shipped P3 router of session 16: p3-concat-static-mlp-lr-chat with each chat prompt weighing two train rows (the CV candidate p3-cv-chat2): ahead of it on the P3 folds and on folds of the chat prompts themselves (eval --cv-extra; routers/README.md, session 16)',
  },
  {
    name: 'p3-lex16k-static-lr-chat2',
    protocol: 'p3',
    embedder: concatStatic(16384),
    augment: 'shapes',
    ...p3LrWithChat2,
    seed: 1,
    shipped: true,
    note: 'the shipped P3 router of session 17: one softmax regression (p3-lexical-lr settings) over 16384 hashed n-grams + the static table, trained as p3-concat-static-mlp-lr-chat2 (shaped copies at 0.25, chat prompts at 2, threshold over both halves); the CV candidate p3-cv-lr16k-static-chat2: ahead of p3-concat-static-mlp-lr-chat2 on all five P3 folds, level with 32768 buckets there and half its vector, which keeps the decision cheap (routers/README.md, session 17)',
  },
  {
    name: 'p3-lex16k-static-fine-chat2',
    protocol: 'p3',
    embedder: concatStatic(16384),
    augment: 'shapes',
    ...p3FineWithChat2,
    seed: 1,
    shipped: true,
    best: true,
    note: "one softmax regression (p3-lexical-lr settings) over 16384 hashed n-grams + the static table whose classes are the train rows' subjects, llmrouter clusters and chat labels, summed into law / finance / health / ood; trained as p3-lex16k-static-lr-chat2 (shaped copies at 0.25, chat prompts at 2, threshold over both halves); the CV candidate p3-cv-lr16k-static-fine-chat2: ahead of p3-lex16k-static-lr-chat2 on all five P3 folds (routers/README.md, session 18)",
  },
  ...P1_CV_CANDIDATES,
  ...P1_PAIR_L2_CANDIDATES,
  P1_WIDE_CANDIDATE,
  ...P2_CV_CANDIDATES,
  ...P2_SHAPE_CANDIDATES,
  ...P2_SHAPE_MEMBER_CANDIDATES,
  ...P1_SHAPE_CANDIDATES,
  P2_CHAT_ONLY_CANDIDATE,
  ...P3_CV_CANDIDATES,
];

export function findRecipe(name: string): Recipe {
  const r = RECIPES.find((x) => x.name === name);
  if (r === undefined) throw new Error(`unknown router recipe '${name}'; known: ${RECIPES.map((x) => x.name).join(', ')}`);
  return r;
}

export const recipesFor = (p: Protocol): Recipe[] => RECIPES.filter((r) => r.protocol === p);
export const shippedRecipe = (p: Protocol): Recipe => {
  const r = RECIPES.find((x) => x.protocol === p && x.best === true);
  if (r === undefined) throw new Error(`no shipped recipe for ${p}`);
  return r;
};

/** Builds the recipe's embedder through the gateway's own plugin registry. */
export async function createEmbedder(spec: Recipe['embedder']): Promise<Embedder> {
  const plugin = getEmbedderPlugin(spec.type);
  if (plugin === undefined) throw new Error(`unknown embedder type '${spec.type}'`);
  const opts = plugin.options.parse(spec);
  return plugin.create(opts, { resolvePath: (p) => p });
}
