"""The decode loop against independent computations: generate()'s tokens and raw logits, a plain
log_softmax over the full vocabulary, and a per-layer lens reference."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from tests.factories import FAMILIES, REAL, generate_run, score_text
from tokentui.core.params import GenerationSettings
from tokentui.core.run import SamplingParams
from tokentui.engine import jobs
from tokentui.engine.events import Finished, LensEvent, StepEvent
from tokentui.engine.hf.backend import HFBackend
from tokentui.store.runfile import load_run, save_run

PROMPT = "def wrap(text, width):\n    "


def run_generate(lm, params, k=8, lens_chunk=1, prompt=PROMPT, cancel=None, lens_precision="float32"):
    s = HFBackend(lm, lens_chunk=lens_chunk, lens_precision=lens_precision)
    run, events = generate_run(s, prompt, params, k=k, cancel=cancel)
    return s, run, events


def steps_of(events, branch_id=0):
    """Full-precision steps from the events, with lens values filled in from LensEvents."""
    steps = {e.step.position: e.step for e in events if isinstance(e, StepEvent) and e.branch_id == branch_id}
    layers = {
        p: e.step.layer_entropy.copy()
        for p, e in ((e.step.position, e) for e in events if isinstance(e, StepEvent) and e.branch_id == branch_id)
    }
    for e in events:
        if isinstance(e, LensEvent) and e.branch_id == branch_id:
            for i, v in enumerate(e.values["layer_entropy"]):
                layers[e.start_position + i] = v
    return [steps[p] for p in sorted(steps)], [layers[p] for p in sorted(layers)]


@pytest.mark.parametrize("family", [*FAMILIES, REAL])
def test_greedy_matches_generate_and_stats_match_log_softmax(loaded, family):
    lm = loaded(family)
    n = 12
    _, run, events = run_generate(lm, SamplingParams(max_new_tokens=n), k=8)
    ids = torch.tensor([lm.tokenizer(PROMPT)["input_ids"]])
    with torch.inference_mode():
        ref = lm.model.generate(
            ids, max_new_tokens=n, do_sample=False, output_logits=True, return_dict_in_generate=True, pad_token_id=0
        )
    ref_new = ref.sequences[0, ids.shape[1] :].tolist()
    steps, _ = steps_of(events)
    assert [s.token_id for s in steps] == ref_new
    assert run.sequence(0).tolist() == ref.sequences[0].tolist()
    # 1e-5, and relative to the value too: the prompt's logits come from a product over all its
    # positions where generate() computes the last one alone, float32 sums in another order (a
    # few ulps of the real model's logits of ~20, seen as 1.2e-5 on a log-probability of -3.7)
    tol = dict(abs=1e-5, rel=1e-5)
    for step, logits in zip(steps, ref.logits):
        logp = torch.log_softmax(logits[0].float(), -1)
        lp = logp[step.token_id].item()
        assert step.logprob == pytest.approx(lp, **tol)
        assert step.prob == pytest.approx(float(np.exp(lp)), **tol)
        assert step.rank == int((logp > logp[step.token_id]).sum()) + 1
        assert step.entropy == pytest.approx(float(-(logp.exp() * logp).sum()), **tol)
        top = logp.topk(8)
        assert step.topk_ids.tolist() == top.indices.tolist()
        np.testing.assert_allclose(step.topk_logprobs, top.values.numpy(), atol=tol["abs"], rtol=tol["rel"])
    assert isinstance(events[-1], Finished) and events[-1].new_tokens == n


@pytest.mark.parametrize("family", [*FAMILIES, REAL])
@pytest.mark.parametrize("chunk", [1, 5])
def test_lens_matches_per_layer_reference(loaded, family, chunk):
    lm = loaded(family)
    _, run, events = run_generate(lm, SamplingParams(max_new_tokens=9), lens_chunk=chunk)
    steps, layers = steps_of(events)
    seq = torch.tensor([run.sequence(0).tolist()])
    parts = lm.lens
    with torch.inference_mode():
        out = lm.model(seq, output_hidden_states=True)
        hs = out.hidden_states
        for step, lay in zip(steps, layers):
            p = step.position - 1  # the input position whose output predicts this token
            assert len(lay) == lm.n_layers
            for layer in range(1, lm.n_layers):
                h = parts.norm(hs[layer][0, p])
                logits = torch.nn.functional.linear(h, parts.weight, parts.bias).float()
                logp = torch.log_softmax(logits, -1)
                assert lay[layer - 1] == pytest.approx(float(-(logp.exp() * logp).sum()), abs=1e-4)
            final = torch.log_softmax(out.logits[0, p].float(), -1)
            assert lay[-1] == step.entropy
            assert step.entropy == pytest.approx(float(-(final.exp() * final).sum()), abs=1e-4)
    # and the run holds them too (float16 storage)
    stored = run.column(0, "layer_entropy")[run.branches[0].fork_position :]
    np.testing.assert_allclose(stored.astype(np.float32), np.array(layers), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma"])
def test_branch_with_cache_reuse_equals_recompute(loaded, family):
    lm = loaded(family)
    params = SamplingParams(max_new_tokens=10)
    s, run, _ = run_generate(lm, params, k=6)
    pos = run.branches[0].fork_position + 4
    alt = int(run.step(0, pos).topk_ids[2])
    reused = list(s.fork(run, 0, pos, [alt], params))
    assert s.caches.best(run.sequence(0), 10)[1] > 0  # the parent's cache was kept
    # recompute: a fresh session with no caches, same branch
    fresh = HFBackend(lm, lens_chunk=1, lens_precision="float32")
    fresh_run, _ = generate_run(fresh, PROMPT, params, k=6)
    recomputed = list(fresh.fork(fresh_run, 0, pos, [alt], params))
    a, la = steps_of(reused, 1)
    b, lb = steps_of(recomputed, 1)
    assert [x.token_id for x in a] == [x.token_id for x in b]
    assert a[0].token_id == alt and a[0].kind == "forced" and run.branches[1].n_forced == 1
    for x, y in zip(a, b):
        assert x.logprob == pytest.approx(y.logprob, abs=1e-5)
        assert x.entropy == pytest.approx(y.entropy, abs=1e-5)
        np.testing.assert_allclose(x.topk_logprobs, y.topk_logprobs, atol=1e-5)
    np.testing.assert_allclose(np.array(la), np.array(lb), atol=1e-4)
    # and both equal generate() from the forked prefix
    prefix = torch.tensor([run.sequence(1)[: pos + 1].tolist()])
    with torch.inference_mode():
        ref = lm.model.generate(prefix, max_new_tokens=params.max_new_tokens, do_sample=False, pad_token_id=0)
    assert run.sequence(1).tolist() == ref[0].tolist()
    # the parent's cache was not disturbed: continuing the parent equals a fresh computation
    list(s.continue_branch(run, 0, SamplingParams(max_new_tokens=4)))
    with torch.inference_mode():
        ref0 = lm.model.generate(
            torch.tensor([run.sequence(0)[:-4].tolist()]), max_new_tokens=4, do_sample=False, pad_token_id=0
        )
    assert run.sequence(0).tolist() == ref0[0].tolist()


def test_branch_from_a_branch_and_inside_the_prompt(loaded):
    lm = loaded("qwen2")
    params = SamplingParams(max_new_tokens=6)
    s, run, _ = run_generate(lm, params)
    f = run.branches[0].fork_position
    list(s.fork(run, 0, f + 2, [int(run.step(0, f + 2).topk_ids[1])], params))
    list(s.fork(run, 1, f + 4, [int(run.step(1, f + 4).topk_ids[3])], params))
    list(s.fork(run, 0, 2, [5, 6], params))  # forks inside the prompt, forcing two tokens
    run.validate()
    assert run.branches[2].parent == 1 and run.branches[3].n_forced == 2
    for b in run.branches[1:]:
        seq = torch.tensor([run.sequence(b.id)[: b.fork_position + b.n_forced].tolist()])
        with torch.inference_mode():
            ref = lm.model.generate(seq, max_new_tokens=params.max_new_tokens, do_sample=False, pad_token_id=0)
        assert run.sequence(b.id).tolist() == ref[0].tolist()


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox"])
def test_scoring_equals_generation_stats(loaded, family):
    lm = loaded(family)
    s, run, events = run_generate(lm, SamplingParams(max_new_tokens=10), k=8)
    steps, layers = steps_of(events)
    scored = s.score_ids(run.sequence(0).tolist(), k=8)
    assert scored.meta.mode == "score" and len(scored.prompt) == len(run.sequence(0))
    for st, lay in zip(steps, layers):
        sc = scored.step(0, st.position)
        assert sc.token_id == st.token_id and sc.rank == st.rank
        assert sc.logprob == pytest.approx(st.logprob, abs=1e-4)
        assert sc.entropy == pytest.approx(st.entropy, abs=1e-4)
        assert sc.topk_ids.tolist() == st.topk_ids.tolist()
        np.testing.assert_allclose(sc.layer_entropy, lay, atol=5e-3)  # float16 storage
    # the prompt part of a generated run is the same teacher-forced computation
    np.testing.assert_allclose(
        run.prompt.col("logprob")[1:], scored.prompt.col("logprob")[1 : len(run.prompt)], atol=1e-5
    )


def test_score_text_and_sampled_reproducibility(loaded):
    lm = loaded("llama")
    s = HFBackend(lm)
    run = score_text(s, "import os\nprint(os.getcwd())\n", k=5)
    assert len(run.prompt) == len(lm.tokenizer("import os\nprint(os.getcwd())\n")["input_ids"])
    assert np.isnan(run.prompt.col("logprob")[0]) and np.isfinite(run.prompt.col("logprob")[1:]).all()
    p = SamplingParams(temperature=0.9, top_k=50, top_p=0.9, seed=7, max_new_tokens=15)
    a = run_generate(lm, p)[1].sequence(0).tolist()
    b = run_generate(lm, p)[1].sequence(0).tolist()
    c = run_generate(lm, SamplingParams(temperature=0.9, top_k=50, top_p=0.9, seed=8, max_new_tokens=15))[1]
    assert a == b and a != c.sequence(0).tolist()
    # sampler probabilities differ from raw ones and are recorded
    gen = c.branches[0].steps
    assert np.isfinite(gen.col("sampler_logprob")).all()
    assert not np.allclose(gen.col("sampler_logprob"), gen.col("logprob"))


def test_sampler_filters_hold(loaded):
    lm = loaded("gpt2")
    _, run, _ = run_generate(lm, SamplingParams(temperature=1.0, top_k=3, seed=1, max_new_tokens=20))
    assert (run.branches[0].steps.col("rank") <= 3).all()


def test_cancel_keeps_a_consistent_partial_branch(loaded, tmp_path):

    lm = loaded("gpt2")
    s = HFBackend(lm, lens_chunk=8)
    cancel = threading.Event()
    seen = 0
    events = []
    job = jobs.Generate(s, PROMPT, GenerationSettings(SamplingParams(max_new_tokens=50), k=4), cancel)
    for ev in job:
        events.append(ev)
        if isinstance(ev, StepEvent):
            seen += 1
            if seen == 3:
                cancel.set()
    assert isinstance(events[-1], Finished) and events[-1].status == "cancelled"
    run = job.run
    b = run.branches[0]
    assert len(b.steps) == 3 and b.status == "cancelled"
    assert np.isfinite(b.steps.col("layer_entropy")).all()  # the lens was flushed
    run.validate()
    loaded_run = load_run(save_run(run, tmp_path / "r.tokentui"))
    assert loaded_run.sequence(0).tolist() == run.sequence(0).tolist()


def _utf8(b: bytes) -> bool:
    try:
        return bool(b.decode().strip())
    except UnicodeDecodeError:
        return False


def test_stop_strings_eos_and_forced_prefix(loaded):
    lm = loaded("gpt2")
    _, free, _ = run_generate(lm, SamplingParams(max_new_tokens=12))
    generated = free.sequence(0)[free.branches[0].fork_position :].tolist()
    # the stop text: a whole token from the middle of the free run (one that is valid UTF-8 alone)
    at, stop = next((i, b.decode()) for i, b in enumerate(map(free.tokens.bytes_of, generated)) if i >= 3 and _utf8(b))
    _, run, _ = run_generate(lm, SamplingParams(max_new_tokens=12, stop=[stop]))
    b = run.branches[0]
    assert b.status == "stop" and len(b.steps) <= at + 1
    assert stop.encode() in run.tokens.text(run.sequence(0)[b.fork_position :].tolist())
    s = HFBackend(lm)
    forced = lm.tokenizer("return", add_special_tokens=False)["input_ids"]
    run, _ = generate_run(s, PROMPT, SamplingParams(max_new_tokens=3), k=4, forced="return")
    b = run.branches[0]
    assert b.n_forced == len(forced) and len(b.steps) == len(forced) + 3
    assert run.sequence(0)[b.fork_position : b.fork_position + len(forced)].tolist() == forced


def test_lens_off_records_only_the_model_entropy(loaded):
    lm = loaded("gpt2")
    _, on, _ = run_generate(lm, SamplingParams(max_new_tokens=5), lens_chunk=1)
    _, off, _ = run_generate(lm, SamplingParams(max_new_tokens=5), lens_chunk=0)
    assert off.sequence(0).tolist() == on.sequence(0).tolist()
    lay = off.column(0, "layer_entropy")[1:]
    assert np.isnan(lay[:, :-1]).all()
    np.testing.assert_array_equal(lay[:, -1], on.column(0, "layer_entropy")[1:, -1])


def test_bfloat16_lens_is_close_to_float32_and_recorded(loaded):
    from tokentui.engine.errors import EngineError
    from tokentui.engine.hf.arch import cpu_has_fast_bf16

    lm = loaded("llama")
    params = SamplingParams(max_new_tokens=8)
    _, exact, ev32 = run_generate(lm, params, lens_chunk=1)
    s16, half, ev16 = run_generate(lm, params, lens_chunk=1, lens_precision="bfloat16")
    assert half.sequence(0).tolist() == exact.sequence(0).tolist()
    (_, l32), (_, l16) = steps_of(ev32), steps_of(ev16)
    l32, l16 = np.array(l32), np.array(l16)
    np.testing.assert_array_equal(l16[:, -1], l32[:, -1])  # the model's own distribution is untouched
    np.testing.assert_allclose(l16[:, :-1], l32[:, :-1], atol=0.05)
    assert not np.array_equal(l16[:, :-1], l32[:, :-1])  # it really ran in bfloat16
    assert "bfloat16" in half.meta.lens and "float32" in exact.meta.lens
    auto = HFBackend(lm).lens.precision
    assert auto == ("bfloat16" if cpu_has_fast_bf16() else "float32")
    with pytest.raises(EngineError, match="lens precision"):
        HFBackend(lm, lens_precision="int8")
    with pytest.raises(EngineError, match="lens precision"):
        HFBackend(lm, lens_chunk=0, lens_precision="int8")


def test_a_lens_in_another_precision_copies_the_unembedding_only_when_the_lens_is_on(loaded):
    """A bf16 model lensed in float32 needs a float32 copy of the unembedding (half a gigabyte for
    a 150k vocabulary): a backend with the lens off must not make it."""
    lm = loaded("llama")
    weight = lm.lens.weight
    assert weight.dtype == torch.float32
    on = HFBackend(lm, lens_chunk=32, lens_precision="bfloat16")
    assert on.lens.weight.dtype == torch.bfloat16 and on.lens.weight.data_ptr() != weight.data_ptr()
    off = HFBackend(lm, lens_chunk=0, lens_precision="bfloat16")
    assert off.lens.weight.data_ptr() == weight.data_ptr()


@pytest.mark.parametrize("softcap", [None, 30.0])
def test_lens_entropy_in_vocabulary_slices_equals_the_full_softmax(softcap):
    """Blocks of rows and vocabulary slices (forced tiny here) give the full-softmax entropy."""
    from tokentui.engine.hf.arch import LensParts
    from tokentui.engine.hf.measures import lens_values

    gen = torch.Generator().manual_seed(0)
    vocab, d = 5000, 16
    parts = LensParts(
        norm=torch.nn.LayerNorm(d),
        weight=torch.randn(vocab, d, generator=gen) * 6,
        bias=torch.randn(vocab, generator=gen),
        softcap=softcap,
        n_layers=4,
    )
    hidden = torch.randn(37, d, generator=gen)
    with torch.inference_mode():
        logp = torch.log_softmax(parts.project(parts.normed(hidden)), -1)  # the whole vocabulary at once
        want = -(logp.exp() * logp).sum(-1)
        got = lens_values(parts, hidden, block_elements=3000, max_rows=10)["layer_entropy"]  # 4 row blocks × 10 slices
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
    if softcap is None:
        assert want.min() < 1.0 < want.max()  # peaked and flat rows alike


@pytest.fixture
def margin_measure():
    """A per-token measure added the way a contributor would: one declared, registered function."""
    from tokentui.core.measures import MEASURES, Measure
    from tokentui.engine.hf.measures import TOKEN_FNS, token_measure

    @token_measure(Measure("margin", "nats", "float32", (), "top-1 minus top-2 log-probability", required=False))
    def _margin(x):
        top2 = x.logp.topk(2, dim=-1).values
        return {"margin": top2[:, 0] - top2[:, 1]}

    yield "margin"
    TOKEN_FNS.pop()
    del MEASURES["margin"]


def test_a_new_measure_is_one_registered_function(loaded, margin_measure, tmp_path):
    lm = loaded("llama")
    s, run, events = run_generate(lm, SamplingParams(max_new_tokens=6), k=4)
    assert "margin" in run.layout.names
    ids = torch.tensor([lm.tokenizer(PROMPT)["input_ids"]])
    with torch.inference_mode():
        ref = lm.model.generate(
            ids, max_new_tokens=6, do_sample=False, output_logits=True, return_dict_in_generate=True, pad_token_id=0
        )
    steps, _ = steps_of(events)
    for step, logits in zip(steps, ref.logits):
        top2 = torch.log_softmax(logits[0].float(), -1).topk(2).values
        assert step.get("margin") == pytest.approx(float(top2[0] - top2[1]), abs=1e-5)
    back = load_run(save_run(run, tmp_path / "m.tokentui"))  # stored and read like any column
    np.testing.assert_array_equal(back.column(0, "margin"), run.column(0, "margin"))
    scored = s.score_ids(run.sequence(0).tolist(), k=4)  # teacher forcing computes it too
    np.testing.assert_allclose(scored.column(0, "margin")[-6:], run.column(0, "margin")[-6:], atol=1e-4)


def test_a_token_the_model_rules_out_has_a_finite_floor_and_entropy_stays_finite():
    """Masked logits (−∞) must not reach a run file as −∞ or NaN: run files refuse infinities."""
    from tokentui.engine.hf.measures import LOGPROB_FLOOR, TokenInputs, token_values

    logits = torch.tensor([[2.0, 1.0, float("-inf"), 0.5]])
    logp = torch.log_softmax(logits, -1)
    x = TokenInputs(logp, torch.tensor([2]), torch.tensor([float("nan")]), k=4)
    v = token_values(x)
    assert v["logprob"].item() == LOGPROB_FLOOR and v["rank"].item() == 4
    p = logp.exp()[0, [0, 1, 3]]
    assert v["entropy"].item() == pytest.approx(float(-(p * p.log()).sum()), abs=1e-6)
    assert torch.isfinite(v["topk_logprobs"]).all() and v["topk_logprobs"][0, -1].item() == LOGPROB_FLOOR


def test_teacher_forcing_in_blocks_of_positions_equals_one_block(loaded, monkeypatch):
    """The prompt's log-probs are scored a few positions at a time (memory); the records are the same."""
    import tokentui.engine.hf.backend as hb

    lm = loaded("qwen2")
    text = "import os\nprint(os.getcwd())\n" * 3
    whole = score_text(HFBackend(lm), text)
    monkeypatch.setattr(hb, "TEACHER_FORCED_ELEMENTS", lm.vocab_size * 4)  # 4 positions per block
    blocks = score_text(HFBackend(lm), text)
    for name in whole.layout.names:
        np.testing.assert_array_equal(whole.prompt.col(name), blocks.prompt.col(name))


def test_noting_tokens_adds_each_new_id_once_with_its_bytes(loaded):
    """The run's token table after noting several arrays (a bitmap over the vocabulary finds their
    distinct ids) equals a plain per-id reference: every id ≥ 0 with the tokenizer's bytes, an id
    beyond the vocabulary as `<id N>`, padding (−1) left out, ids already there not added again."""
    lm = loaded("gpt2")
    s = HFBackend(lm, lens_chunk=0)
    run = s.new_run("x", GenerationSettings(k=4), None)
    rng = np.random.default_rng(3)
    first = rng.integers(0, lm.vocab_size, 50)
    added = s._note_tokens(run, first)
    assert added == {int(i): lm.vocab_bytes[int(i)] for i in set(first.tolist())}
    beyond = lm.vocab_size + 5
    more = [rng.integers(0, lm.vocab_size, (30, 4)), np.array([-1, beyond, int(first[0])]), [int(first[1])]]
    added = s._note_tokens(run, *more)
    ids = {int(i) for a in more for i in np.ravel(a)} - {-1}
    expected_new = ids - set(first.tolist())
    assert set(added) == expected_new
    assert added[beyond] == f"<id {beyond}>".encode()
    assert len(run.tokens) == len(ids | set(first.tolist()))
    for i in ids - {beyond}:
        assert run.tokens.bytes_of(i) == lm.vocab_bytes[i]
    assert s._note_tokens(run) == {}
    # a decode step's few ids (the set path): the same rule
    fresh = next(i for i in range(lm.vocab_size) if i not in run.tokens)
    assert s._note_tokens(run, [fresh, -1, beyond + 1, fresh]) == {
        fresh: lm.vocab_bytes[fresh],
        beyond + 1: f"<id {beyond + 1}>".encode(),
    }


def _prompt_lens_reference(lm, ids: list[int]) -> np.ndarray:
    """[n, L-1] entropies of the per-layer lens at the prompt's positions 0…n-1 (each predicts
    the next token), computed layer by layer over the full vocabulary."""
    parts = lm.lens
    with torch.inference_mode():
        hs = lm.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        rows = []
        for layer in range(1, lm.n_layers):
            logp = torch.log_softmax(
                torch.nn.functional.linear(parts.norm(hs[layer][0]), parts.weight, parts.bias).float(), -1
            )
            rows.append(-(logp.exp() * logp).sum(-1))
    return torch.stack(rows, dim=1)[: len(ids) - 1].numpy()


def test_a_long_prompts_lens_goes_in_chunks_with_progress_and_stops_on_cancel(loaded, monkeypatch):
    """The prompt's logit lens (minutes for a long prompt on a CPU) reports progress chunk by chunk
    before the run starts, with the same values as a per-layer reference; a cancel stops it, the
    positions it did not reach are unknown, and the branch ends cancelled."""
    import math

    import tokentui.engine.hf.backend as hb
    from tokentui.engine.events import Progress, RunStarted

    monkeypatch.setattr(hb, "PROMPT_LENS_POSITIONS", 8)
    lm = loaded("gpt2")
    prompt = "def wrap(text, width):\n    return [text[i : i + width] for i in range(0, len(text), width)]\n"
    ids = lm.tokenizer(prompt)["input_ids"]
    n = len(ids) - 1
    assert n > 3 * 8
    ref = _prompt_lens_reference(lm, ids)

    s = HFBackend(lm, lens_chunk=1)
    run, events = generate_run(s, prompt, SamplingParams(max_new_tokens=2))
    started = next(i for i, e in enumerate(events) if isinstance(e, RunStarted))
    fractions = [e.fraction for e in events[:started] if isinstance(e, Progress) and e.fraction is not None]
    assert len(fractions) == math.ceil(n / 8) and fractions == sorted(fractions) and fractions[-1] == 1.0
    lens = run.prompt.col("layer_entropy")[1:, :-1].astype(np.float32)  # (position 0 predicts nothing)
    np.testing.assert_allclose(lens, ref, rtol=2e-3, atol=2e-3)

    cancel = threading.Event()
    job = jobs.Generate(s, prompt, GenerationSettings(SamplingParams(max_new_tokens=2), 8), cancel)
    for e in job:
        if isinstance(e, Progress) and e.fraction is not None:
            cancel.set()  # after the first chunk
    lens = job.run.prompt.col("layer_entropy")[1:, :-1].astype(np.float32)
    np.testing.assert_allclose(lens[:8], ref[:8], rtol=2e-3, atol=2e-3)
    assert np.isnan(lens[8:]).all()
    assert job.run.branches[0].status == "cancelled" and len(job.run.branches[0].steps) == 0


@pytest.mark.parametrize("wanted, layers", [(64, 29), (64, 23), (64, 11), (8, 3), (2000, 29), (1, 500)])
def test_prompt_lens_chunks_are_whole_blocks_of_the_lens(wanted, layers):
    """A chunk of the prompt's lens fills whole `lens_values` blocks (LENS_MAX_ROWS rows of
    positions × layers): 64 positions of 24 layers used to go as blocks of 42 and 22."""
    from tokentui.engine.hf.measures import LENS_MAX_ROWS, lens_positions

    step = lens_positions(wanted, layers)
    per_block = max(1, LENS_MAX_ROWS // layers)
    assert 1 <= step <= max(wanted, 1)
    assert step == wanted if wanted <= per_block else step % per_block == 0


def test_a_generation_config_s_processors_are_named_at_loading_and_not_applied(model_dirs, tmp_path):
    """A checkpoint whose generation config asks generate() for logit processors (Qwen2.5-Instruct's
    repetition_penalty, BART's forced_eos_token_id) loads with one line naming them; greedy decoding
    stays the argmax of the model's own distribution: generate()'s tokens with those processors off."""
    import shutil

    from transformers import GenerationConfig

    from tokentui.engine.hf.loading import load_model

    folder = tmp_path / "penalised"
    shutil.copytree(model_dirs["llama"], folder)
    GenerationConfig(repetition_penalty=1.8, no_repeat_ngram_size=1, pad_token_id=0).save_pretrained(folder)
    said: list[str] = []
    lm = load_model(str(folder), progress=said.append)
    note = [m for m in said if "generation config" in m]
    assert len(note) == 1 and "repetition_penalty=1.8" in note[0] and "no_repeat_ngram_size=1" in note[0]
    n = 16
    _, run, events = run_generate(lm, SamplingParams(max_new_tokens=n))
    ids = torch.tensor([lm.tokenizer(PROMPT)["input_ids"]])
    with torch.inference_mode():
        plain = lm.model.generate(
            ids, max_new_tokens=n, do_sample=False, repetition_penalty=1.0, no_repeat_ngram_size=0
        )
        processed = lm.model.generate(ids, max_new_tokens=n, do_sample=False)
    assert run.sequence(0).tolist() == plain[0].tolist()
    assert processed[0].tolist() != plain[0].tolist()  # (the processors are real: they change the tokens)


def test_a_plain_generation_config_says_nothing(loaded, model_dirs):
    from tokentui.engine.hf.generation_config import unapplied_processors

    assert unapplied_processors(loaded("gpt2").model.generation_config) == []


def test_the_rate_counts_the_tokens_whose_forward_was_timed(loaded):
    """A generation's first token comes from the prompt's forward, before the decode loop's clock:
    counted in the rate it made `generate -n 1` print 720 tokens/s (1 token over no forward). The
    rate counts the generated tokens the clock saw made; none: no rate."""
    lm = loaded("gpt2")
    s, run, events = run_generate(lm, SamplingParams(max_new_tokens=5), lens_chunk=0)
    [done] = [e for e in events if isinstance(e, Finished)]
    assert done.new_tokens == 5 and done.timed_tokens == 4
    assert done.tokens_per_second == pytest.approx(4 / done.seconds)
    _, _, events = run_generate(lm, SamplingParams(max_new_tokens=1), lens_chunk=0)
    [done] = [e for e in events if isinstance(e, Finished)]
    assert done.new_tokens == 1 and done.timed_tokens == 0 and done.tokens_per_second == 0.0
    # a fork: every token it generates came from a forward of its own (the first takes the prefix's)
    forked = [
        e for e in s.fork(run, 0, len(run.prompt) + 2, [], SamplingParams(max_new_tokens=3)) if isinstance(e, Finished)
    ]
    assert forked[0].new_tokens == forked[0].timed_tokens == 3
