"""What the engine reports while it works. Plain dataclasses (no torch), safe to pass between
threads: each carries copies, never views into arrays the engine keeps writing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokentui.core import compared, tree
from tokentui.core.attribution import Attribution
from tokentui.core.run import Run
from tokentui.core.step import Step
from tokentui.engine.capabilities import Capabilities


@dataclass(frozen=True)
class Progress:
    message: str
    fraction: float | None = None


@dataclass(frozen=True)
class Loaded:
    model: str
    device: str
    dtype: str
    n_layers: int
    vocab_size: int
    seconds: float
    capabilities: Capabilities = field(default_factory=Capabilities)  # what the UI may offer
    notes: tuple[str, ...] = ()  # ModelInfo.notes: shown once
    chat_template: bool = True  # ModelInfo.chat_template


@dataclass(frozen=True)
class RunStarted:
    """A new run exists (its prompt scored): `run` is a copy that the receiver owns and grows
    from the events that follow, never the engine's own."""

    run: Run = field(repr=False)


@dataclass(frozen=True)
class BranchStarted:
    run_id: str
    branch_id: int
    parent: int | None
    fork_position: int
    sampling: dict[str, Any] | None = None  # the sampler growing it
    steering: dict[str, Any] | None = None  # the steering growing it (core/steering.py's record); None: none


@dataclass(frozen=True)
class StepEvent:
    run_id: str
    branch_id: int
    step: Step
    new_tokens: dict[int, bytes] = field(default_factory=dict)  # token-table entries this step adds


@dataclass(frozen=True)
class LensEvent:
    """Per-layer values for steps already reported (the lens runs in chunks)."""

    run_id: str
    branch_id: int
    start_position: int
    values: dict[str, np.ndarray] = field(repr=False)  # layer measure name → [n, L] (or [n, L, j])
    new_tokens: dict[int, bytes] = field(default_factory=dict)  # token-table entries (per-layer top tokens)


@dataclass(frozen=True)
class Finished:
    run_id: str
    branch_id: int
    status: str  # eos | length | stop | context | cancelled | error | scored
    new_tokens: int
    seconds: float
    # of new_tokens, those whose forward ran within `seconds` (None: all of them). A generation's
    # first token comes from the prompt's forward, before the clock starts: 1 token over no
    # forward read as 720 tokens/s
    timed_tokens: int | None = None

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens a second, over the forwards that made them (0.0: none)."""
        n = self.new_tokens if self.timed_tokens is None else self.timed_tokens
        return n / self.seconds if self.seconds > 0 and n > 0 else 0.0


@dataclass(frozen=True)
class TreeStarted:
    """A tree search starts on the run: `search` is its record (`core.tree.new_search`), which a
    receiver adds to its copy's `meta.tree` as search number `index`."""

    run_id: str
    index: int
    search: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class TreeProgress:
    """A tree search took one node from its queue. Before this event came the BranchStarted and
    StepEvent of each child it made (`children`, branch ids; `statuses` their final status: 'eos'
    for an end-of-sequence token, else 'length'). `node` is the branch of the node taken (None: the
    search's root); `finished` and `candidates` (token id, p) are what the search recorded about
    it (candidates None when it was finished, not expanded). `nodes`, `open` and `completed` count
    the tree's nodes (the root not counted), the queue, and the finished paths; `threshold` is the
    branching threshold used for this node. The last event of a search has `stopped` set (why it
    ended, `core.tree.STOPPED`) and may describe no node (`node` and `children` empty)."""

    run_id: str
    index: int
    node: int | None
    finished: bool
    candidates: tuple[tuple[int, float], ...] | None
    children: tuple[int, ...]
    statuses: tuple[str, ...]
    nodes: int
    open: int
    completed: int
    threshold: float
    stopped: str = "running"
    decided: bool = True  # False: a summary that describes no node (the last event when nothing was left)


@dataclass(frozen=True)
class AttributionProgress:
    """An attribution job has finished `done` of its `total` target positions (`fraction`: of
    the whole job, counting the part of the current chunk done)."""

    run_id: str
    done: int
    total: int
    method: str
    fraction: float = 0.0


@dataclass(frozen=True)
class Attributed:
    """An attribution job's result (`record`, which the receiver appends to its copy's
    `attributions`); `cancelled`: it holds only the positions finished before the cancel (None:
    cancelled before any)."""

    run_id: str
    record: Attribution | None = field(repr=False)
    cancelled: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class PairLoaded:
    """Model B is loaded beside the generating model (`explore --compare B`, or B in the explorer):
    from now on every job that adds tokens is followed by a comparison. `record`: what a compared
    run's `meta.model_b` says."""

    model: str
    device: str
    dtype: str
    seconds: float
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PairReleased:
    """Model B was released to make room for another B, which then failed to load too: from now
    on nothing is compared (B again loads one)."""

    model: str


@dataclass(frozen=True)
class Widened:
    """The run gets the comparison columns (unknown until compared) and `model_b` (core/compared.py)."""

    run_id: str
    model_b: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class CompareValues:
    """Model B's values and the divergences for positions already reported: `segment` is the
    branch whose own steps they belong to (None: the prompt), from `start_position` on."""

    run_id: str
    segment: int | None
    start_position: int
    values: dict[str, np.ndarray] = field(repr=False)  # comparison column → one row per position
    new_tokens: dict[int, bytes] = field(default_factory=dict)  # token-table entries B's top-k adds


@dataclass(frozen=True)
class Comparing:
    """A comparison job starts on branch `branch`, the `done`+1-th of the `total` it has to compare
    (the explorer is busy until `Compared`: a command sent meanwhile waits for it)."""

    run_id: str
    branch: int
    done: int
    total: int


@dataclass(frozen=True)
class Compared:
    """A comparison job ended: `branches` were compared (`positions` values filled in all);
    `cancelled`: stopped before the rest."""

    run_id: str
    branches: tuple[int, ...]
    positions: int
    seconds: float
    cancelled: bool = False


@dataclass(frozen=True)
class Saved:
    run_id: str
    path: str
    note: str | None = None  # the run went to another file than its id's, and why (`store.cache_writes`)


@dataclass(frozen=True)
class SaveFailed:
    """A periodic autosave failed (a full disk): the job goes on, its run kept in memory, and the
    next save tries again. Said once until a save succeeds."""

    message: str


@dataclass(frozen=True)
class Failed:
    """A command failed; `message` is one line for the user."""

    command: str
    message: str


Event = (
    Progress
    | Loaded
    | RunStarted
    | BranchStarted
    | StepEvent
    | LensEvent
    | Finished
    | TreeStarted
    | TreeProgress
    | AttributionProgress
    | Attributed
    | PairLoaded
    | PairReleased
    | Widened
    | CompareValues
    | Comparing
    | Compared
    | Saved
    | SaveFailed
    | Failed
)


def apply_event(run: Run | None, ev: Event) -> Run | None:
    """Grow a receiver's own copy of the run from one event; returns the run to keep (a new one
    after `RunStarted`). Events for another run, and events that carry no run data, change nothing.
    This is how the explorer follows the engine without reading the engine's arrays."""
    if isinstance(ev, RunStarted):
        return ev.run
    if run is None or getattr(ev, "run_id", None) != run.id:
        return run
    if isinstance(ev, BranchStarted):
        if ev.branch_id != len(run.branches):
            raise ValueError(f"branch {ev.branch_id} started out of order (the run has {len(run.branches)})")
        run.add_branch(ev.parent, ev.fork_position, sampling=ev.sampling, steering=ev.steering)
    elif isinstance(ev, StepEvent):
        run.tokens.update(ev.new_tokens)
        run.append_step(ev.branch_id, ev.step)
    elif isinstance(ev, LensEvent):
        run.tokens.update(ev.new_tokens)
        run.set_layer_values(ev.branch_id, ev.start_position, ev.values)
    elif isinstance(ev, Finished):
        run.branch(ev.branch_id).status = ev.status
    elif isinstance(ev, TreeStarted):
        if ev.index != len(tree.searches(run)):
            raise ValueError(f"tree search {ev.index} started out of order")
        tree.add_search(run, ev.search)
    elif isinstance(ev, TreeProgress):
        apply_tree_progress(run, ev)
    elif isinstance(ev, Attributed) and ev.record is not None:
        run.attributions.append(ev.record)
    elif isinstance(ev, Widened):
        compared.widen(run, ev.model_b)
    elif isinstance(ev, CompareValues):
        run.tokens.update(ev.new_tokens)
        compared.set_values(run, ev.segment, ev.start_position, ev.values)
    return run


def apply_tree_progress(run: Run, ev: TreeProgress) -> None:
    """What a TreeProgress changes in a run: its children's statuses, the node's facts and the
    search's counts. The engine applies it to its own run too (one definition of the change)."""
    for bid, status in zip(ev.children, ev.statuses):
        run.branch(bid).status = status
        tree.set_node(run, ev.index, bid, False, None)  # made, not yet taken from the queue
    if ev.decided:
        cands = None if ev.candidates is None else list(ev.candidates)
        tree.set_node(run, ev.index, ev.node, ev.finished, cands)
    tree.end_search(run, ev.index, ev.stopped, ev.nodes, ev.completed)
