"""An independent reference of `core.stats` for the stats tests (core, CLI, screen): the counted
tokens read position by position through `Run.kinds` / `Run.column` / `Run.step`, and every
number recomputed with plain numpy and Python from the README's definitions. Shared like
tests/factories.py: tests import it from here, never from each other."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

RANK_EDGES = (1, 10, 100, 1000)  # GLTR buckets: 1 · 2–10 · 11–100 · 101–1000 · >1000


def counted(run, branch=None, kinds=("generated",)):
    """The counted tokens in order: dicts with entropy, logprob, rank, i, n, token bytes, branch,
    position, and the ids of their sequence (for the context)."""
    out = []
    branches = [branch] if branch is not None else range(len(run.branches))
    for b in branches:
        seq_kinds = run.kinds(b)
        ids = run.sequence(b).tolist()
        positions = [p for p in range(1, len(seq_kinds)) if seq_kinds[p] in kinds]
        n = len(positions)
        first = 0 if branch is not None or b == 0 else run.branches[b].fork_position
        for i, p in enumerate(positions):
            if p < first:
                continue
            step = run.step(b, p)
            out.append(
                {
                    "entropy": float(np.float32(step.entropy)),
                    "logprob": float(np.float32(step.logprob)),
                    "rank": step.rank,
                    "i": i,
                    "n": n,
                    "token": run.tokens.bytes_of(step.token_id),
                    "branch": b,
                    "position": p,
                    "before": run.tokens.text(ids[max(0, p - 8) : p]),
                    "after": run.tokens.text(ids[p + 1 : p + 5]),
                }
            )
    return out


def spread(values):
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "std": float(v.std(ddof=1)) if len(v) > 1 else None,
        "min": float(v.min()),
        "max": float(v.max()),
    }


def rank_counts(ranks):
    counts = [0] * 5
    for r in ranks:
        counts[sum(r > e for e in RANK_EDGES)] += 1
    return counts


def summary(tokens):
    e = [t["entropy"] for t in tokens]
    lp = [t["logprob"] for t in tokens]
    loss = -float(np.mean(lp))
    return {
        "tokens": len(tokens),
        "entropy": spread(e),
        "probability": spread([math.exp(x) for x in lp]),
        "mean_loss": loss,
        "perplexity": math.exp(loss),
        "ranks": rank_counts([t["rank"] for t in tokens]),
    }


def deciles(tokens):
    e = np.array([t["entropy"] for t in tokens])
    edges = np.percentile(e, [10 * d for d in range(11)])
    rows = []
    for d in range(10):
        inside = [t for t in tokens if sum(t["entropy"] >= x for x in edges[1:10]) == d]
        c = Counter(t["token"] for t in inside)
        first = {}
        for j, t in enumerate(inside):
            first.setdefault(t["token"], j)
        examples = sorted(c, key=lambda tok: (-c[tok], first[tok]))[:5]
        rows.append(
            {
                "low": float(edges[d]),
                "high": float(edges[d + 1]),
                "count": len(inside),
                "mean_entropy": float(np.mean([t["entropy"] for t in inside])) if inside else None,
                "mean_probability": float(np.mean([math.exp(t["logprob"]) for t in inside])) if inside else None,
                "examples": [(tok, c[tok]) for tok in examples],
            }
        )
    return rows


def positions(tokens, bins):
    rows = []
    for k in range(bins):
        inside = [t for t in tokens if t["i"] * bins // t["n"] == k]
        rows.append(
            {
                "count": len(inside),
                "mean_entropy": float(np.mean([t["entropy"] for t in inside])) if inside else None,
                "mean_probability": float(np.mean([math.exp(t["logprob"]) for t in inside])) if inside else None,
            }
        )
    return rows


def extremes(tokens, top):
    idx = range(len(tokens))
    return {
        "highest_entropy": sorted(idx, key=lambda j: (-tokens[j]["entropy"], j))[:top],
        "lowest_entropy": sorted(idx, key=lambda j: (tokens[j]["entropy"], j))[:top],
        "most_confident": sorted(idx, key=lambda j: (-tokens[j]["logprob"], j))[:top],
        "least_confident": sorted(idx, key=lambda j: (tokens[j]["logprob"], j))[:top],
    }
