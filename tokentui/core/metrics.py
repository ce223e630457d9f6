"""Per-token metrics as small pure functions in a registry, so a new metric is one function.

Each metric maps a branch's columns to one value per position and says how to read it: its unit,
its range, and whether high means "uncertain". Colour scales and the TUI's legend read these.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RANK_BUCKETS = (1, 10, 100, 1000)  # GLTR: top-1, top-10, top-100, top-1000, beyond


def rank_bucket(rank: np.ndarray) -> np.ndarray:
    """0: rank 1 · 1: ≤10 · 2: ≤100 · 3: ≤1000 · 4: >1000 · -1: unknown."""
    r = np.asarray(rank)
    out = np.searchsorted(np.asarray(RANK_BUCKETS), r, side="left").astype(np.int8)
    out[r <= 0] = -1
    return out


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str
    compute: Callable[[Callable[[str], np.ndarray]], np.ndarray]
    low: float
    high: float  # values are scaled to [0, 1] over [low, high] for colour
    high_is_uncertain: bool
    buckets: tuple[str, ...] = ()  # a categorical metric: its buckets' names, sure to unsure
    ends: tuple[str, str] = ("sure", "uncertain")  # what the legend calls the two ends of the scale

    def normalized(self, values: np.ndarray) -> np.ndarray:
        """Values → [0, 1] where 1 is the most uncertain; NaN stays NaN."""
        v = (np.asarray(values, dtype=np.float64) - self.low) / (self.high - self.low)
        v = np.clip(v, 0.0, 1.0)
        return v if self.high_is_uncertain else 1.0 - v


METRICS: dict[str, Metric] = {}


def register(m: Metric) -> Metric:
    METRICS[m.name] = m
    return m


register(Metric("probability", "probability", "p", lambda c: np.exp(c("logprob").astype(np.float64)), 0.0, 1.0, False))
register(Metric("entropy", "entropy", "nats", lambda c: c("entropy").astype(np.float64), 0.0, 6.0, True))
register(
    Metric(
        "rank",
        "rank bucket (GLTR)",
        "1 / ≤10 / ≤100 / ≤1000 / >1000",
        lambda c: np.where(c("rank") > 0, rank_bucket(c("rank")), np.nan).astype(np.float64),
        0.0,
        4.0,
        True,
        buckets=("1", "≤10", "≤100", "≤1000", ">1000"),
    )
)
register(
    Metric("surprisal", "surprisal", "bits", lambda c: -c("logprob").astype(np.float64) / math.log(2), 0.0, 12.0, True)
)

METRIC_ORDER = ("probability", "entropy", "rank", "surprisal")

# --- two models (`tokentui compare`): for runs holding model B's columns ----------------------
register(
    Metric(
        "kl",
        "KL(A‖B)",
        "nats",
        lambda c: c("kl_ab").astype(np.float64),
        0.0,
        2.0,
        True,
        ends=("models agree", "differ"),
    )
)
register(
    Metric(
        "delta",
        "Δ log p (B − A)",
        "nats",
        lambda c: c("logprob_b").astype(np.float64) - c("logprob").astype(np.float64),
        -4.0,
        4.0,
        False,
        ends=("B likes it more", "B likes it less"),
    )
)
COMPARISON_METRICS = ("kl", "delta")


def metric_order(columns: tuple[str, ...]) -> tuple[str, ...]:
    """The metrics a run with these columns can be coloured by, in the order `m` cycles them:
    the comparison metrics only for a run that holds two models' columns."""
    compared = "kl_ab" in columns and "logprob_b" in columns
    return METRIC_ORDER + (COMPARISON_METRICS if compared else ())


def finite_mean(values: np.ndarray) -> float:
    """Mean over the finite values (NaN marks "not known", e.g. the first prompt token); NaN if none."""
    v = np.asarray(values)
    v = v[np.isfinite(v)]
    return float(v.astype(np.float64).mean()) if v.size else math.nan


def perplexity(mean_loss: float) -> float:
    """exp(mean loss): ∞ past float's range (a run file may hold a loss of 800 nats, and tokentui
    records −10,000 for a ruled-out token; math.exp raised), NaN when there is no loss."""
    if not math.isfinite(mean_loss):
        return math.inf if mean_loss == math.inf else math.nan
    return math.exp(mean_loss) if mean_loss < 709 else math.inf


def summary(logprob: np.ndarray, entropy: np.ndarray) -> dict[str, float]:
    """Mean log-prob, perplexity and mean entropy over the finite values (seed 000's summary)."""
    mean_lp = finite_mean(logprob)
    return {
        "tokens": int(np.isfinite(logprob).sum()),
        "mean_logprob": mean_lp,
        "perplexity": perplexity(-mean_lp),
        "mean_entropy": finite_mean(entropy),
    }
