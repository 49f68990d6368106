#!/usr/bin/env python3
"""Re-scores the per-prompt dumps of `signalman eval` (eval/dumps/*.jsonl.gz) from the text of
../shared/datasets/PROTOCOLS.md alone: Python's standard library, none of the project's code, so a
mistake in src/training/metrics*.ts cannot hide in both. Usage (from the repository root):

    python3 eval/rescore.py [--data ../shared/datasets] [--dumps eval/dumps] [--json]

test/training/rescore.test.ts compares its --json output with eval/results.json.

Where the protocol text leaves a detail open, the choice is written next to it. A result that
`npm run eval` and this script both give is one the protocol defines, not an artefact of either.
"""
import argparse
import gzip
import hashlib
import json


def bucket(s):
    return int(hashlib.sha256(s.encode('utf-8')).hexdigest()[0:8], 16) % 2


def rows(path):
    """A dataset's rows, without the contaminated ones (left out everywhere)."""
    with open(path, encoding='utf-8') as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                if not r.get('contaminated'):
                    yield r


def dump(dumps, name):
    with gzip.open(f'{dumps}/{name}.jsonl.gz', 'rt', encoding='utf-8') as fh:
        return [json.loads(line) for line in fh if line.strip()]


def first_reach(curve, target):
    """The x at which a curve of (x, y) points, in order of x, first reaches y >= target, interpolated
    linearly on the segment that crosses it; None when it never does."""
    for i, (x1, y1) in enumerate(curve):
        if y1 >= target:
            x0, y0 = curve[i - 1] if i > 0 else (x1, y1)
            return x1 if y1 == y0 else x0 + (target - y0) * (x1 - x0) / (y1 - y0)
    return None


def p1(rs, score, strong, weak):
    """APGR and CPT(50%) of one test set. The protocol's '11 edges of 10 equal-count bins': the score
    quantiles at 0, 0.1, ..., 1, each interpolated linearly between the two nearest sorted scores (the
    usual definition, numpy's default). Taking the sorted score at floor(i * n / 10) instead moves APGR
    by at most 0.0006 here (MT-Bench, 72 prompts) but its CPT(50%) by 6 points: few prompts, many ties."""
    missing = [r['id'] for r in rs if r['id'] not in score]
    if missing:
        raise SystemExit(f'P1: {len(missing)} test rows have no score in the dump, e.g. {missing[0]}')
    sc = [score[r['id']] for r in rs]
    n = len(rs)
    srt = sorted(sc)
    edges = []
    for i in range(11):
        h = (n - 1) * i / 10
        lo = int(h)
        edges.append(srt[lo] + (h - lo) * (srt[min(lo + 1, n - 1)] - srt[lo]))
    q_strong = sum(r['scores'][strong] for r in rs) / n
    q_weak = sum(r['scores'][weak] for r in rs) / n
    curve = []
    for i, e in enumerate(edges):
        go = [(s > e) if i == 10 else (s >= e) for s in sc]
        quality = sum(r['scores'][strong] if g else r['scores'][weak] for r, g in zip(rs, go)) / n
        curve.append((sum(go) / n, quality))
    curve.sort()
    auc = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(curve, curve[1:]))
    cpt = first_reach(curve, q_weak + 0.5 * (q_strong - q_weak))
    return n, (auc - q_weak) / (q_strong - q_weak), cpt


def upper_hull(points, hi):
    """The non-decreasing upper convex hull of (cost, accuracy) points, extended flat to cost `hi`."""
    best = []
    for c, a in sorted(points):
        if not best or a > best[-1][1]:
            best.append((c, a))
    hull = []
    for p in best:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    if hull[-1][0] < hi:
        hull.append((hi, hull[-1][1]))
    return hull


def aiq(points, lo, hi):
    """Area under the hull over [lo, hi] / (hi - lo). Range: the single models' cheapest to dearest
    price, the same for every router (the protocol's 'that cost range')."""
    hull = upper_hull(points, hi)
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(hull, hull[1:]))
    return area / (hi - lo), hull


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', default='../shared/datasets')
    ap.add_argument('--dumps', default='eval/dumps')
    ap.add_argument('--json', action='store_true', help='print the figures as one JSON object instead')
    a = ap.parse_args()
    d = a.data
    out = {'p1': {}}
    say = (lambda line: None) if a.json else print

    strong, weak = 'gpt-4-1106-preview', 'mixtral-8x7b-instruct-v0.1'
    score = {x['id']: x['score'] for x in dump(a.dumps, 'p1')}
    sets = [
        ('MMLU (test half)', [r for r in rows(f'{d}/routellm/mmlu.jsonl') if bucket(r['id']) == 1]),
        ('GSM8K', list(rows(f'{d}/routellm/gsm8k.jsonl'))),
        ('MT-Bench', list(rows(f'{d}/routellm/mt-bench.jsonl'))),
    ]
    for (name, rs), key in zip(sets, ['mmlu', 'gsm8k', 'mt-bench']):
        n, apgr, cpt = p1(rs, score, strong, weak)
        out['p1'][key] = {'n': n, 'apgr': apgr, 'cpt50': cpt}
        say(f'P1 {name:17s} n={n:5d}  APGR {apgr:.4f}  CPT(50%) {cpt * 100:.2f}%')

    with open(f'{d}/llmrouter/models.json', encoding='utf-8') as fh:
        price = {m: v['input_per_mtok'] for m, v in json.load(fh).items()}
    test = {r['id']: r for r in rows(f'{d}/llmrouter/train.jsonl') if bucket(r['id']) == 1}
    by_knob = {}
    for x in dump(a.dumps, 'p2'):
        if x['id'] in test:
            by_knob.setdefault(x['knob'], []).append(x)
    for knob, xs in by_knob.items():
        if len(xs) != len(test):
            raise SystemExit(f'P2: knob {knob} has {len(xs)} of {len(test)} test rows')
    points = [
        (sum(price[x['model']] for x in xs) / len(xs), sum(test[x['id']]['scores'][x['model']] for x in xs) / len(xs))
        for xs in by_knob.values()
    ]
    single = [(price[m], sum(r['scores'][m] for r in test.values()) / len(test)) for m in price]
    lo, hi = min(c for c, _ in single), max(c for c, _ in single)
    best_cost, best_acc = max(single, key=lambda p: (p[1], -p[0]))
    router, hull = aiq(points, lo, hi)
    zero, _ = aiq(single, lo, hi)
    # Cost to match: where the router's hull first reaches the best single model's accuracy.
    match = first_reach(hull, best_acc)
    matched = 'not reached' if match is None else f'{match:.4f}'
    out['p2'] = {'aiq': router, 'zeroRouterAiq': zero, 'costToMatch': match}
    say(f'P2 n={len(test)}, {len(points)} knob settings  AIQ {router:.4f} (zero router {zero:.4f})  '
          f'best single {best_acc:.4f} at cost {best_cost}  cost to match {matched}')

    domains = {
        'law': ['professional_law', 'jurisprudence', 'international_law'],
        'finance': ['professional_accounting', 'econometrics', 'high_school_macroeconomics', 'high_school_microeconomics'],
        'health': ['clinical_knowledge', 'college_medicine', 'professional_medicine', 'anatomy', 'medical_genetics',
                   'nutrition', 'virology', 'human_aging'],
    }
    domain_of = {s: dom for dom, subjects in domains.items() for s in subjects}
    label = {x['id']: x['label'] for x in dump(a.dumps, 'p3')}
    in_dom, ood = [], []
    for r in rows(f'{d}/routellm/mmlu.jsonl'):
        c = r['category']
        if c in domain_of and bucket(r['id']) == 1:
            in_dom.append((r['id'], domain_of[c]))
        elif c not in domain_of and bucket(c) == 1:
            ood.append(r['id'])
    ood += [r['id'] for r in rows(f'{d}/routellm/gsm8k.jsonl')] + [r['id'] for r in rows(f'{d}/routellm/mt-bench.jsonl')]
    ood += [r['id'] for r in rows(f'{d}/llmrouter/train.jsonl') if bucket(r['id']) == 1]
    missing = [i for i, _ in in_dom if i not in label] + [i for i in ood if i not in label]
    if missing:
        raise SystemExit(f'P3: {len(missing)} test rows have no label in the dump, e.g. {missing[0]}')
    id_acc = sum(label[i] == dom for i, dom in in_dom) / len(in_dom)
    ood_acc = sum(label[i] == 'ood' for i in ood) / len(ood)
    p3_score = 2 * id_acc * ood_acc / (id_acc + ood_acc)
    out['p3'] = {'idAccuracy': id_acc, 'oodAccuracy': ood_acc, 'score': p3_score}
    say(f'P3 ID n={len(in_dom)} accuracy {id_acc:.4f}  OOD n={len(ood)} accuracy {ood_acc:.4f}  score {p3_score:.4f}')
    if a.json:
        print(json.dumps(out))


if __name__ == '__main__':
    main()
