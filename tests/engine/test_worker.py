"""The model-owning worker thread: commands in through a queue, events out through a callback."""

from __future__ import annotations

import queue
import time

from tests.factories import assert_same, collect_until
from tokentui.core.params import GenerationSettings, SamplingParams
from tokentui.engine import worker as w
from tokentui.engine.backend import ModelSpec
from tokentui.engine.events import (
    BranchStarted,
    Failed,
    Finished,
    Loaded,
    Progress,
    RunStarted,
    Saved,
    StepEvent,
    apply_event,
)
from tokentui.store.runfile import load_run


def test_worker_load_generate_branch_cancel(model_dirs, tmp_path):
    q: queue.Queue = queue.Queue()
    wk = w.Worker(q.put, save_dir=tmp_path).start()
    try:
        wk.submit(w.Fork(0, 1, [1]))  # nothing loaded yet: a clean failure, the thread lives on
        ev = collect_until(q, lambda e: isinstance(e, Failed))
        assert "no model" in ev[-1].message
        wk.submit(w.Load(ModelSpec(str(model_dirs["gpt2"]))))
        evs = collect_until(q, lambda e: isinstance(e, (Loaded, Failed)))
        assert isinstance(evs[-1], Loaded) and any(isinstance(e, Progress) for e in evs)
        wk.submit(w.Generate("def f():", GenerationSettings(SamplingParams(max_new_tokens=6), k=4)))
        evs = collect_until(q, lambda e: isinstance(e, Finished))
        assert isinstance(evs[0], RunStarted) and isinstance(evs[1], BranchStarted)
        assert sum(isinstance(e, StepEvent) for e in evs) == 6
        mine = None  # the receiver's own run, built from the events alone
        for e in evs:
            mine = apply_event(mine, e)
        run = wk.run
        assert mine is not run and mine.prompt is not run.prompt
        evs += collect_until(q, lambda e: isinstance(e, Saved))  # autosaved when it ended
        assert_same(mine, load_run(tmp_path / f"{run.id}.tokentui"))
        wk.submit(w.Fork(0, run.length(0) - 2, None, text=" return"))
        evs = collect_until(q, lambda e: isinstance(e, Finished))
        collect_until(q, lambda e: isinstance(e, Saved))
        assert evs[-1].branch_id == 1 and run.branches[1].n_forced >= 1
        for e in evs:
            mine = apply_event(mine, e)
        assert_same(mine, run)
        wk.submit(w.Fork(0, 999, [1]))
        assert "out of range" in collect_until(q, lambda e: isinstance(e, Failed))[-1].message
        # cancel a long generation within a step
        wk.submit(w.Continue(0, SamplingParams(max_new_tokens=100_000)))
        collect_until(q, lambda e: isinstance(e, StepEvent))
        wk.cancel()
        fin = collect_until(q, lambda e: isinstance(e, Finished))[-1]
        assert fin.status == "cancelled" and fin.new_tokens < 100_000
        run.validate()
    finally:
        wk.shutdown()
    assert not wk._thread.is_alive()


def test_a_cancel_right_after_submitting_is_not_lost(model_dirs, tmp_path):
    """The cancel belongs to the command it was meant for: a generation cancelled the moment it is
    submitted (before the worker picked it up, or just after) ends cancelled within a step, every
    time; queued commands are cancelled with it; a command submitted afterwards runs to its end."""
    q: queue.Queue = queue.Queue()
    wk = w.Worker(q.put, save_dir=tmp_path).start()
    long = GenerationSettings(SamplingParams(max_new_tokens=100_000), k=4)
    try:
        wk.submit(w.Load(ModelSpec(str(model_dirs["gpt2"]))))
        assert isinstance(collect_until(q, lambda e: isinstance(e, (Loaded, Failed)))[-1], Loaded)
        for i in range(25):
            wk.submit(w.Generate("def f():", long))
            if i % 2:
                time.sleep(0.002 * (i % 5))  # sometimes the worker has already picked it up
            wk.cancel()
            fin = collect_until(q, lambda e: isinstance(e, (Finished, Failed)), timeout=30)[-1]
            most = 1 if i % 2 == 0 else 1000  # cancelled at once: within a step; after a sleep: soon after
            assert isinstance(fin, Finished) and fin.status == "cancelled" and fin.new_tokens <= most, (i, fin)
        wk.submit(w.Generate("def f():", long))
        wk.submit(w.Generate("def g():", long))  # queued behind the first: cancelled with it
        wk.cancel()
        fins = [collect_until(q, lambda e: isinstance(e, Finished), timeout=30)[-1] for _ in range(2)]
        assert [f.status for f in fins] == ["cancelled", "cancelled"]
        wk.submit(w.Generate("def h():", GenerationSettings(SamplingParams(max_new_tokens=5), k=4)))
        fin = collect_until(q, lambda e: isinstance(e, Finished), timeout=30)[-1]
        assert fin.status == "length" and fin.new_tokens == 5  # a later command is not cancelled
    finally:
        wk.shutdown()
