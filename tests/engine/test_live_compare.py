"""The explorer's live comparison (`explore --compare B`): the worker with model B loaded beside A
compares every branch a job grows. Every comparison number of the receiver's run (built from the
events alone) is checked against an independent computation in the test — a plain forward of each
model over the branch's whole sequence, `log_softmax` over the full vocabulary, KL by torch's
`kl_div`, ranks by sorting — and the saved file against the receiver's run."""

from __future__ import annotations

import queue

import numpy as np
import pytest
import torch

from tests.factories import assert_same, collect_until, other_tokenizer_model_dir, perturbed_model_dir
from tokentui.core import compared
from tokentui.core.params import GenerationSettings, SamplingParams
from tokentui.engine import worker as w
from tokentui.engine.backend import ModelSpec
from tokentui.engine.events import Compared, Comparing, Failed, Loaded, PairLoaded, Saved, Widened, apply_event
from tokentui.engine.hf.loading import load_model
from tokentui.store.runfile import load_run

K = 4


@pytest.fixture(scope="module")
def b_dir(model_dirs, tmp_path_factory):
    return perturbed_model_dir(model_dirs["gpt2"], tmp_path_factory.mktemp("live-b"))


def reference(lm, ids: list[int]) -> torch.Tensor:
    """[n − 1, V] float32 log-probs of positions 1…: a plain forward and log_softmax, nothing else."""
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1)


def check_branch(run, branch: int, lm_a, lm_b) -> None:
    """Every comparison column of the branch's sequence (positions 1…) against the reference."""
    ids = run.sequence(branch).tolist()
    la, lb = reference(lm_a, ids), reference(lm_b, ids)
    t = torch.tensor(ids[1:])[:, None]
    col = lambda name: run.column(branch, name)[1:]  # noqa: E731 - positions 1…
    np.testing.assert_allclose(col("logprob_b"), lb.gather(1, t)[:, 0], atol=1e-5)
    np.testing.assert_allclose(col("entropy_b"), -(lb.exp() * lb).sum(-1), atol=1e-5)
    order = np.argsort(-lb.numpy(), axis=-1, kind="stable")
    rank_b = [int(np.flatnonzero(row == x)[0]) + 1 for row, x in zip(order, ids[1:])]
    np.testing.assert_array_equal(col("rank_b"), rank_b)
    np.testing.assert_array_equal(col("topk_ids_b"), lb.topk(K, -1).indices)
    kl = torch.nn.functional.kl_div  # kl_div(log q, log p, log_target) = p (log p − log q): KL(p‖q)
    np.testing.assert_allclose(col("kl_ab"), kl(lb, la, reduction="none", log_target=True).sum(-1), atol=1e-5)
    np.testing.assert_allclose(col("kl_ba"), kl(la, lb, reduction="none", log_target=True).sum(-1), atol=1e-5)
    pa, pb = la.double().exp().numpy(), lb.double().exp().numpy()
    m = (pa + pb) / 2
    js = 0.5 * (pa * np.log(pa / m)).sum(-1) + 0.5 * (pb * np.log(pb / m)).sum(-1)
    np.testing.assert_allclose(col("js"), js, atol=1e-5)
    assert np.isnan(run.column(branch, "kl_ab")[0])  # position 0 predicts nothing
    assert (col("kl_ab") > 1e-4).all()  # the perturbed model really differs


def test_generation_and_fork_are_compared_under_b(model_dirs, b_dir, tmp_path):
    q: queue.Queue = queue.Queue()
    wk = w.Worker(q.put, save_dir=tmp_path).start()
    events: list = []
    try:
        wk.submit(w.Load(ModelSpec(str(model_dirs["gpt2"]))))
        wk.submit(w.LoadPair(ModelSpec(str(b_dir))))
        events += collect_until(q, lambda e: isinstance(e, (PairLoaded, Failed)))
        assert isinstance(events[-1], PairLoaded), events[-1]
        assert any(isinstance(e, Loaded) for e in events)
        wk.submit(w.Generate("def f(x):", GenerationSettings(SamplingParams(max_new_tokens=6), k=K)))
        events += collect_until(q, lambda e: isinstance(e, Compared))
        assert events[-1].branches == (0,) and not events[-1].cancelled
        wk.submit(w.Fork(0, 5, [17], sampling=SamplingParams(max_new_tokens=3)))
        events += collect_until(q, lambda e: isinstance(e, Compared))
        assert events[-1].branches == (1,)
        assert events[-1].positions == 4  # only the fork's own tokens: the prefix was compared already
        wk.submit(w.Continue(0, SamplingParams(max_new_tokens=2)))
        events += collect_until(q, lambda e: isinstance(e, Compared))
        events += collect_until(q, lambda e: isinstance(e, Saved))
    finally:
        wk.shutdown()
    mine = None  # the receiver's run, from the events alone
    for e in events:
        mine = apply_event(mine, e)
    assert mine is not None and any(isinstance(e, Widened) for e in events)
    assert mine.meta.model_b is not None and mine.meta.model_b["model"] == b_dir.name
    assert set(compared.NAMES) <= set(mine.layout.names)
    lm_a, lm_b = load_model(str(model_dirs["gpt2"])), load_model(str(b_dir))
    for branch in (0, 1):
        check_branch(mine, branch, lm_a, lm_b)
    assert mine.length(0) == len(mine.prompt) + 8 and mine.length(1) == 5 + 4
    for t in mine.column(0, "topk_ids_b")[1:].ravel():  # B's alternatives have their text
        assert int(t) in mine.tokens
    saved = load_run(tmp_path / f"{mine.id}.tokentui")
    assert_same(mine, saved)
    assert saved.meta.model_b == mine.meta.model_b


def test_b_loaded_later_compares_the_open_run_and_refuses_another_tokenizer(model_dirs, b_dir, tmp_path):
    other = other_tokenizer_model_dir(tmp_path / "other")
    q: queue.Queue = queue.Queue()
    wk = w.Worker(q.put, save_dir=None).start()
    events: list = []
    try:
        wk.submit(w.Load(ModelSpec(str(model_dirs["gpt2"]))))
        wk.submit(w.Generate("x = 1", GenerationSettings(SamplingParams(max_new_tokens=4), k=K)))
        events += collect_until(q, lambda e: isinstance(e, Failed) or getattr(e, "status", "") == "length")
        wk.submit(w.LoadPair(ModelSpec(str(other))))
        fail = collect_until(q, lambda e: isinstance(e, (Failed, PairLoaded)))[-1]
        assert isinstance(fail, Failed) and "one tokenizer" in fail.message and "\n" not in fail.message
        assert wk.pair is None
        wk.submit(w.Fork(0, 3, [5], sampling=SamplingParams(max_new_tokens=2)))  # still works, uncompared
        events += collect_until(q, lambda e: getattr(e, "status", "") == "length")
        wk.submit(w.LoadPair(ModelSpec(str(b_dir))))
        events += collect_until(q, lambda e: isinstance(e, Compared))
    finally:
        wk.shutdown()
    assert events[-1].branches == (0, 1)
    # each branch compared was announced first, with how far the job is (the explorer says so)
    announced = [(e.branch, e.done, e.total) for e in events if isinstance(e, Comparing)]
    assert announced == [(0, 0, 2), (1, 1, 2)]
    mine = None
    for e in events:
        mine = apply_event(mine, e)
    lm_a, lm_b = load_model(str(model_dirs["gpt2"])), load_model(str(b_dir))
    for branch in (0, 1):
        check_branch(mine, branch, lm_a, lm_b)


def test_widen_keeps_its_own_values_and_drops_another_models(model_dirs, loaded):
    from tokentui.engine.hf.backend import HFBackend

    run = HFBackend(loaded("gpt2"), lens_chunk=0).score_ids([5, 6, 7, 8], k=K)
    logprob = run.prompt.col("logprob").copy()
    compared.widen(run, {"model": "b1", "revision": None, "dtype": "float32"})
    assert compared.missing(run, 0) == [(None, 1, 4)]
    compared.set_values(run, None, 1, {"kl_ab": np.array([0.1, 0.2, 0.3], dtype=np.float32)})
    assert compared.missing(run, 0) == []
    compared.widen(run, {"model": "b1", "revision": None, "dtype": "float16"})  # the same model: kept
    np.testing.assert_allclose(run.prompt.col("kl_ab")[1:], [0.1, 0.2, 0.3])
    compared.widen(run, {"model": "b2", "revision": None, "dtype": "float32"})  # another: its values go
    assert np.isnan(run.prompt.col("kl_ab")).all() and run.meta.model_b["model"] == "b2"
    np.testing.assert_array_equal(run.prompt.col("logprob"), logprob)  # model A's columns untouched
    run.meta.steering = {"vector": "v"}  # steered positions are not compared
    assert compared.missing(run, 0) == []


def test_a_b_of_another_vocabulary_size_is_refused_before_its_weights(loaded):
    """The explorer's B (`explore --compare B`, key B): its configuration's vocabulary size is
    checked against A's before B's weights are read."""
    from tokentui.engine.errors import EngineError
    from tokentui.engine.hf.backend import HFBackend
    from tokentui.engine.hf.compare import LivePair

    said: list[str] = []
    with pytest.raises(EngineError, match=r"vocabularies differ .*demo: 8192\)"):
        LivePair.load(HFBackend(loaded("gpt2"), lens_chunk=0), ModelSpec("demo"), said.append)
    assert said and not [m for m in said if "loading weights" in m]


def test_a_run_another_model_made_is_not_compared_into(model_dirs, b_dir, loaded, tmp_path):
    """With B loaded, opening another model's run compared it: A's values filled in and saved into
    the file under the run's own model's name. Refused now, as every job that adds to a run is."""
    from tests.factories import generate_run
    from tokentui.engine.hf.backend import HFBackend
    from tokentui.store.runfile import save_run

    run, _ = generate_run(HFBackend(loaded("qwen2"), lens_chunk=0), "def f(x):", SamplingParams(max_new_tokens=3), k=K)
    path = save_run(run, tmp_path / f"{run.id}.tokentui")
    saved = path.read_bytes()
    q: queue.Queue = queue.Queue()
    wk = w.Worker(q.put, save_dir=tmp_path).start()
    try:
        wk.submit(w.Load(ModelSpec(str(model_dirs["gpt2"]))))
        wk.submit(w.LoadPair(ModelSpec(str(b_dir))))
        assert isinstance(collect_until(q, lambda e: isinstance(e, (PairLoaded, Failed)))[-1], PairLoaded)
        wk.submit(w.Adopt(load_run(path)))
        fail = collect_until(q, lambda e: isinstance(e, (Failed, Compared)))[-1]
    finally:
        wk.shutdown()
    assert isinstance(fail, Failed) and fail.message.startswith(f"the run was made by {run.meta.model} and ")
    assert path.read_bytes() == saved
