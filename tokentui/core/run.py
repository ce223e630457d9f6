"""`Run`: one model, one prompt, and a tree of branches of steps.

Branch 0 (the root) continues the prompt. Any other branch says "in the sequence of branch
`parent`, at absolute position `fork_position`, take token t instead, then continue": its full
sequence is the parent's first `fork_position` tokens followed by its own steps. The first
`n_forced` of a branch's own tokens were chosen by the user, not by the sampler.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import numpy.typing as npt

from tokentui.core.attribution import Attribution
from tokentui.core.columns import Columns, Layout
from tokentui.core.display import sanitize
from tokentui.core.params import RunError as RunError  # also this module's API
from tokentui.core.params import SamplingParams as SamplingParams
from tokentui.core.step import Step
from tokentui.core.tokens import TokenTable


@dataclass
class RunMeta:
    """Everything needed to know where a run came from and to reproduce it."""

    run_id: str
    created: str
    tool_version: str
    mode: str  # "generate" | "score"
    model: str  # as the user named it (Hub id, path, or "demo")
    revision: str | None  # commit hash when known
    dtype: str
    device: str
    tokenizer: str
    vocab_size: int
    n_layers: int
    k: int
    prompt: str
    chat: bool = False
    chat_template: str | None = None  # the template text, when one was applied
    sampling: dict[str, Any] = field(default_factory=lambda: asdict(SamplingParams()))
    eos_ids: list[int] = field(default_factory=list)
    lens: str = "logit lens: hidden state → final norm → unembedding; last layer = model output"
    weights_file: str | None = None  # a model read from one file (GGUF): "name.gguf sha256:<hex>"
    tree: dict[str, Any] | None = None  # tree searches' records (core/tree.py); None: no search
    # a comparison run's second model (`tokentui compare`): {"model", "revision", "dtype", "device",
    # "tokenizer", "weights_file"} as for the first; None: one model
    model_b: dict[str, Any] | None = None
    # the steering the prompt's steps were computed under (core/steering.py's record); None: none
    steering: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def copy(self) -> RunMeta:
        return copy.deepcopy(self)

    def not_grown_by(self, model: str, vocab_size: int, n_layers: int) -> str | None:
        """Why the model named `model` (with this vocabulary and layer count) must not add to this
        run, or None when, by name and shape, it is the model that made it. A run records one
        model: branches, trees or attributions another model made would go under this one's name
        (with another vocabulary the ids are other tokens: a trial's explorer grew a smollm2 run
        with the demo model and saved the failure into it)."""
        if (model, vocab_size, n_layers) == (self.model, self.vocab_size, self.n_layers):
            return None
        ours, theirs = sanitize(self.model), sanitize(model)
        advice = f"open it with --model {ours}"
        if model == self.model:  # (two models of one name: the name alone is no advice)
            ours += f" ({self.vocab_size:,} ids, {self.n_layers} layers)"
            theirs += f" ({vocab_size:,} ids, {n_layers} layers)"
            advice = "give --model the folder of the model that made it"
        return f"the run was made by {ours} and {theirs} is loaded: a run grows under its own model only ({advice})"


def new_run_id() -> str:
    """A fresh id, e.g. '20260101-120000-a1b2c3': a plain file name (the store refuses any other)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# What a value of each measure can be. Log-probabilities are ≤ 0 and entropies ≥ 0, give or take
# rounding (TOLERANCE); never infinite. At every scored position (all but absolute position 0,
# where nothing came before) the token's log-prob and entropy are known and its rank is ≥ 1;
# elsewhere NaN means 'not known' (greedy steps have no sampler log-prob; layer values arrive late).
TOLERANCE = 1e-3
SIGN = {"logprob": -1, "sampler_logprob": -1, "topk_logprobs": -1, "entropy": 1, "layer_entropy": 1}
# a comparison's second model and the divergences between the two (KL and JS are ≥ 0)
SIGN.update({"logprob_b": -1, "topk_logprobs_b": -1, "entropy_b": 1, "kl_ab": 1, "kl_ba": 1, "js": 1})
RANKS = ("rank", "rank_b")
# per-layer measures (issue 14): probabilities, divergences, surprisals and entropies are ≥ 0
SIGN.update(layer_margin=1, layer_kl_final=1, layer_surprisal=1, layer_topk_logprobs=-1, attention_entropy=1)
KNOWN_WHEN_SCORED = ("logprob", "entropy")

STATUSES = ("running", "eos", "length", "stop", "context", "cancelled", "error", "scored")


@dataclass
class Branch:
    id: int
    parent: int | None
    fork_position: int
    steps: Columns
    n_forced: int = 0
    status: str = "running"
    sampling: dict[str, Any] | None = None  # the sampler that grew it (SamplingParams as a dict); None: unknown
    steering: dict[str, Any] | None = None  # the steering that grew it (core/steering.py's record); None: none

    @property
    def end(self) -> int:
        """Absolute position one past this branch's last token."""
        return self.fork_position + len(self.steps)

    def kind(self, i: int) -> str:
        """Where the branch's own i-th token came from: the user ('forced') or the sampler."""
        return "forced" if i < self.n_forced else "generated"

    def step(self, i: int) -> Step:
        """The branch's own i-th step, at its absolute position."""
        return self.steps.get(i, self.fork_position + i, self.kind(i))

    def to_dict(self) -> dict[str, Any]:
        """The branch's place in the tree (run files and JSON exports describe branches alike)."""
        return {
            "id": self.id,
            "parent": self.parent,
            "fork_position": self.fork_position,
            "n_forced": self.n_forced,
            "status": self.status,
            "steps": len(self.steps),
            "sampling": self.sampling,
            **({"steering": self.steering} if self.steering is not None else {}),  # (absent: not steered)
        }


class Run:
    """A prompt's steps and the branch tree grown from it."""

    def __init__(
        self,
        meta: RunMeta,
        tokens: TokenTable | None = None,
        prompt: Columns | None = None,
        layout: Layout | None = None,
    ):
        self.meta = meta
        self.tokens = tokens or TokenTable()
        if layout is None:
            layout = prompt.layout if prompt is not None else Layout.of(meta.k, meta.n_layers)
        self.layout = layout
        self.prompt = prompt if prompt is not None else Columns(layout)
        self.branches: list[Branch] = []
        self.attributions: list[Attribution] = []  # attribution jobs' results, oldest first
        self.saved_steps = -1  # total steps at the last save (the store sets it)
        self.saved_attributions = 0  # records at the last save

    @property
    def id(self) -> str:
        return self.meta.run_id

    @property
    def k(self) -> int:
        return self.meta.k

    @property
    def n_layers(self) -> int:
        return self.meta.n_layers

    def total_steps(self) -> int:
        return len(self.prompt) + sum(len(b.steps) for b in self.branches)

    @property
    def dirty(self) -> bool:
        return self.total_steps() != self.saved_steps or len(self.attributions) != self.saved_attributions

    def mark_saved(self, steps: int | None = None, attributions: int | None = None) -> None:
        """Remember what a save wrote (by default: everything the run holds now)."""
        self.saved_steps = self.total_steps() if steps is None else steps
        self.saved_attributions = len(self.attributions) if attributions is None else attributions

    def copy(self) -> Run:
        """An independent copy: what one thread hands another instead of sharing arrays."""
        out = Run(self.meta.copy(), self.tokens.copy(), self.prompt.copy(), self.layout)
        out.branches = [
            replace(b, steps=b.steps.copy(), sampling=copy.deepcopy(b.sampling), steering=copy.deepcopy(b.steering))
            for b in self.branches
        ]
        out.attributions = list(self.attributions)  # records are never changed once made
        out.saved_steps, out.saved_attributions = self.saved_steps, self.saved_attributions
        return out

    # --- growing (the engine on its run, the UI on its copy, both from the same events) ------
    def append_step(self, branch_id: int, step: Step) -> None:
        """Append `step` to the branch's own tokens (a forced step counts as forced)."""
        b = self.branch(branch_id)
        if step.position != b.end:
            raise RunError(f"step at position {step.position} does not continue branch {branch_id} (ends at {b.end})")
        if step.kind == "forced":
            if b.n_forced != len(b.steps):
                raise RunError("forced tokens come first in a branch")
            b.n_forced += 1
        b.steps.append(step)

    def extend_steps(
        self, branch_id: int, start_position: int, arrays: dict[str, np.ndarray], n_forced: int = 0
    ) -> None:
        """Append many steps at once to the branch's own tokens (`token_id` and measures, [n] or
        [n, …] each, as the layout's columns), the first `n_forced` of them forced."""
        b = self.branch(branch_id)
        if start_position != b.end:
            raise RunError(f"steps at position {start_position} do not continue branch {branch_id} (ends at {b.end})")
        if n_forced:
            if b.n_forced != len(b.steps):
                raise RunError("forced tokens come first in a branch")
            b.n_forced += n_forced
        b.steps.extend(arrays)

    def set_layer_values(self, branch_id: int, start_position: int, values: dict[str, np.ndarray]) -> None:
        """Per-layer lens values (measure name → [n, L]) for the branch's steps from
        `start_position` on: the lens runs in chunks, so they arrive after their steps."""
        b = self.branch(branch_id)
        for name, arr in values.items():
            b.steps.set_values(name, start_position - b.fork_position, arr)

    # --- tree -------------------------------------------------------------------------------
    def add_branch(
        self,
        parent: int | None,
        fork_position: int,
        n_forced: int = 0,
        sampling: dict[str, Any] | None = None,
        steering: dict[str, Any] | None = None,
    ) -> Branch:
        """A new branch whose own tokens start at `fork_position` after `parent`'s tokens before
        it (None: the root, right after the prompt). Its parent is the branch that holds those
        tokens as its own: an ancestor of `parent` when the fork is at or before `parent`'s first
        own token (the returned branch's `parent` says which)."""
        if parent is None:
            if self.branches:
                raise RunError("a run has one root branch")
            if fork_position != len(self.prompt):
                raise RunError("the root branch starts right after the prompt")
        else:
            self.branch(parent)
            if not 1 <= fork_position <= self.length(parent):
                raise RunError(
                    f"branch position {fork_position} is out of range 1..{self.length(parent)} of branch {parent}"
                )
            # a fork at or before the parent's own first token shares none of the parent's tokens:
            # it hangs from the branch whose sequence holds its prefix as its own (a trial resampled
            # where #1 left #0, and the tree, K and d showed a "child" of #1 sharing nothing of it)
            while (up := self.branches[parent]).parent is not None and fork_position <= up.fork_position:
                parent = up.parent
        b = Branch(
            len(self.branches),
            parent,
            fork_position,
            Columns(self.layout),
            n_forced,
            sampling=sampling,
            steering=steering,
        )
        self.branches.append(b)
        return b

    def subtree(self, branch_id: int) -> list[int]:
        """The branch and every branch grown from it (directly or not), in id order."""
        inside = {self.branch(branch_id).id}
        for b in self.branches:  # a child's id is always greater than its parent's
            if b.parent in inside:
                inside.add(b.id)
        return sorted(inside)

    def remove_subtree(self, branch_id: int) -> dict[int, int]:
        """Delete a branch with everything grown from it; the branches after it are renumbered
        (ids stay list positions and children keep coming after their parents). Returns old id →
        new id for the branches kept, so callers can follow the ones they point at. The root
        branch cannot be deleted (start a new run instead)."""
        if self.branch(branch_id).parent is None:
            raise RunError("the root branch cannot be deleted (start a new run instead)")
        gone = set(self.subtree(branch_id))
        kept = [b for b in self.branches if b.id not in gone]
        mapping = {b.id: i for i, b in enumerate(kept)}
        for b in kept:
            b.id = mapping[b.id]
            b.parent = None if b.parent is None else mapping[b.parent]
        self.branches = kept
        self.attributions = [replace(a, branch=mapping[a.branch]) for a in self.attributions if a.branch in mapping]
        return mapping

    def branch(self, branch_id: int) -> Branch:
        if not 0 <= branch_id < len(self.branches):
            raise RunError(f"no branch {branch_id} (the run has {len(self.branches)})")
        return self.branches[branch_id]

    def children(self, branch_id: int) -> list[Branch]:
        return [b for b in self.branches if b.parent == branch_id]

    def ancestry(self, branch_id: int) -> list[Branch]:
        """The branch and its ancestors, root last."""
        chain = []
        b: Branch | None = self.branch(branch_id)
        while b is not None:
            chain.append(b)
            b = None if b.parent is None else self.branches[b.parent]
        return chain

    def length(self, branch_id: int) -> int:
        return self.branch(branch_id).end

    def branch_taking(self, branch_id: int, position: int, token_id: int) -> int | None:
        """The first branch that makes `token_id` its own step at `position` after the same tokens
        as `branch_id` before it (None: none does): a new branch there would only repeat it."""
        prefix = None
        for b in self.branches:
            if not b.fork_position <= position < b.end:
                continue
            if int(b.steps.col("token_id")[position - b.fork_position]) != token_id:
                continue
            if prefix is None:
                prefix = self.sequence(branch_id)[:position]
            if np.array_equal(self.sequence(b.id)[:position], prefix):
                return b.id
        return None

    def _locate(self, branch_id: int, position: int) -> tuple[Columns, int, str]:
        """(segment, index inside it, kind) holding `position` of the branch's full sequence."""
        if position < 0:
            raise RunError(f"position {position} is negative")
        for b in self.ancestry(branch_id):
            if position >= b.fork_position:
                i = position - b.fork_position
                if i >= len(b.steps):
                    raise RunError(f"position {position} is past the end of branch {branch_id}")
                return b.steps, i, b.kind(i)
        if position < len(self.prompt):
            return self.prompt, position, "prompt"
        raise RunError(f"position {position} is past the end of branch {branch_id}")

    def step(self, branch_id: int, position: int) -> Step:
        cols, i, kind = self._locate(branch_id, position)
        return cols.get(i, position, kind)

    def segments(self, branch_id: int) -> list[tuple[int, Columns, int, int, str]]:
        """The pieces of a branch's full sequence: (start position, columns, from, to, source)."""
        out = []
        end = self.length(branch_id)
        for b in self.ancestry(branch_id):
            if end > b.fork_position:
                out.append((b.fork_position, b.steps, 0, end - b.fork_position, f"b{b.id}"))
                end = b.fork_position
        if end > 0:
            out.append((0, self.prompt, 0, end, "prompt"))
        out.reverse()
        return out

    def column(self, branch_id: int, name: str) -> np.ndarray:
        """One field over the branch's full sequence (prompt included)."""
        parts = [cols.col(name)[lo:hi] for _, cols, lo, hi, _ in self.segments(branch_id)]
        if not parts:
            return Columns(self.layout).col(name)
        return np.concatenate(parts)

    def sequence(self, branch_id: int) -> np.ndarray:
        return self.column(branch_id, "token_id").astype(np.int64)

    def kinds(self, branch_id: int) -> list[str]:
        out: list[str] = []
        for _, _cols, lo, hi, src in self.segments(branch_id):
            if src == "prompt":
                out += ["prompt"] * (hi - lo)
            else:
                b = self.branches[int(src[1:])]
                out += [b.kind(i) for i in range(lo, hi)]
        return out

    def text(self, branch_id: int, start: int = 0) -> bytes:
        """The bytes of the branch's full sequence from `start`. From the branch's own steps
        alone when `start` is among them: the JSON export asks each branch's own text, and
        assembling every ancestor first made a tree search's long path quadratic."""
        b = self.branch(branch_id)
        if start >= b.fork_position:
            return self.tokens.text(b.steps.col("token_id")[start - b.fork_position :].tolist())
        return self.tokens.text(self.sequence(branch_id)[start:].tolist())

    # --- checks -----------------------------------------------------------------------------
    def validate(self) -> None:
        """Check the tree and every array against the metadata; raise RunError on the first fault."""
        m = self.meta
        if m.k < 1 or m.n_layers < 1 or m.vocab_size < 1:
            raise RunError("k, layer count and vocabulary size must be positive")
        if not self.branches:
            raise RunError("the run has no root branch")
        for i, b in enumerate(self.branches):
            if b.id != i:  # (not list.index: that compares dataclasses, quadratic in the branches)
                raise RunError("branch ids are not 0..n-1")
            if b.status not in STATUSES:
                raise RunError(f"branch {b.id} has unknown status {b.status!r}")
            if b.parent is None:
                if b.id != 0 or b.fork_position != len(self.prompt):
                    raise RunError("only branch 0 is the root, and it starts after the prompt")
            else:
                if not 0 <= b.parent < b.id:
                    raise RunError(f"branch {b.id} has parent {b.parent}, which is not an earlier branch")
                if not 1 <= b.fork_position <= self.branches[b.parent].end:
                    raise RunError(f"branch {b.id} forks at {b.fork_position}, outside its parent")
            if not 0 <= b.n_forced <= len(b.steps):
                raise RunError(f"branch {b.id} has {b.n_forced} forced tokens but {len(b.steps)} steps")
        # which ids the token table has bytes for; the last entry stands for -1, "no id" (known)
        known = np.zeros(m.vocab_size + 1, dtype=bool)
        table_ids = self.tokens.ids()
        known[table_ids[(table_ids >= 0) & (table_ids < m.vocab_size)]] = True
        known[-1] = True
        for cols in [self.prompt] + [b.steps for b in self.branches]:
            if cols.layout != self.layout or self.layout.k != m.k or self.layout.n_layers != m.n_layers:
                raise RunError("step arrays do not match the run's k and layer count")
            for name in (x.name for x in self.layout.measures if x.is_token_id):
                lowest = 0 if name == "token_id" else -1  # -1: no id (e.g. the first step)
                for ids in row_blocks(cols.col(name)):  # (the lens's ids are most of a large run)
                    if ids.size and (ids.min() < lowest or ids.max() >= m.vocab_size):
                        raise RunError(f"{name} holds ids outside the vocabulary (0..{m.vocab_size - 1})")
                    missing = ids[~known[ids]]
                    if missing.size:
                        raise RunError(f"token table lacks the bytes of id {int(missing[0])}")
        for start, cols, segment in self._segments_by_name():
            self._check_values(segment, start, cols)

    def _segments_by_name(self) -> list[tuple[int, Columns, str]]:
        """(first absolute position, columns, array prefix in a run file) of every segment."""
        return [(0, self.prompt, "prompt")] + [(b.fork_position, b.steps, f"b{b.id}") for b in self.branches]

    def _check_values(self, segment: str, start: int, cols: Columns) -> None:
        """Refuse impossible numbers (SIGN, KNOWN_WHEN_SCORED): the panes, the measures and the
        exports would otherwise show or compute nonsense from them. Names the array and position."""
        if not len(cols):
            return
        scored = np.arange(start, start + len(cols)) >= 1
        for measure in self.layout.measures:
            name = measure.name
            if name in RANKS:
                rank = cols.col(name)
                bad = (rank < 0) | (rank > self.meta.vocab_size) | ((rank < 1) & scored & (name == "rank"))
                _refuse(segment, name, start, bad, f"rank outside 1..{self.meta.vocab_size}")
            if name == "layer_rank":  # 0: not lensed
                ranks = cols.col(name)
                _refuse(
                    segment,
                    name,
                    start,
                    ((ranks < 0) | (ranks > self.meta.vocab_size)).any(axis=1),
                    f"rank outside 0..{self.meta.vocab_size}",
                )
            if name not in SIGN:
                continue
            at = 0
            for block in row_blocks(cols.col(name)):  # (in float32: one block at a time)
                values = block.astype(np.float32).reshape(len(block), -1)
                here, known = start + at, scored[at : at + len(block)]
                wrong_sign = values > TOLERANCE if SIGN[name] < 0 else values < -TOLERANCE
                _refuse(segment, name, here, wrong_sign.any(axis=1), "above 0" if SIGN[name] < 0 else "below 0")
                _refuse(segment, name, here, np.isinf(values).any(axis=1), "infinite")
                if name in KNOWN_WHEN_SCORED:
                    _refuse(segment, name, here, np.isnan(values).any(axis=1) & known, "missing (NaN)")
                at += len(block)


BLOCK_VALUES = 1 << 20  # values per block of rows checked at once (their temporaries stay a few MB)


def row_blocks(a: np.ndarray) -> Iterator[np.ndarray]:
    """`a` in blocks of whole rows, about BLOCK_VALUES values each (at least one row): a check of a
    large run's lens columns made float32 copies and masks of the whole of each."""
    per_row = max(1, a[0].size if len(a) else 1)
    step = max(1, BLOCK_VALUES // per_row)
    for i in range(0, len(a), step):
        yield a[i : i + step]


def _refuse(segment: str, name: str, start: int, bad: npt.ArrayLike, why: str) -> None:
    """RunError naming the first bad row of `segment/name`, if any, by its absolute position."""
    rows = np.flatnonzero(bad)
    if rows.size:
        raise RunError(f"array {segment}/{name} at position {start + int(rows[0])}: {why}")
