"""Steering against a reference written here: forward pre-hooks on the block after layer l (or on
the final norm, for l = L) that add scale·w_l·pw(t)·v to what that module reads — another
mechanism than tokentui's forward hooks on block l, reaching the same point of the residual
stream. Also: hooks never outlive a forward (error, cancel), a zero vector changes nothing, a
spec that does not fit the model is one line, and the contrast vector equals the mean difference
of hidden states computed from `output_hidden_states`."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from tokentui.core.measures import DERIVED, derive
from tokentui.core.params import GenerationSettings, SamplingParams
from tokentui.core.steer_compare import compare
from tokentui.core.steering import SteeringError, SteeringSpec
from tokentui.engine import jobs
from tokentui.engine.errors import EngineError
from tokentui.engine.events import StepEvent
from tokentui.engine.hf.backend import HFBackend
from tokentui.engine.hf.steering import Steerer, check_before_load, contrast_vector
from tokentui.store.runfile import load_run, save_run

PROMPT = "def wrap(text, width):\n    "
TEXT = "import os\nprint(os.path.join(a, b))\n"


def blocks_of(model) -> list[torch.nn.Module]:
    """The decoder blocks, looked up here by family (not through tokentui's lookup)."""
    for path in ("transformer.h", "model.layers", "gpt_neox.layers"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return list(obj)
    raise AssertionError(f"no blocks on {type(model).__name__}")


def final_norm(model) -> torch.nn.Module:
    for path in ("transformer.ln_f", "model.norm", "gpt_neox.final_layer_norm"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise AssertionError(f"no final norm on {type(model).__name__}")


def hand_weights(position_weights, n: int) -> torch.Tensor:
    """Position weights of positions 0…n−1, by hand: the list, then its last value."""
    if position_weights is None:
        return torch.ones(n)
    return torch.tensor([float(position_weights[min(t, len(position_weights) - 1)]) for t in range(n)])


def reference_forward(model, ids: list[int], vector, layers, weights, scale, position_weights=None):
    """A full forward with w·v added by the test's own pre-hooks (no cache)."""
    blocks = blocks_of(model)
    n_layers = len(blocks)
    pw = hand_weights(position_weights, len(ids))
    v = torch.tensor(np.asarray(vector), dtype=torch.float32)
    handles = []
    for layer, w in zip(layers, weights):
        target = blocks[layer] if layer < n_layers else final_norm(model)  # reads layer l's output
        add = pw[:, None] * v[None, :] * (scale * w)

        def pre(_module, args, kwargs, add=add):
            if args:
                return (args[0] + add, *args[1:]), kwargs
            kwargs = dict(kwargs)
            kwargs["hidden_states"] = kwargs["hidden_states"] + add
            return args, kwargs

        handles.append(target.register_forward_pre_hook(pre, with_kwargs=True))
    try:
        with torch.inference_mode():
            return model(torch.tensor([ids]), output_hidden_states=True, use_cache=False)
    finally:
        for h in handles:
            h.remove()


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def spec_for(lm, seed=0, layers=None, position_weights=None, scale=3.0) -> SteeringSpec:
    d = lm.model.config.get_text_config().hidden_size
    rng = np.random.default_rng(seed)
    layers = layers or [1, lm.n_layers]
    weights = [1.0, -0.5, 2.0][: len(layers)]
    return SteeringSpec.of(rng.normal(size=d), layers, weights, scale, position_weights, name="v.npy")


@pytest.mark.parametrize("family", ["gpt2", "llama", "gpt_neox"])
def test_steered_forward_equals_the_hand_reference(loaded, family):
    lm = loaded(family)
    ids = lm.tokenizer(TEXT)["input_ids"]
    spec = spec_for(lm, layers=[1, 2, lm.n_layers], position_weights=[0.5, 0.0, 1.0, 2.0])
    ref = reference_forward(lm.model, ids, spec.vector, spec.layers, spec.weights, spec.scale, spec.position_weights)
    steerer = Steerer(lm.model, spec, lm.n_layers)
    before = hook_count(lm.model)
    with torch.inference_mode():
        with steerer.applied(0):
            assert hook_count(lm.model) == before + 3
            out = lm.model(torch.tensor([ids]), output_hidden_states=True, use_cache=False)
        plain = lm.model(torch.tensor([ids]), use_cache=False)
    assert hook_count(lm.model) == before
    assert (out.logits - ref.logits).abs().max().item() <= 1e-5
    assert (plain.logits - ref.logits).abs().max().item() > 1e-2  # the steering did change the model
    # the lens reads the steered residual stream: each layer's hidden state as the next block reads
    # it (the reference's pre-hooks add after transformers recorded the block's output: add it here)
    pw = hand_weights(spec.position_weights, len(ids))
    v = torch.tensor(spec.vector)
    for layer in range(1, lm.n_layers):
        w = dict(zip(spec.layers, spec.weights)).get(layer, 0.0)
        want = ref.hidden_states[layer][0] + pw[:, None] * v * (spec.scale * w)
        assert (out.hidden_states[layer][0] - want).abs().max().item() <= 1e-5
    # through the engine: teacher-forced scoring with the spec records the reference's numbers
    run = HFBackend(lm, lens_chunk=1, lens_precision="float32").score_ids(ids, k=5, steering=spec)
    logp = torch.log_softmax(ref.logits[0].float(), -1)
    want = logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].numpy()
    np.testing.assert_allclose(run.prompt.col("logprob")[1:], want, atol=1e-5)
    ent = -(logp.exp() * logp).sum(-1).numpy()
    np.testing.assert_allclose(run.prompt.col("entropy")[1:], ent[:-1], atol=1e-5)
    assert run.meta.steering == spec.record() == run.branches[0].steering


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_steered_generation_through_the_kv_cache_equals_the_reference(loaded, family):
    """Decoding one token per forward, with the cache's length as each forward's first position,
    gives the full-sequence reference's greedy tokens and log-probs (position weights included)."""
    lm = loaded(family)
    spec = spec_for(lm, seed=1, layers=[2], position_weights=[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0])
    backend = HFBackend(lm, lens_chunk=1, lens_precision="float32")
    job = jobs.Generate(backend, PROMPT, GenerationSettings(SamplingParams(max_new_tokens=10), k=5), steering=spec)
    list(job)
    run = job.run
    seq = run.sequence(0).tolist()
    ref = reference_forward(lm.model, seq, spec.vector, spec.layers, spec.weights, spec.scale, spec.position_weights)
    logp = torch.log_softmax(ref.logits[0].float(), -1)
    start = run.branches[0].fork_position
    for p in range(start, len(seq)):
        assert seq[p] == int(logp[p - 1].argmax())
        assert run.step(0, p).logprob == pytest.approx(float(logp[p - 1, seq[p]]), abs=1e-5)
    assert run.branches[0].steering == spec.record() == run.meta.steering


def test_compare_job_forks_a_steered_branch_that_recomputes_the_prompt(loaded, tmp_path):
    """Branch 1 of a comparison equals a steered generation made on its own (the standard
    branch's cached prompt is not reused under steering), branch 0 a plain one; the comparison's
    numbers are the two branches' columns; the records survive a save and a load."""
    lm = loaded("llama")
    spec = spec_for(lm, seed=2, layers=[1], scale=4.0)
    settings = GenerationSettings(SamplingParams(max_new_tokens=8), k=5)
    backend = HFBackend(lm, lens_chunk=1, lens_precision="float32")
    job = jobs.SteerCompare(backend, spec, prompt=PROMPT, settings=settings)
    list(job)
    run = job.run
    assert [(b.parent, b.fork_position, b.status) for b in run.branches] == [
        (None, len(run.prompt), "length"),
        (0, len(run.prompt), "length"),
    ]
    assert run.branches[0].steering is None and run.meta.steering is None
    assert run.branches[1].steering == spec.record()
    alone = jobs.Generate(HFBackend(lm, lens_chunk=1, lens_precision="float32"), PROMPT, settings, steering=spec)
    list(alone)
    plain = jobs.Generate(HFBackend(lm, lens_chunk=1, lens_precision="float32"), PROMPT, settings)
    list(plain)
    for branch, other in ((1, alone.run), (0, plain.run)):
        assert run.sequence(branch).tolist() == other.sequence(0).tolist()
        np.testing.assert_allclose(
            run.column(branch, "logprob")[len(run.prompt) :],
            other.column(0, "logprob")[len(run.prompt) :],
            atol=1e-5,
        )
    c = compare(run, 1)
    s = len(run.prompt)
    np.testing.assert_array_equal(c.positions, np.arange(s, run.length(1)))
    for name in c.names:
        if name in DERIVED:  # (layer perplexity, KL to uniform: from the lens entropy, as stored)
            want = [derive(name, lambda n, b=b: run.column(b, n), run.meta.vocab_size)[s:] for b in (0, 1)]
        else:
            want = [run.column(b, name)[s:] for b in (0, 1)]
        np.testing.assert_array_equal(c.difference(name), want[1] - want[0].astype(float))
    differ = [p for p in range(s, run.length(1)) if run.sequence(0)[p] != run.sequence(1)[p]]
    assert c.divergence == (differ[0] if differ else None)
    loaded_run = load_run(save_run(run, tmp_path / "c.tokentui"))
    assert loaded_run.branches[1].steering == spec.record() and loaded_run.branches[0].steering is None


def test_text_comparison_teacher_forces_both_and_the_steered_branch_equals_the_reference(loaded):
    lm = loaded("gpt2")
    spec = spec_for(lm, seed=3, layers=[2], position_weights=[0.0, 1.0])
    job = jobs.SteerCompare(HFBackend(lm, lens_chunk=1, lens_precision="float32"), spec, text=TEXT)
    list(job)
    run = job.run
    ids = lm.tokenizer(TEXT)["input_ids"]
    assert run.sequence(0).tolist() == run.sequence(1).tolist() == ids
    assert [b.n_forced for b in run.branches] == [len(ids) - 1] * 2
    for branch, s in ((0, None), (1, spec)):
        if s is None:
            with torch.inference_mode():
                ref = lm.model(torch.tensor([ids]), use_cache=False)
        else:
            ref = reference_forward(lm.model, ids, s.vector, s.layers, s.weights, s.scale, s.position_weights)
        logp = torch.log_softmax(ref.logits[0].float(), -1)
        want = logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].numpy()
        np.testing.assert_allclose(run.column(branch, "logprob")[1:], want, atol=1e-5)
    c = compare(run, 1)
    assert c.divergence is None and len(c) == len(ids) - 1
    assert c.difference("logprob")[0] == 0  # position 1 reads position 0, whose weight is 0
    assert np.abs(c.difference("logprob")[1:]).max() > 1e-3


def test_hooks_are_gone_after_an_error_in_the_middle_of_a_generation_and_after_a_cancel(loaded):
    lm = loaded("llama")
    spec = spec_for(lm, seed=4)
    backend = HFBackend(lm, lens_chunk=4)
    with torch.inference_mode():  # transformers installs its output-capturing hooks on first use
        lm.model(torch.tensor([[1, 2, 3]]), output_hidden_states=True)
    before = hook_count(lm.model)
    calls = {"n": 0}

    def fail_on_the_fifth_forward(_module, _args, _output):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("injected failure")

    blocks = blocks_of(lm.model)
    handle = blocks[1].register_forward_hook(fail_on_the_fifth_forward)
    counts_between_steps = []
    job = jobs.Generate(backend, PROMPT, GenerationSettings(SamplingParams(max_new_tokens=20), k=4), steering=spec)
    try:
        with pytest.raises(EngineError, match="injected failure"):
            for ev in job:
                if isinstance(ev, StepEvent):
                    counts_between_steps.append(hook_count(lm.model))
    finally:
        handle.remove()
    assert calls["n"] == 5 and job.run.branches[0].status == "error" and len(job.run.branches[0].steps) == 4
    assert counts_between_steps == [before + 1] * 4  # only the test's own hook between two steps
    assert hook_count(lm.model) == before
    # a cancel between two steps
    cancel = threading.Event()
    job = jobs.Generate(
        backend, PROMPT, GenerationSettings(SamplingParams(max_new_tokens=30), k=4), cancel, steering=spec
    )
    for ev in job:
        if isinstance(ev, StepEvent) and ev.step.position >= job.run.branches[0].fork_position + 2:
            cancel.set()
    assert job.run.branches[0].status == "cancelled" and len(job.run.branches[0].steps) == 3
    assert hook_count(lm.model) == before
    # and a generator abandoned half-way (a reader that stopped)
    it = iter(jobs.Generate(backend, PROMPT, GenerationSettings(SamplingParams(max_new_tokens=30)), steering=spec))
    for ev in it:
        if isinstance(ev, StepEvent):
            break
    assert hook_count(lm.model) == before


def test_a_zero_vector_changes_nothing(loaded):
    lm = loaded("qwen2")
    d = lm.model.config.hidden_size
    zero = SteeringSpec.of(np.zeros(d), [1, 2, 3], [1.0, 2.0, 3.0], scale=5.0, position_weights=[1.0, 2.0])
    settings = GenerationSettings(SamplingParams(temperature=0.8, seed=3, max_new_tokens=12), k=6)
    runs = []
    for steering in (None, zero):
        job = jobs.Generate(HFBackend(lm, lens_chunk=1), PROMPT, settings, steering=steering)
        list(job)
        runs.append(job.run)
    a, b = runs
    assert a.sequence(0).tolist() == b.sequence(0).tolist()
    for name in ("logprob", "entropy", "rank", "topk_ids", "topk_logprobs", "layer_entropy", "sampler_logprob"):
        np.testing.assert_array_equal(a.column(0, name), b.column(0, name))
    assert b.branches[0].steering["norm"] == 0.0


def test_a_spec_that_does_not_fit_the_model_is_one_line_before_anything_runs(loaded, model_dirs):
    lm = loaded("gpt2")
    d = lm.model.config.n_embd
    backend = HFBackend(lm)
    missing = SteeringSpec.of(np.ones(d), [lm.n_layers + 1], name="v.npy")
    wrong = SteeringSpec.of(np.ones(d + 1), [1], name="v.npy")
    for spec, words in ((missing, f"layer {lm.n_layers + 1} does not exist"), (wrong, f"{d + 1} values")):
        for call in (
            lambda s=spec: backend.score_ids([1, 2, 3], 4, steering=s),
            lambda s=spec: list(jobs.Generate(backend, PROMPT, GenerationSettings(), steering=s)),
            lambda s=spec: check_before_load(s, str(model_dirs["gpt2"])),
        ):
            with pytest.raises(SteeringError) as e:
                call()
            assert words in str(e.value) and "\n" not in str(e.value)


def test_continuing_a_steered_branch_needs_its_steering(loaded):
    lm = loaded("gpt2")
    spec = spec_for(lm, seed=5, layers=[1])
    backend = HFBackend(lm, lens_chunk=1, lens_precision="float32")
    job = jobs.Generate(backend, PROMPT, GenerationSettings(SamplingParams(max_new_tokens=4), k=4), steering=spec)
    list(job)
    run = job.run
    with pytest.raises(EngineError, match="grown steered"):
        list(jobs.Continue(backend, run, 0, SamplingParams(max_new_tokens=3)))
    other = spec_for(lm, seed=6, layers=[1])
    with pytest.raises(EngineError, match="grown steered"):
        list(jobs.Continue(backend, run, 0, SamplingParams(max_new_tokens=3), steering=other))
    list(jobs.Continue(backend, run, 0, SamplingParams(max_new_tokens=3), steering=spec))
    seq = run.sequence(0).tolist()
    ref = reference_forward(lm.model, seq, spec.vector, spec.layers, spec.weights, spec.scale)
    logp = torch.log_softmax(ref.logits[0].float(), -1)
    for p in range(run.branches[0].fork_position, len(seq)):
        assert seq[p] == int(logp[p - 1].argmax())
        assert run.step(0, p).logprob == pytest.approx(float(logp[p - 1, seq[p]]), abs=1e-5)


@pytest.mark.parametrize("position", ["mean", "last"])
def test_contrast_vector_is_the_mean_difference_of_hidden_states(loaded, position):
    lm = loaded("llama")
    backend = HFBackend(lm)
    positive = ["I love this, it is wonderful", "what a great day", "x"]
    negative = ["I hate this, it is awful", "a terrible day"]
    layer = 2
    got = contrast_vector(backend, positive, negative, layer, position)

    def state(prompt: str) -> np.ndarray:
        ids = lm.tokenizer(prompt)["input_ids"]
        with torch.inference_mode():
            h = lm.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[layer][0].double()
        return (h[-1] if position == "last" or len(ids) == 1 else h[1:].mean(0)).numpy()

    want = np.mean([state(p) for p in positive], 0) - np.mean([state(p) for p in negative], 0)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
