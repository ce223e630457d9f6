"""What the explorer's layer views show of a run's per-layer measures (issue 14): which of them the
run has, their values for one token or a layer × position grid, a one-line definition each, and
each value's level on the theme's colour scale.

Kept apart from the widgets (the layers pane, the layer map screen) so both read one definition
and it is tested without a terminal. Imported only once a run is on screen (it needs numpy; a
replay's first frame is drawn without it).

Levels follow the theme's scale, sure (0) → unsure (1), on a fixed range per measure so that one
colour means the same value at every layer and position (except where no fixed range exists: KL
to the final layer and attention entropy use 0 … the largest value shown):

- entropy, perplexity, KL to uniform: H_l / ln V (KL to uniform = ln V − H_l: high KL is sure)
- margin: 1 − margin (a large top-1 − top-2 gap is sure)
- rank: ln(rank) / ln V (rank 1 = 0)
- surprisal: bits / log2 V, at most 1
- KL to the final layer, attention entropy: value / the largest finite value shown
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokentui.core.measures import LAYER_MEASURES, derive, has_measure, layer_declaration


@dataclass(frozen=True)
class LayerMeasureInfo:
    label: str  # short, for titles
    definition: str  # one line: what the number is
    scale: str  # how its colour level is set (the map's legend)


INFO: dict[str, LayerMeasureInfo] = {
    "layer_entropy": LayerMeasureInfo(
        "entropy", "H_l = −Σ p_l ln p_l of layer l's next-token distribution", "0 … ln V"
    ),
    "layer_perplexity": LayerMeasureInfo("perplexity", "exp(H_l): the layer's effective choices", "1 … V (log)"),
    "layer_margin": LayerMeasureInfo("margin", "p_l(top-1) − p_l(top-2)", "1 … 0 (a large margin is sure)"),
    "layer_kl_uniform": LayerMeasureInfo(
        "KL uniform", "KL(p_l ‖ uniform) = ln V − H_l", "ln V … 0 (a large KL is sure)"
    ),
    "layer_kl_final": LayerMeasureInfo(
        "KL final", "KL(p_l ‖ p_L): how far layer l is from the model's own output", "0 … the largest shown"
    ),
    "layer_rank": LayerMeasureInfo("rank", "rank of the token taken under layer l (1 = its top choice)", "1 … V (log)"),
    "layer_surprisal": LayerMeasureInfo("surprisal", "−log2 p_l(token taken)", "0 … log2 V bits"),
    "attention_entropy": LayerMeasureInfo(
        "attention entropy", "mean over heads of the entropy of block l's attention row", "0 … the largest shown"
    ),
}


def unit(name: str) -> str:
    """The unit shown after a value: none for a rank or a perplexity (plain numbers)."""
    u = layer_declaration(name).unit
    return "" if u.startswith("rank") or u == "perplexity" else u


def available(names: Collection[str]) -> list[str]:
    """The per-layer measures a run whose columns are `names` has (stored or derived), in order."""
    return [m for m in LAYER_MEASURES if has_measure(names, m)]


def missing(names: Collection[str]) -> list[str]:
    """The per-layer measures it lacks (a run from before they existed, the lens off, no attention)."""
    return [m for m in LAYER_MEASURES if not has_measure(names, m)]


def next_measure(names: Collection[str], current: str) -> str:
    """The measure after `current` among those the run has (entropy when it has none other)."""
    order = available(names) or ["layer_entropy"]
    return order[(order.index(current) + 1) % len(order)] if current in order else order[0]


def with_final_entropy(layer_entropy: np.ndarray, entropy: Any) -> np.ndarray:
    """`layer_entropy` ([L] or [n, L]) as float64 with layer L's value the model's own entropy
    (`entropy`: the step's, or [n]): layer L is the model's distribution exactly, but stored in
    float16 it read 2.564 in the layers pane where the alternatives pane had H=2.565 (float32)."""
    out = np.array(layer_entropy, dtype=np.float64)
    final = np.asarray(entropy, dtype=np.float64)
    if out.size and out.shape[:-1] == final.shape:
        out[..., -1] = np.where(np.isfinite(out[..., -1]) & np.isfinite(final), final, out[..., -1])
    return out


def values_at(values: Mapping[str, Any], name: str, vocab: int) -> np.ndarray:
    """[L] float64 values of measure `name` for one step (`values`: the step's stored values)."""

    def column(n: str) -> np.ndarray:
        if n == "layer_entropy" and "entropy" in values:
            return with_final_entropy(values[n], values["entropy"])
        return np.asarray(values[n], dtype=np.float64)

    out: np.ndarray = np.asarray(derive(name, column, vocab), dtype=np.float64)
    if name == "layer_rank":  # 0 = unknown
        out = np.where(out > 0, out, np.nan)
    return out


def grid(column: np.ndarray, name: str, vocab: int, entropy: np.ndarray | None = None) -> np.ndarray:
    """[L, n] float64 values of measure `name` from its source column's rows ([n, L]): layers as rows
    (`entropy`: the positions' own entropies, layer L's where the source is layer_entropy)."""
    if entropy is not None and source(name) == "layer_entropy":
        column = with_final_entropy(column, entropy)
    out = np.asarray(derive(name, lambda _n: np.asarray(column, dtype=np.float64), vocab), dtype=np.float64)
    if name == "layer_rank":
        out = np.where(out > 0, out, np.nan)
    return out.T.copy()


def source(name: str) -> str:
    """The stored column measure `name` is read from."""
    from tokentui.core.measures import DERIVED

    return DERIVED[name].source if name in DERIVED else name


def levels(values: np.ndarray, name: str, vocab: int, sure_first: bool = True) -> np.ndarray:
    """Each value's level on the theme's scale, sure (0) … unsure (1); NaN stays NaN (see the
    module). `sure_first=False`: the value's place on its own range instead, small (0) … large (1)
    (the pane's bars: a margin's bar grows with the margin)."""
    v = np.asarray(values, dtype=np.float64)
    log_v = math.log(max(2, vocab))
    with np.errstate(invalid="ignore", divide="ignore"):
        if name in ("layer_entropy", "layer_kl_uniform"):
            out = v / log_v if name == "layer_entropy" else 1 - v / log_v
        elif name in ("layer_perplexity", "layer_rank"):
            out = np.log(np.maximum(v, 1.0)) / log_v
        elif name == "layer_margin":
            out = 1 - v
        elif name == "layer_surprisal":
            out = v / (log_v / math.log(2))
        else:
            finite = v[np.isfinite(v)]
            top = float(finite.max()) if finite.size else 0.0
            out = v / top if top > 0 else np.where(np.isnan(v), np.nan, 0.0)
    if not sure_first and name in ("layer_margin", "layer_kl_uniform"):
        out = 1 - out
    result: np.ndarray = np.clip(out, 0.0, 1.0)
    return result


def axis_labels(name: str, vocab: int, largest: float) -> tuple[str, str, str]:
    """The pane's bar axis for measure `name`: its range's start, middle and end (`largest`: the
    end of a measure without a fixed range)."""
    log_v = math.log(max(2, vocab))
    if name in ("layer_entropy", "layer_kl_uniform"):
        top = log_v
    elif name in ("layer_perplexity", "layer_rank"):
        return "1", f"{math.sqrt(vocab):.3g}", f"{vocab:.3g}"
    elif name == "layer_margin":
        top = 1.0
    elif name == "layer_surprisal":
        top = log_v / math.log(2)
    else:
        top = largest if largest == largest and largest > 0 else 0.0
    return "0", f"{top / 2:.3g}", f"{top:.3g}"


def fmt(value: float, name: str) -> str:
    """A value in at most 8 cells ('–' when unknown)."""
    if value != value:
        return "–"
    if name == "layer_rank":
        return f"{int(value):,}"
    if name == "layer_perplexity":  # four digits, trailing zeros kept so a column lines up (3.150, 31.50)
        return f"{value:#.4g}".rstrip(".")
    return f"{value:.3f}"
