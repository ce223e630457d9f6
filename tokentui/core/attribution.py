"""Gradient attribution (seed 004, inseq's methods): what each method means, and the record a run
keeps of one attribution job.

An attribution answers "which earlier positions made the model say the token at position t?":
one score per input position 0…t−1 (exactly 0 at t and after). The target is log p(token at t |
positions 0…t−1) under the model's raw distribution, or, with an `alternative`, the contrast
log p(chosen) − log p(alternative) ("why this and not that"). g_i = ∂target/∂e_i, where e_i is the
output of the model's input-embedding module at position i (before any position embedding the
model adds inside). The device code of each method is a registered function in
`engine/hf/attribution.py`; this module says what the numbers are, so that run files, exports and
panes need neither torch nor the model. Numpy and the standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tokentui.core.params import ATTRIBUTION_METHODS, DEFAULT_ATTRIBUTION, IG_STEPS, MAX_IG_STEPS, RunError


@dataclass(frozen=True)
class Method:
    """One attribution method: its name (CLI, files), what it needs from the backend, and whether
    its scores carry a sign (signed scores are shown on a diverging scale)."""

    name: str
    label: str
    needs: str  # a Capabilities feature: "gradients" or "attention"
    signed: bool
    definition: str


METHODS: dict[str, Method] = {}


def declare(m: Method) -> Method:
    METHODS[m.name] = m
    return m


declare(Method("gradient-norm", "gradient norm", "gradients", False, "‖g_i‖₂ (seed 004's measure)"))
declare(
    Method(
        "saliency",
        "saliency",
        "gradients",
        False,
        "‖g_i‖₂ / Σ_j ‖g_j‖₂: inseq's default saliency (gradient of p, L2 over the embedding, normalised)",
    )
)
declare(Method("input-x-gradient", "input × gradient", "gradients", True, "Σ_d g_i,d · e_i,d"))
declare(
    Method(
        "integrated-gradients",
        "integrated gradients",
        "gradients",
        True,
        "Σ_d e_i,d · ∫₀¹ g_i,d(α·e) dα (zero baseline; Gauss–Legendre, as captum/inseq)",
    )
)
declare(
    Method("attention", "attention (last layer)", "attention", False, "last layer's attention row, mean over heads")
)
declare(
    Method("attention-mean", "attention (all layers)", "attention", False, "attention row, mean over layers and heads")
)

assert tuple(METHODS) == ATTRIBUTION_METHODS, "core/params.py lists the same methods, in the same order"
DEFAULT_METHOD = DEFAULT_ATTRIBUTION
DEFAULT_STEPS = IG_STEPS
MAX_RECORDS = 1_000  # attribution records a run file may hold
MAX_ROWS = 1 << 16  # attributed positions in one record


def method(name: str) -> Method:
    """The method called `name` — also in inseq's spelling, with underscores (`integrated_gradients`,
    `input_x_gradient`: what seed 004's users type) — or a one-line RunError listing the known ones."""
    m = METHODS.get(name) or METHODS.get(name.strip().lower().replace("_", "-"))
    if m is None:
        raise RunError(f"unknown attribution method {name!r} (choose from {', '.join(METHODS)})")
    return m


@dataclass
class Attribution:
    """One attribution job's result: for each attributed position t of branch `branch`'s sequence,
    the scores of positions 0…t−1, as rows of `scores` ([len(positions), width], width = the
    largest t; entries at t and after are 0). `completeness` (integrated gradients only): per
    row, Σ_i scores − (f(x) − f(baseline)), where f is the target."""

    method: str
    branch: int
    positions: list[int]
    token_ids: list[int]  # the token at each attributed position (the target's token)
    scores: np.ndarray  # float32 [rows, width]
    alternative: int | None = None  # contrast target: log p(token) − log p(alternative)
    steps: int | None = None  # integrated gradients' path steps
    completeness: np.ndarray | None = None  # float32 [rows]; integrated gradients only
    target_values: np.ndarray | None = None  # float32 [rows]: f(x), the target at the real input
    created: str = ""

    @property
    def width(self) -> int:
        return int(self.scores.shape[1])

    def row(self, position: int) -> np.ndarray | None:
        """The scores of positions 0…position−1 for `position` (None: not attributed here)."""
        try:
            r = self.positions.index(position)
        except ValueError:
            return None
        return self.scores[r, :position]

    def rows_of(self, positions: list[int]) -> Attribution | None:
        """The record of `positions` alone, when this one holds every one of them (the same rows,
        narrower): a matrix asked for a sub-range of a stored one is read, not recomputed (also
        in a replay without a model). None when a position is missing."""
        where = {t: r for r, t in enumerate(self.positions)}
        if not positions or any(t not in where for t in positions):
            return None
        rows = [where[t] for t in positions]
        width = max(positions)
        return replace(
            self,
            positions=list(positions),
            token_ids=[self.token_ids[r] for r in rows],
            scores=self.scores[rows, :width],
            completeness=None if self.completeness is None else self.completeness[rows],
            target_values=None if self.target_values is None else self.target_values[rows],
        )

    def header(self) -> dict[str, Any]:
        """What the run file's header keeps (the arrays go beside it)."""
        return {
            "method": self.method,
            "branch": self.branch,
            "positions": list(self.positions),
            "token_ids": list(self.token_ids),
            "alternative": self.alternative,
            "steps": self.steps,
            "created": self.created,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"scores": np.ascontiguousarray(self.scores, dtype=np.float32)}
        if self.completeness is not None:
            out["completeness"] = np.ascontiguousarray(self.completeness, dtype=np.float32)
        if self.target_values is not None:
            out["target_values"] = np.ascontiguousarray(self.target_values, dtype=np.float32)
        return out


def combined(parts: list[Attribution], branch: int) -> Attribution:
    """One record of the rows of `parts` (records of one method and target, of disjoint
    positions, each row of a sequence `branch` shares up to it), rows in position order. A matrix
    is often asked for again after the cursor moved on: its earlier rows are stored (one job), the
    rows since are computed (another), and the screen shows them as one matrix. The step count is
    kept where every part has the same; completeness and target values where every part has them.
    One part is returned as it is."""
    if len(parts) == 1:
        return parts[0]
    rows = sorted(((t, part, r) for part in parts for r, t in enumerate(part.positions)), key=lambda x: x[0])
    positions = [t for t, _, _ in rows]
    scores = np.zeros((len(rows), max(positions)), dtype=np.float32)  # (entries at t and after: 0)
    for i, (t, part, r) in enumerate(rows):
        scores[i, :t] = part.scores[r, :t]

    def column(name: str) -> np.ndarray | None:
        if any(getattr(part, name) is None for part in parts):
            return None
        return np.array([getattr(part, name)[r] for _, part, r in rows], dtype=np.float32)

    steps = {part.steps for part in parts}
    return Attribution(
        method=parts[0].method,
        branch=branch,
        positions=positions,
        token_ids=[part.token_ids[r] for _, part, r in rows],
        scores=scores,
        alternative=parts[0].alternative,
        steps=steps.pop() if len(steps) == 1 else None,
        completeness=column("completeness"),
        target_values=column("target_values"),
        created=max(part.created for part in parts),
    )


def from_stored(h: object, arrays: dict[str, np.ndarray], n_branches: int, vocab_size: int) -> Attribution:
    """An attribution record from a run file's header entry and arrays (untrusted): every fault is a
    RunError of one line."""
    if not isinstance(h, dict):
        raise RunError("an attribution record is malformed")
    name = h.get("method")
    if not isinstance(name, str) or name not in METHODS:
        raise RunError(f"attribution method {str(name)[:40]!r} is unknown")
    branch, positions, token_ids = h.get("branch"), h.get("positions"), h.get("token_ids")
    if not isinstance(branch, int) or isinstance(branch, bool) or not 0 <= branch < n_branches:
        raise RunError("an attribution names a branch the run lacks")
    if not isinstance(positions, list) or not isinstance(token_ids, list) or len(positions) != len(token_ids):
        raise RunError("an attribution's positions are malformed")
    if not 0 < len(positions) <= MAX_ROWS or not all(_is_int(p) and p >= 1 for p in positions):
        raise RunError("an attribution's positions are malformed")
    if not all(_is_int(i) and 0 <= i < vocab_size for i in token_ids):
        raise RunError("an attribution's token ids are out of range")
    alt, steps = h.get("alternative"), h.get("steps")
    if alt is not None and (not _is_int(alt) or not 0 <= alt < vocab_size):
        raise RunError("an attribution's alternative token is out of range")
    if steps is not None and (not _is_int(steps) or not 1 <= steps <= MAX_IG_STEPS):
        raise RunError("an attribution's step count is out of range")
    unknown = set(arrays) - {"scores", "completeness", "target_values"}
    if unknown:
        raise RunError(f"an attribution has an unexpected array {sorted(unknown)[0][:40]!r}")
    scores = arrays.get("scores")
    width = max(positions)
    if scores is None or scores.dtype != np.float32 or scores.shape != (len(positions), width):
        raise RunError("an attribution's scores have the wrong shape")
    if not np.isfinite(scores).all():
        raise RunError("an attribution's scores are not finite numbers")
    optional: dict[str, np.ndarray | None] = {}
    for key in ("completeness", "target_values"):
        a = arrays.get(key)
        if a is not None and (a.dtype != np.float32 or a.shape != (len(positions),)):
            raise RunError(f"an attribution's {key} has the wrong shape")
        optional[key] = a
    created = h.get("created", "")
    return Attribution(
        method=name,
        branch=branch,
        positions=list(positions),
        token_ids=list(token_ids),
        scores=scores,
        alternative=alt,
        steps=steps,
        completeness=optional["completeness"],
        target_values=optional["target_values"],
        created=created if isinstance(created, str) else "",
    )


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def normalized(scores: np.ndarray) -> np.ndarray:
    """Each row's |scores| divided by the row's sum of |scores| (rows of zeros stay zero): seed
    004's `normalized_association`, comparable across methods and rows."""
    a = np.abs(scores.astype(np.float64))
    s = a.sum(axis=1, keepdims=True)
    out: np.ndarray = np.divide(a, s, out=np.zeros_like(a), where=s > 0)
    return out


def top_contributors(scores: np.ndarray, n: int = 10) -> list[int]:
    """Positions of the n largest |scores|, largest first (ties: the earlier position)."""
    return sorted(range(len(scores)), key=lambda i: (-abs(float(scores[i])), i))[:n]


def check_against(rec: Attribution, sequence: np.ndarray) -> None:
    """A record must describe its branch's sequence: positions inside it, the same tokens there."""
    if max(rec.positions) >= len(sequence):
        raise RunError(f"an attribution names position {max(rec.positions)}, past the end of branch {rec.branch}")
    if any(int(sequence[t]) != tok for t, tok in zip(rec.positions, rec.token_ids)):
        raise RunError(f"an attribution's tokens are not those of branch {rec.branch}")


def applies(rec: Attribution, branch: int, position: int, seq_of: Callable[[int], np.ndarray]) -> bool:
    """Whether `rec` holds `position` of `branch`: it attributed that position in a branch whose
    sequence is the same up to and including it (a branch shares its parent's prefix)."""
    if position not in rec.positions:
        return False
    if rec.branch == branch:
        return True
    a, b = seq_of(rec.branch), seq_of(branch)
    return len(a) > position and len(b) > position and bool(np.array_equal(a[: position + 1], b[: position + 1]))
