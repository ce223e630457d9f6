"""What the engine reports while it works. Plain dataclasses (no torch), safe to pass between
threads: each carries copies, never views into arrays the engine keeps writing."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tokentui.core.step import Step


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


@dataclass(frozen=True)
class BranchStarted:
    run_id: str
    branch_id: int
    parent: int | None
    fork_position: int


@dataclass(frozen=True)
class StepEvent:
    run_id: str
    branch_id: int
    step: Step


@dataclass(frozen=True)
class LensEvent:
    """Layer entropies for steps already reported (the lens runs in chunks)."""

    run_id: str
    branch_id: int
    start_position: int
    values: np.ndarray = field(repr=False)  # [n, L]


@dataclass(frozen=True)
class Finished:
    run_id: str
    branch_id: int
    status: str  # eos | length | stop | cancelled | error | scored
    new_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Saved:
    run_id: str
    path: str


@dataclass(frozen=True)
class Failed:
    """A command failed; `message` is one line for the user."""

    command: str
    message: str


Event = Progress | Loaded | BranchStarted | StepEvent | LensEvent | Finished | Saved | Failed
