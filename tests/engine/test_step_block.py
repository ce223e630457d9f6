"""Steps reported in blocks (`step_latency` = ∞, as `batch` sets it) record the same run and send
the same events, in an order a receiver can follow, as steps reported one by one: over a whole
block and past it, with forced tokens, a sampler, every lens setting, a stop string and a cancel."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from tests.factories import generate_run
from tokentui.core.params import SamplingParams
from tokentui.engine.events import Finished, LensEvent, RunStarted, StepEvent, apply_event
from tokentui.engine.hf.backend import HFBackend
from tokentui.engine.hf.step_block import BLOCK

PROMPT = "def wrap(text, width):\n    "


def _generate(lm, latency: float, params: SamplingParams, lens_chunk: int, forced: str = "", cancel=None):
    backend = HFBackend(lm, lens_chunk=lens_chunk)
    backend.step_latency = latency
    return generate_run(backend, PROMPT, params, k=4, forced=forced, cancel=cancel)


def _assert_same_run(a, b) -> None:
    assert a.sequence(0).tolist() == b.sequence(0).tolist()
    assert [(x.n_forced, x.status, len(x.steps)) for x in a.branches] == [
        (x.n_forced, x.status, len(x.steps)) for x in b.branches
    ]
    for name in a.layout.names:
        np.testing.assert_array_equal(a.column(0, name), b.column(0, name), err_msg=name)
    assert a.tokens.items() == b.tokens.items()


def _followed(events):
    """The run a receiver builds from the events alone (the explorer's copy)."""
    run = None
    for ev in events:
        run = apply_event(run, ev)
    return run


def _steps(events):
    return [(e.step.position, e.step.token_id, e.step.kind, e.step.logprob, e.step.rank) for e in events
            if isinstance(e, StepEvent)]  # fmt: skip


@pytest.mark.parametrize("lens_chunk", [0, 1, 32])
def test_blocks_record_and_report_what_single_steps_do(loaded, lens_chunk):
    lm = loaded("llama")
    params = SamplingParams(max_new_tokens=BLOCK + 9, temperature=0.9, seed=7)  # (past a full block)
    one, one_events = _generate(lm, 0.0, params, lens_chunk, forced="return")
    blocked, events = _generate(lm, math.inf, params, lens_chunk, forced="return")
    assert one.branches[0].n_forced > 0 and len(blocked.branches[0].steps) > BLOCK
    _assert_same_run(one, blocked)
    _assert_same_run(one, _followed(events))  # each block's new token bytes arrive with its first step
    _assert_same_run(one, _followed(one_events))
    assert _steps(events) == _steps(one_events)
    assert (
        isinstance(events[-1], Finished) and events[-1].new_tokens == one_events[-1].new_tokens == params.max_new_tokens
    )
    # a lens event comes after the steps it fills (a receiver stores its values into them)
    reported = 0
    for ev in events:
        if isinstance(ev, StepEvent):
            reported = ev.step.position + 1
        elif isinstance(ev, LensEvent):
            assert ev.start_position + len(ev.values["layer_entropy"]) <= reported
    assert sum(isinstance(e, LensEvent) for e in events) == sum(isinstance(e, LensEvent) for e in one_events)
    if lens_chunk:
        assert np.isfinite(blocked.column(0, "layer_entropy")[blocked.branches[0].fork_position :]).all()


def test_a_stop_string_ends_a_blocked_branch_at_the_same_token(loaded):
    lm = loaded("gpt2")
    free, _ = _generate(lm, 0.0, SamplingParams(max_new_tokens=12), 8)
    b = free.branches[0]
    texts = [free.tokens.bytes_of(t) for t in free.sequence(0)[b.fork_position :].tolist()]
    stop = next(t.decode() for i, t in enumerate(texts) if i >= 3 and t.strip() and t.isascii())
    one, _ = _generate(lm, 0.0, SamplingParams(max_new_tokens=12, stop=[stop]), 8)
    blocked, _ = _generate(lm, math.inf, SamplingParams(max_new_tokens=12, stop=[stop]), 8)
    assert blocked.branches[0].status == "stop" and len(blocked.branches[0].steps) < 12
    _assert_same_run(one, blocked)


class _CancelAfter(threading.Event):
    """Set once it has been asked `n` times (the prompt's lens asks, then the decode loop before each step)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def is_set(self) -> bool:
        self.n -= 1
        return self.n < 0 or super().is_set()


def test_a_cancelled_blocked_branch_keeps_and_reports_every_step_it_made(loaded):
    lm = loaded("gpt2")
    params = SamplingParams(max_new_tokens=40)
    one, _ = _generate(lm, 0.0, params, 8, cancel=_CancelAfter(5))
    blocked, events = _generate(lm, math.inf, params, 8, cancel=_CancelAfter(5))
    assert blocked.branches[0].status == "cancelled" and 0 < len(blocked.branches[0].steps) < 40
    _assert_same_run(one, blocked)
    _assert_same_run(blocked, _followed(events))
    assert isinstance(events[0], RunStarted)
