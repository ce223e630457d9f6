"""What steering changed: a branch against its parent, position by position, over every measure.

A steering comparison is one run holding two branches grown from the same start: the standard
one and the steered one (`Branch.steering` says which steering grew each). `tokentui
steer-compare` makes such runs (`engine.jobs.SteerCompare`): from a prompt, branch 0 is the
standard generation and branch 1 forks it at the prompt's end, steered (the same sampler and
seed, the same forced tokens); from a text, both branches teacher-force the text from position 1
(`paired_scores`). Any branch can be compared with its parent, e.g. one grown by hand in the
explorer.

`compare(run, branch)` lines the two up over positions fork…min(ends)−1 and, for every numeric
measure the run records with one value per token or per layer (its layout's columns: whatever is
registered, never a fixed list; token ids, and per-k or per-layer × j columns whose entries mean
different tokens in the two rows, are left out), gives standard, steered, difference = steered −
standard, and percent change = 100 × difference / |standard| (NaN where the standard value is 0
or unknown). Positions from the divergence point on (the first where the chosen tokens differ)
describe two different texts. Numpy and the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokentui.core.columns import Columns, Layout
from tokentui.core.measures import DERIVED, Measure, derive
from tokentui.core.params import RunError
from tokentui.core.run import Run
from tokentui.core.steering import record_key

COMPARED_SHAPES: tuple[tuple[str, ...], ...] = ((), ("layer",))


def compared_measures(layout: Layout) -> list[Measure]:
    """The run's columns a comparison covers, in the layout's order: numeric, not token ids, one
    value per token or one per layer; then the measures derived from one of them (layer
    perplexity, KL to uniform: seed 001 compared those too)."""
    stored = [m for m in layout.measures if not m.is_token_id and m.shape in COMPARED_SHAPES]
    derived = [d.measure for d in DERIVED.values() if d.source in {m.name for m in stored}]
    return stored + derived


def percent_change(standard: np.ndarray, steered: np.ndarray) -> np.ndarray:
    """100 × (steered − standard) / |standard|; NaN where the standard value is 0 or NaN (the
    sign says the direction: a log-prob going from −2 to −1 is +50 %)."""
    s = np.asarray(standard, dtype=np.float64)
    d = np.asarray(steered, dtype=np.float64) - s
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 * d / np.abs(s)
    out[~np.isfinite(out)] = np.nan
    return out


@dataclass
class Comparison:
    """Branch `steered` against its parent `standard` over `positions` (absolute)."""

    run_id: str
    standard: int
    steered: int
    positions: np.ndarray  # int64 [n]
    standard_ids: np.ndarray  # int64 [n]: the chosen tokens
    steered_ids: np.ndarray
    divergence: int | None  # first position whose chosen tokens differ; None: none within the range
    measures: list[Measure] = field(default_factory=list)
    standard_values: dict[str, np.ndarray] = field(default_factory=dict)  # float64 [n] or [n, L]
    steered_values: dict[str, np.ndarray] = field(default_factory=dict)
    standard_steering: dict[str, Any] | None = None
    steered_steering: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.measures]

    def difference(self, name: str) -> np.ndarray:
        out: np.ndarray = self.steered_values[name] - self.standard_values[name]
        return out

    def percent_change(self, name: str) -> np.ndarray:
        return percent_change(self.standard_values[name], self.steered_values[name])

    def rows(self, name: str) -> dict[str, np.ndarray]:
        """standard, control (steered), difference and percent_change of one measure: seed 001's
        four rows."""
        return {
            "standard": self.standard_values[name],
            "control": self.steered_values[name],
            "difference": self.difference(name),
            "percent_change": self.percent_change(name),
        }


def compare(run: Run, branch: int, against: int | None = None) -> Comparison:
    """Branch `branch` (the steered one) against `against` (default: its parent, the standard
    one) over the positions both hold from the branch's fork on. RunError (one line) when the
    branch is the root and nothing is given to compare it with, or the two share no position."""
    b = run.branch(branch)
    other = b.parent if against is None else against
    if other is None:
        raise RunError(f"branch {branch} is the root: it has no parent to be compared with")
    run.branch(other)
    if other == branch:
        raise RunError("a branch compared with itself changes nothing")
    start = b.fork_position
    end = min(run.length(branch), run.length(other))
    if end <= start:
        raise RunError(f"branches {other} and {branch} share no position from {start} on")
    positions = np.arange(start, end, dtype=np.int64)
    ids_a = run.sequence(other)[start:end]
    ids_b = run.sequence(branch)[start:end]
    differ = np.flatnonzero(ids_a != ids_b)
    measures = compared_measures(run.layout)

    def values(branch_id: int, name: str) -> np.ndarray:
        column = derive(name, lambda n: run.column(branch_id, n), run.meta.vocab_size)
        return np.asarray(column)[start:end].astype(np.float64)

    a_vals = {m.name: values(other, m.name) for m in measures}
    b_vals = {m.name: values(branch, m.name) for m in measures}
    return Comparison(
        run.id,
        other,
        branch,
        positions,
        ids_a,
        ids_b,
        int(positions[differ[0]]) if differ.size else None,
        measures,
        a_vals,
        b_vals,
        run.branch(other).steering,
        b.steering,
    )


def steered_branch(run: Run) -> int:
    """The branch a comparison of this run shows by default: the first steered branch whose parent
    was grown under other steering (`steer-compare` makes it branch 1). RunError when none is."""
    for b in run.branches:
        if b.parent is not None and b.steering is not None:
            if record_key(b.steering) != record_key(run.branch(b.parent).steering):
                return b.id
    raise RunError(
        f"run {run.id} holds no steered branch to compare with its parent "
        "(make one with `tokentui steer-compare`, or give --branch)"
    )


def is_text_comparison(run: Run) -> bool:
    """Whether `run` is a steering comparison of a text (`paired_scores`): its prompt is the
    text's first token, its "prompt" text the whole text, branches 0 and 1 the rest, scored."""
    b = run.branches
    return (
        len(run.prompt) == 1
        and len(b) >= 2
        and b[0].status == b[1].status == "scored"
        and b[1].parent == 0
        and b[0].fork_position == b[1].fork_position == 1
    )


def paired_scores(standard: Run, steered: Run) -> Run:
    """One comparison run from two teacher-forced scorings of the same ids (`score_ids`, plain and
    steered): position 0 is the prompt; branch 0 holds positions 1… of the standard scoring and
    branch 1 (forking branch 0 at position 1, steered) those of the steered one, all as forced
    tokens with status "scored". The metadata is the standard run's; its `steering` stays None
    (the prompt, position 0, was read by both)."""
    a_ids, b_ids = standard.sequence(0), steered.sequence(0)
    if not np.array_equal(a_ids, b_ids) or standard.layout != steered.layout:
        raise RunError("the two scorings did not read the same tokens with the same columns")
    if len(a_ids) < 2:
        raise RunError("a comparison needs a text of at least two tokens")
    meta = standard.meta.copy()
    meta.steering = None
    run = Run(meta, standard.tokens.copy(), layout=standard.layout)
    run.tokens.update({i: steered.tokens.bytes_of(i) for i in steered.tokens.ids().tolist()})
    run.prompt = Columns.from_arrays(standard.layout, {k: v[:1] for k, v in standard.prompt.arrays().items()})
    for source, parent in ((standard, None), (steered, 0)):
        arrays = {k: v[1:] for k, v in source.prompt.arrays().items()}
        b = run.add_branch(parent, 1, n_forced=len(arrays["token_id"]), steering=source.meta.steering)
        b.steps.extend(arrays)
        b.status = "scored"
    run.validate()
    return run
