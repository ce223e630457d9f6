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


def test_a_new_model_b_replaces_the_old_one_only_once_it_is_loaded(model_dirs, tmp_path, monkeypatch):
    """B loads while the earlier B stays; on a device with room for A and one B (simulated here:
    a CPU never runs out of memory, so a load beside two models raises DoesNotFit as
    LivePair.load does on a full GPU) the earlier B goes first and the load is tried again; a
    B that does not fit even then leaves no B (PairReleased), and the session says so."""
    from tests.factories import other_tokenizer_model_dir, perturbed_model_dir
    from tokentui.engine import backend as engine_backend
    from tokentui.engine.errors import DoesNotFit
    from tokentui.engine.events import PairLoaded, PairReleased
    from tokentui.tui.state import Session

    b1 = perturbed_model_dir(model_dirs["gpt2"], tmp_path / "b1", seed=1)
    b2 = perturbed_model_dir(model_dirs["gpt2"], tmp_path / "b2", seed=2)
    other = other_tokenizer_model_dir(tmp_path / "other")
    q: queue.Queue = queue.Queue()
    wk = w.Worker(q.put, save_dir=tmp_path).start()
    real = engine_backend.open_comparer
    room = {"b": 1}  # how many models B fit beside A

    def open_comparer(backend, spec, progress=None):
        loaded = wk.pair is not None
        if loaded + 1 > room["b"]:
            raise DoesNotFit(f"{spec.model} does not fit beside the models loaded")
        return real(backend, spec, progress)

    monkeypatch.setattr(engine_backend, "open_comparer", open_comparer)
    session = Session.start(str(model_dirs["gpt2"]), GenerationSettings())

    def until(kind):
        evs = collect_until(q, lambda e: isinstance(e, (kind, Failed)))
        for e in evs:
            session.apply(e)
        return evs

    try:
        wk.submit(w.Load(ModelSpec(str(model_dirs["gpt2"]))))
        assert isinstance(until(Loaded)[-1], Loaded)
        wk.submit(w.LoadPair(ModelSpec(str(b1))))
        assert isinstance(until(PairLoaded)[-1], PairLoaded) and session.model_b_loaded == "b1"
        room["b"] = 2  # room for both: a refused B (another tokenizer) leaves b1 as it was
        wk.submit(w.LoadPair(ModelSpec(str(other))))
        assert "one tokenizer" in until(PairLoaded)[-1].message
        assert wk.pair is not None and wk.pair.info_b.name == "b1" and session.model_b_loaded == "b1"
        room["b"] = 1  # b2 fits only once b1 is gone
        wk.submit(w.LoadPair(ModelSpec(str(b2))))
        evs = until(PairLoaded)
        assert isinstance(evs[-1], PairLoaded) and not any(isinstance(e, PairReleased) for e in evs)
        assert wk.pair.info_b.name == "b2" and session.model_b_loaded == "b2" and " vs b2" in session.model_info
        room["b"] = 0  # b1 does not fit even alone: b2 was released for it, nothing is compared now
        wk.submit(w.LoadPair(ModelSpec(str(b1))))
        evs = until(PairLoaded)
        assert [type(e) for e in evs[-2:]] == [PairReleased, Failed] and wk.pair is None
        assert not session.model_b_loaded and session.model_b is None and " vs " not in session.model_info
        assert "does not fit" in session.note and "still comparing" not in session.note
    finally:
        wk.shutdown()


def test_a_model_package_that_is_not_installed_is_one_line_saying_what_to_install(tmp_path, monkeypatch):
    """A laptop with only what replays need (no torch): loading a model fails as a one-line
    message naming the package, not 'unexpected ModuleNotFoundError'; another module missing is
    still reported as unexpected (a bug, not a setup)."""
    from tokentui.engine import backend as engine_backend

    missing = {"name": "torch"}

    def open_backend(spec, progress=None, chat=False):
        raise ModuleNotFoundError(f"No module named {missing['name']!r}", name=missing["name"])

    monkeypatch.setattr(engine_backend, "open_backend", open_backend)
    q: queue.Queue = queue.Queue()
    wk = w.Worker(q.put, save_dir=tmp_path).start()
    try:
        wk.submit(w.Load(ModelSpec("demo")))
        message = collect_until(q, lambda e: isinstance(e, Failed))[-1].message
        assert message.startswith("running a model needs torch") and "pip install torch" in message
        assert "replay, export, stats and runs need none of them" in message
        missing["name"] = "tokentui.nonesuch"
        wk.submit(w.Load(ModelSpec("demo")))
        message = collect_until(q, lambda e: isinstance(e, Failed))[-1].message
        assert message == "unexpected ModuleNotFoundError: No module named 'tokentui.nonesuch'"
    finally:
        wk.shutdown()


def test_a_worker_beside_a_ui_leaves_the_ui_a_core_on_the_cpu_until_it_stops(model_dirs, monkeypatch):
    """On a 2-core machine the explorer drew its frames on a core torch's two threads were using:
    the explorer's worker runs torch on one thread fewer (not below one), gives the number back when
    it stops, and leaves a number the user chose (OMP_NUM_THREADS) alone. (torch's number is each
    thread's own once it has run an operator: a thread started after the change reads it.)"""
    import threading

    import torch

    def threads() -> int:
        seen = []
        t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        t.start()
        t.join()
        return seen[0]

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for env, spare, during in ((None, True, 2), (None, False, 3), ("3", True, 3)):
            if env is not None:
                monkeypatch.setenv("OMP_NUM_THREADS", env)
            q: queue.Queue = queue.Queue()
            wk = w.Worker(q.put, spare_core=spare).start()
            try:
                wk.submit(w.Load(ModelSpec(str(model_dirs["gpt2"]), device="cpu")))
                assert isinstance(collect_until(q, lambda e: isinstance(e, (Loaded, Failed)))[-1], Loaded)
                assert threads() == during
            finally:
                wk.shutdown()
            assert threads() == 3
        torch.set_num_threads(1)
        assert w.leave_a_core() is None and threads() == 1
    finally:
        torch.set_num_threads(before)
