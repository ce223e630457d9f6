"""A run compared live with a second model (`explore --compare B`): which columns it gains, and
which of a branch's positions still wait for model B's values.

The explorer grows runs with model A as usual; a comparison job then teacher-forces a branch's
sequence under both models and fills the comparison columns (core/measures.py COMPARISON) of the
positions that lack them. This module holds the torch-free part of that: widening a run's layout
in place (the engine's run and the explorer's copy, from the same event), and the segments of a
branch whose values are missing. Positions recorded under steering are never compared (model A's
recorded values there come from a steered forward, the comparison's from a plain one).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tokentui.core.columns import Columns, Layout
from tokentui.core.measures import COMPARISON, MEASURES
from tokentui.core.run import Run

NAMES = tuple(m.name for m in COMPARISON)  # the columns a comparison fills, in storage order
MARKER = "kl_ab"  # a position is compared when this column is known there


def same_model(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two `model_b` records name the same model (and revision)."""
    if a is None or b is None:
        return False
    return a.get("model") == b.get("model") and a.get("revision") == b.get("revision")


def widen(run: Run, model_b: dict[str, Any]) -> None:
    """Give `run` the comparison columns (unknown until filled) and `meta.model_b`, in place. A run
    already compared with another model B loses that model's values (they would be mislabelled);
    one compared with this model keeps them. Idempotent."""
    missing = [n for n in NAMES if n not in run.layout.names]
    keep = same_model(run.meta.model_b, model_b)
    if missing or not keep:
        old = run.layout
        layout = Layout(old.measures + tuple(MEASURES[n] for n in missing), old.k, old.n_layers, old.j)

        def convert(cols: Columns) -> Columns:
            arrays = {n: a for n, a in cols.arrays().items() if keep or n not in NAMES}
            return Columns.from_arrays(layout, arrays)

        run.layout = layout
        run.prompt = convert(run.prompt)
        for b in run.branches:
            b.steps = convert(b.steps)
    run.meta.model_b = dict(model_b)


def segments(run: Run, branch_id: int) -> Iterator[tuple[int | None, int, int]]:
    """The pieces of the branch's sequence, root first: (branch id, None for the prompt; first
    position; one past the last)."""
    out: list[tuple[int | None, int, int]] = []
    end = run.length(branch_id)
    for b in run.ancestry(branch_id):
        if end > b.fork_position:
            out.append((b.id, b.fork_position, end))
            end = b.fork_position
    if end > 0:
        out.append((None, 0, end))
    return reversed(out)


def steered(run: Run, segment: int | None) -> bool:
    """Whether a segment's values were recorded under steering (then it is not compared)."""
    if segment is None:
        return run.meta.steering is not None
    return run.branch(segment).steering is not None


def missing(run: Run, branch_id: int) -> list[tuple[int | None, int, int]]:
    """The segments of the branch that have a position (from 1 on: position 0 predicts nothing)
    without model B's values, steered ones left out: (segment, first position, end)."""
    out = []
    for seg, start, end in segments(run, branch_id):
        first = max(start, 1)
        if first >= end or steered(run, seg):
            continue
        cols = run.prompt if seg is None else run.branch(seg).steps
        offset = 0 if seg is None else start
        if MARKER not in run.layout.names or np.isnan(cols.col(MARKER)[first - offset : end - offset]).any():
            out.append((seg, first, end))
    return out


def set_values(run: Run, segment: int | None, start_position: int, values: dict[str, np.ndarray]) -> None:
    """Comparison values (name → one row per position from `start_position`) into a segment."""
    if segment is None:
        for name, arr in values.items():
            run.prompt.set_values(name, start_position, arr)
    else:
        run.set_layer_values(segment, start_position, values)
