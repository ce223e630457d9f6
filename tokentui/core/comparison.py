"""What a comparison of two models over one text adds up to, from the stored columns alone.

`tokentui compare` records, at every scored position, both models' log-probability and rank of
the token and the exact divergences between their full next-token distributions
(`core/measures.COMPARISON`). The per-text numbers — mean loss and perplexity under each model,
mean KL both ways, and seed 003's sample estimate beside the exact value — are computed here from
those columns, so the command, `tokentui export` and replay show the same numbers without torch.

Seed 003 reports as "KL" the mean of log p_A(x_t) − log p_B(x_t) over the text's own tokens. That
is an unbiased estimate of KL(A‖B) only when the text was sampled from A at temperature 1; on any
other text (a dataset, greedy output, the other model's text) it is not a divergence at all and can
be negative. `sample_kl_error` says how far it is from the exact mean KL(A‖B) on this text.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tokentui.core.metrics import perplexity
from tokentui.core.run import Run

# the columns a run holds when it is a comparison (the rest of core/measures.COMPARISON is optional detail)
NEEDED = ("logprob_b", "rank_b", "kl_ab", "kl_ba", "js")
COLUMNS = ("logprob", *NEEDED)  # what the summaries read (`logprob` is model A's)


def is_comparison(run: Run) -> bool:
    """Whether the run holds a second model's columns (made by `tokentui compare`)."""
    names = run.layout.names
    return all(n in names for n in NEEDED)


def scored_mask(logprob_a: np.ndarray, logprob_b: np.ndarray, first: int = 1) -> np.ndarray:
    """The positions that count: from `first` on (position 0 has no context), where both models'
    log-probs are known."""
    mask: np.ndarray = np.isfinite(logprob_a) & np.isfinite(logprob_b)
    mask[: max(0, first)] = False
    return mask


def _mean(values: np.ndarray) -> float:
    return float(values.astype(np.float64).mean()) if values.size else math.nan


def summarize(columns: dict[str, np.ndarray], first: int = 1) -> dict[str, Any]:
    """The per-text numbers from per-position columns (`logprob` is model A's), over the scored
    positions (see `scored_mask`; `first_position` the first that can count): means in float64
    of the stored float32 values.

    - mean_loss_a / _b: mean of −log p(token) (nats per token); perplexity_a / _b: exp of it;
    - mean_kl_ab, mean_kl_ba, mean_js: means of the exact per-position divergences (nats);
    - sample_kl_estimate: seed 003's mean of log p_A(token) − log p_B(token) (nats);
      sample_kl_error: sample_kl_estimate − mean_kl_ab.
    """
    numbers = _numbers(scored_columns(columns, first))
    return {"tokens": numbers.pop("tokens"), "first_position": max(1, first), **numbers}


def scored_columns(columns: dict[str, np.ndarray], first: int = 1) -> dict[str, np.ndarray]:
    """The NEEDED columns (and `logprob`) at the scored positions only, in float64."""
    lp_a = np.asarray(columns["logprob"], dtype=np.float64)
    lp_b = np.asarray(columns["logprob_b"], dtype=np.float64)
    mask = scored_mask(lp_a, lp_b, first)
    return {name: np.asarray(columns[name], dtype=np.float64)[mask] for name in COLUMNS}


def _numbers(scored: dict[str, np.ndarray]) -> dict[str, Any]:
    """`summarize`'s numbers over positions already chosen (every position weighs the same)."""
    lp_a, lp_b = scored["logprob"], scored["logprob_b"]
    loss_a, loss_b = -_mean(lp_a), -_mean(lp_b)
    estimate = _mean(lp_a - lp_b)
    kl_ab = _mean(scored["kl_ab"])
    return {
        "tokens": int(lp_a.size),
        "mean_loss_a": loss_a,
        "mean_loss_b": loss_b,
        "perplexity_a": perplexity(loss_a),
        "perplexity_b": perplexity(loss_b),
        "mean_kl_ab": kl_ab,
        "mean_kl_ba": _mean(scored["kl_ba"]),
        "mean_js": _mean(scored["js"]),
        "sample_kl_estimate": estimate,
        "sample_kl_error": estimate - kl_ab,
    }


def first_counted(run: Run, branch_id: int = 0) -> int:
    """The first position that counts: a root branch's first step (a dataset item's response), else 1."""
    branch = run.branch(branch_id)
    return branch.fork_position if branch.parent is None and len(branch.steps) else 1


def run_summary(run: Run, branch_id: int = 0, first: int | None = None) -> dict[str, Any]:
    """`summarize` over a comparison run's branch. What counts by default: a compared text is all
    prompt (positions 1…); a dataset item's response is its root branch (forced tokens), and only
    the response's positions count, as seed 003 counts them."""
    if first is None:
        first = first_counted(run, branch_id)
    return summarize({name: run.column(branch_id, name) for name in COLUMNS}, first)


def overall_summary(runs: list[Run]) -> dict[str, Any]:
    """The numbers of several comparison runs taken together (a dataset: seed 003's one number
    for the whole file): every run's counted positions (`run_summary`'s: a dataset item's response)
    put end to end, each token weighing the same — so the mean loss is not the mean of the texts'
    mean losses, and the perplexity is exp of the overall mean loss. `texts`: how many runs.

    `item_mean_kl_estimate` is seed 003's own aggregation (its calculate_KL.py): each item's mean
    of log p_A − log p_B, then the mean over the items that have a scored token — items weigh the
    same, whatever their length. (Seed 003 reports its absolute value, and adds 1e-10 to each p.)"""
    parts = [scored_columns({name: run.column(0, name) for name in COLUMNS}, first_counted(run, 0)) for run in runs]
    joined = {name: np.concatenate([p[name] for p in parts] or [np.zeros(0)]) for name in COLUMNS}
    per_item = [_mean(p["logprob"] - p["logprob_b"]) for p in parts if p["logprob"].size]
    item_mean = float(np.mean(per_item)) if per_item else math.nan
    return {"texts": len(runs), **_numbers(joined), "item_mean_kl_estimate": item_mean}
