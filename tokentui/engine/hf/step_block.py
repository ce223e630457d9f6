"""A branch's newest decoded steps, held as the rows the device sent until they are recorded into
the run and reported together.

A decode step's values leave the device as one float32 row (`measures.Packer`). Taking each row
apart into a dict, a `Step`, an append to the columns and a token-table update, one step at a
time, took ~100 µs of a ~2.8 ms step (timed in the loop, `gpt2-narrow` on a CPU: a model whose
step is Python and dispatch, as GPT-2 small's is on a GPU server). Here a block of rows is taken
apart with numpy once, appended in one `Run.extend_steps` and its ids noted once: per step ~30 µs
less with the lens off, ~250 µs less with it on (seven layer columns a step). `latency` says how
long a step may wait: 0 reports every step as it comes (the explorer and `generate` show each
token); a batch, which shows nothing per token, reports up to BLOCK steps at a time. The run and
the events are the same either way: one `StepEvent` per step, in order, the block's new token
bytes on its first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from tokentui.core.run import Branch, Run
from tokentui.core.step import Step
from tokentui.engine.events import StepEvent
from tokentui.engine.hf.measures import Packer, layer_arrays

BLOCK = 64  # steps at most held at once


class StepBlock:
    def __init__(
        self,
        run: Run,
        branch: Branch,
        packer: Packer,
        note: Callable[..., dict[int, bytes]],
        latency: float = 0.0,
    ) -> None:
        """`note(run, *id_arrays)`: adds the ids' bytes the run's token table lacks and returns them."""
        self.run, self.branch, self.packer, self.note, self.latency = run, branch, packer, note, latency
        self.rows: list[np.ndarray] = []
        self.forced = 0  # how many of the rows are forced steps (they come first in a branch)
        self.first_at = 0.0

    @property
    def end(self) -> int:
        """The branch's end, its held steps included: the next step's position."""
        return self.branch.end + len(self.rows)

    def add(self, row: np.ndarray, forced: bool) -> None:
        if not self.rows:
            self.first_at = time.perf_counter()
        self.rows.append(row)
        self.forced += forced

    def due(self, step_seconds: float) -> bool:
        """Whether to report now: the block is full, or one more step (about `step_seconds`)
        would keep its first step waiting longer than the latency allows."""
        if len(self.rows) >= BLOCK:
            return True
        return bool(self.rows) and time.perf_counter() - self.first_at + step_seconds > self.latency

    def flush(self) -> list[StepEvent]:
        """Record the held steps into the run; their events, in order."""
        if not self.rows:
            return []
        run, branch, packer = self.run, self.branch, self.packer
        n, forced, start = len(self.rows), self.forced, branch.end
        host, lensed = packer.unpack_block(np.stack(self.rows))
        self.rows, self.forced = [], 0
        tokens = host.pop("token_id")
        host.update(layer_arrays(lensed, host, n, run.layout))
        run.extend_steps(branch.id, start, {"token_id": tokens, **host}, forced)
        added = self.note(run, tokens, *(host[name] for name in packer.id_measures))
        events = []
        for i, token in enumerate(tokens.tolist()):
            step = Step(
                start + i, token, {name: v[i] for name, v in host.items()}, "forced" if i < forced else "generated"
            )
            events.append(StepEvent(run.id, branch.id, step, added if i == 0 else {}))
        return events
