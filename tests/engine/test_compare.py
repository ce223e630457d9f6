"""Two models, token by token (`engine/hf/compare.py`): every number against an independent
computation in the test — a plain forward of each model, `log_softmax` over the full vocabulary,
KL by torch's `kl_div`, Jensen–Shannon in float64 numpy, ranks by sorting — on tiny models of two
families, each compared with a copy of itself whose weights were perturbed."""

from __future__ import annotations

import copy
import math
import shutil

import numpy as np
import pytest
import torch

from tests.factories import other_tokenizer_model_dir, perturbed_model_dir
from tokentui.core.comparison import run_summary
from tokentui.engine.backend import ModelSpec
from tokentui.engine.errors import EngineError, ModelLoadError
from tokentui.engine.hf import compare
from tokentui.engine.hf.backend import HFBackend
from tokentui.engine.hf.compare import ModelPair, batches, check_same_ids, load_pair
from tokentui.engine.hf.loading import load_model

TEXT = "def f(x):\n    return x * 2  # héllo\n"
K = 5
FAMILIES = ("gpt2", "llama")


@pytest.fixture(scope="module")
def b_dirs(model_dirs, tmp_path_factory):
    return {f: perturbed_model_dir(model_dirs[f], tmp_path_factory.mktemp(f"b-{f}")) for f in FAMILIES}


@pytest.fixture(scope="module")
def loaded_b(b_dirs):
    cache: dict = {}

    def get(family: str):
        if family not in cache:
            cache[family] = load_model(str(b_dirs[family]))
        return cache[family]

    return get


def interpreted_kernel():
    """The fused kernel's module, run through Triton's interpreter (the suite sets TRITON_INTERPRET);
    skipped without Triton, or with one whose interpreter predates numpy 2's scalar rules (before
    3.9 it fails on any loop with a runtime bound; the compiled kernel is not affected)."""
    from packaging.version import Version

    triton = pytest.importorskip("triton", reason="Triton is not installed (the fused kernel's path)")
    if Version(triton.__version__) < Version("3.9"):
        pytest.skip(f"Triton {triton.__version__}'s interpreter cannot run the kernel here (3.9 or later can)")
    from tokentui.engine.hf import pair_kernel

    return pair_kernel


@pytest.fixture(params=["torch", "fused"])
def stats(request, monkeypatch) -> str:
    """Each comparison test runs twice: the registered functions in PyTorch, and the fused Triton
    kernel (`engine/hf/pair_kernel.py`, the GPU path) through Triton's interpreter on this CPU."""
    if request.param == "torch":
        monkeypatch.setenv("TOKENTUI_FUSED_STATS", "0")
        assert compare.fused_stats(torch.device("cpu")) is None
    else:
        interpreted_kernel()
        monkeypatch.setenv("TOKENTUI_FUSED_STATS", "1")
        monkeypatch.setattr(compare, "_fused_failed", [])
        assert compare.fused_stats(torch.device("cpu")) is not None
    return request.param


def pair_of(lm_a, lm_b) -> ModelPair:
    return ModelPair(HFBackend(lm_a, lens_chunk=0), HFBackend(lm_b, lens_chunk=0), ModelSpec(lm_b.source))


def reference(lm, ids: list[int]) -> torch.Tensor:
    """[n − 1, V] float32 log-probs of positions 1…: a plain forward and log_softmax, nothing else."""
    device = next(lm.model.parameters()).device
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids], device=device)).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).cpu()


def ranks(logp: torch.Tensor, targets: list[int]) -> np.ndarray:
    """1 + the place of each target when the vocabulary is sorted by probability (stable sort)."""
    order = np.argsort(-logp.numpy(), axis=-1, kind="stable")
    return np.array([int(np.flatnonzero(row == t)[0]) + 1 for row, t in zip(order, targets)])


@pytest.mark.parametrize("family", FAMILIES)
def test_every_number_equals_a_full_vocabulary_reference(loaded, loaded_b, family, stats):
    lm_a, lm_b = loaded(family), loaded_b(family)
    pair = pair_of(lm_a, lm_b)
    item = pair.item(TEXT)
    [run] = pair.compare([item], k=K)
    ids = item.ids
    targets = ids[1:]
    la, lb = reference(lm_a, ids), reference(lm_b, ids)
    t = torch.tensor(targets)[:, None]
    col = lambda name: run.prompt.col(name)[1:]  # noqa: E731 - positions 1…
    assert run.meta.mode == "compare" and run.prompt.col("token_id").tolist() == ids
    np.testing.assert_allclose(col("logprob"), la.gather(1, t)[:, 0], atol=1e-5)
    np.testing.assert_allclose(col("logprob_b"), lb.gather(1, t)[:, 0], atol=1e-5)
    np.testing.assert_array_equal(col("rank"), ranks(la, targets))
    np.testing.assert_array_equal(col("rank_b"), ranks(lb, targets))
    np.testing.assert_allclose(col("entropy_b"), -(lb.exp() * lb).sum(-1), atol=1e-5)
    np.testing.assert_array_equal(col("topk_ids"), la.topk(K, -1).indices)
    np.testing.assert_array_equal(col("topk_ids_b"), lb.topk(K, -1).indices)
    kl = torch.nn.functional.kl_div  # kl_div(log q, log p, log_target) = p (log p − log q): KL(p‖q)
    kl_ab = kl(lb, la, reduction="none", log_target=True).sum(-1)
    kl_ba = kl(la, lb, reduction="none", log_target=True).sum(-1)
    np.testing.assert_allclose(col("kl_ab"), kl_ab, atol=1e-5)
    np.testing.assert_allclose(col("kl_ba"), kl_ba, atol=1e-5)
    pa, pb = la.double().exp().numpy(), lb.double().exp().numpy()
    m = (pa + pb) / 2
    js = 0.5 * (pa * np.log(pa / m)).sum(-1) + 0.5 * (pb * np.log(pb / m)).sum(-1)
    np.testing.assert_allclose(col("js"), js, atol=1e-5)
    assert (kl_ab > 1e-3).all() and (js > 1e-4).all()  # the perturbed model really differs
    # the per-text numbers
    s = run_summary(run)
    lpa, lpb = la.gather(1, t)[:, 0].double(), lb.gather(1, t)[:, 0].double()
    assert s["tokens"] == len(targets)
    assert s["mean_loss_a"] == pytest.approx(float(-lpa.mean()), abs=1e-5)
    assert s["mean_loss_b"] == pytest.approx(float(-lpb.mean()), abs=1e-5)
    assert s["perplexity_a"] == pytest.approx(math.exp(float(-lpa.mean())), rel=1e-5)
    assert s["perplexity_b"] == pytest.approx(math.exp(float(-lpb.mean())), rel=1e-5)
    assert s["mean_kl_ab"] == pytest.approx(float(kl_ab.double().mean()), abs=1e-5)
    assert s["mean_kl_ba"] == pytest.approx(float(kl_ba.double().mean()), abs=1e-5)
    assert s["sample_kl_estimate"] == pytest.approx(float((lpa - lpb).mean()), abs=1e-5)
    assert s["sample_kl_error"] == pytest.approx(float((lpa - lpb).mean() - kl_ab.double().mean()), abs=1e-5)
    # the run records where model B came from, and validates
    assert run.meta.model_b["model"] == lm_b.model_name and run.meta.model_b["dtype"] == "float32"
    run.validate()


@pytest.mark.parametrize("family", FAMILIES)
def test_a_model_compared_with_itself_diverges_nowhere(loaded, family, stats):
    lm = loaded(family)
    [run] = pair_of(lm, lm).compare([pair_of(lm, lm).item(TEXT)], k=K)
    assert (run.prompt.col("kl_ab")[1:] == 0).all() and (run.prompt.col("kl_ba")[1:] == 0).all()
    assert (run.prompt.col("js")[1:] == 0).all()
    np.testing.assert_array_equal(run.prompt.col("logprob_b"), run.prompt.col("logprob"))
    np.testing.assert_array_equal(run.prompt.col("rank_b"), run.prompt.col("rank"))
    s = run_summary(run)
    assert s["mean_kl_ab"] == 0 and s["sample_kl_estimate"] == 0 and s["mean_loss_a"] == s["mean_loss_b"]


@pytest.fixture(scope="module")
def other_tokenizer_model(tmp_path_factory):
    return load_model(str(other_tokenizer_model_dir(tmp_path_factory.mktemp("other-tokenizer"))))


def test_models_with_different_tokenizers_are_refused(loaded, other_tokenizer_model):
    lm_a = loaded("gpt2")
    assert lm_a.vocab_size == other_tokenizer_model.vocab_size  # the same size: only the ids' text differs
    with pytest.raises(EngineError, match="tokenizers differ") as info:
        pair_of(lm_a, other_tokenizer_model)
    assert "\n" not in str(info.value) and "compare needs two models with one tokenizer" in str(info.value)
    padded = copy.copy(lm_a)  # the same tokenizer, an output layer one id larger
    padded.vocab_size += 1
    with pytest.raises(EngineError, match="vocabularies differ"):
        pair_of(lm_a, padded)


def test_a_text_tokenized_differently_is_refused():
    check_same_ids([1, 2, 3], [1, 2, 3], "a", "b")
    with pytest.raises(EngineError, match="first at position 1"):
        check_same_ids([1, 2, 3], [1, 5, 3], "a", "b")
    with pytest.raises(EngineError, match="first at position 2"):
        check_same_ids([1, 2], [1, 2, 3], "a", "b")


def test_batches_and_blocks_give_the_one_by_one_numbers(loaded, loaded_b, monkeypatch, stats):
    """Several texts in one padded forward, and the statistics a few positions at a time, give what
    one text per forward in one block gives."""
    lm_a, lm_b = loaded("llama"), loaded_b("llama")
    pair = pair_of(lm_a, lm_b)
    texts = [TEXT, "import os\n", TEXT * 2, "x = [1, 2, 3]\nprint(x)\n"]
    items = [pair.item(t) for t in texts]
    monkeypatch.setattr(compare, "BATCH_TOKENS", 1)
    alone = pair.compare(items, k=K)
    monkeypatch.setattr(compare, "BATCH_TOKENS", 10_000)
    assert batches([len(it.ids) for it in items]) == [[2, 0, 3, 1]]  # one forward, longest first
    monkeypatch.setattr(compare, "BLOCK_ELEMENTS", lm_a.vocab_size * 3)  # 3 positions per block
    monkeypatch.setattr(compare, "GPU_BLOCK_ELEMENTS", lm_a.vocab_size * 3)
    monkeypatch.setattr(compare, "FUSED_BLOCK_ELEMENTS", lm_a.vocab_size * 3)
    together = pair.compare(items, k=K)
    for x, y in zip(alone, together):
        assert x.prompt.col("token_id").tolist() == y.prompt.col("token_id").tolist()
        for name in ("logprob", "logprob_b", "kl_ab", "kl_ba", "js", "entropy_b"):
            np.testing.assert_allclose(x.prompt.col(name), y.prompt.col(name), atol=1e-5, err_msg=name)
        for name in ("rank", "rank_b"):
            np.testing.assert_array_equal(x.prompt.col(name), y.prompt.col(name))


def test_one_after_the_other_gives_the_same_numbers(loaded, b_dirs, model_dirs, stats):
    """When B does not fit beside A, A's logits wait on the host while B loads: the same result."""
    spec_a, spec_b = ModelSpec(str(model_dirs["gpt2"])), ModelSpec(str(b_dirs["gpt2"]))
    both = load_pair(spec_a, spec_b, together=True)
    [x] = both.compare([both.item(TEXT)], k=K)
    seq = load_pair(spec_a, spec_b, together=False)
    assert not seq.together and seq.a.model is not None
    [y] = seq.compare([seq.item(TEXT)], k=K)
    assert seq.together and seq.a.model is None  # A was released before B loaded
    for name in x.layout.names:
        np.testing.assert_allclose(x.prompt.col(name), y.prompt.col(name), atol=1e-6, err_msg=name)
    assert y.meta.model_b == x.meta.model_b


def test_one_after_the_other_refuses_a_b_without_a_chat_template_before_its_weights(b_dirs, model_dirs, tmp_path):
    """A chat text with B loading only after A's forwards: B's tokenizer is read first and its
    missing template refused as such (not as another tokenizer, found once its weights were in)."""
    plain = tmp_path / "plain"
    shutil.copytree(b_dirs["gpt2"], plain, ignore=shutil.ignore_patterns("chat_template.*"))
    pair = load_pair(ModelSpec(str(model_dirs["gpt2"])), ModelSpec(str(plain)), together=False, chat=True)
    with pytest.raises(ModelLoadError, match=r"has no chat template; leave out --chat$"):
        pair.compare([pair.item(TEXT, chat=True)], k=K)
    assert pair.b is None


def test_one_after_the_other_cancelled_during_a_stops_before_b_loads(b_dirs, model_dirs, monkeypatch):
    """Ctrl-C during A's last forward (B did not fit beside it): nothing can be saved, so B is not
    loaded first — the user would wait through its load for 'nothing saved'."""
    import threading

    pair = load_pair(ModelSpec(str(model_dirs["gpt2"])), ModelSpec(str(b_dirs["gpt2"])), together=False)
    cancel = threading.Event()
    logits = compare._logits

    def pressed_meanwhile(backend, texts):
        out = logits(backend, texts)
        cancel.set()
        return out

    monkeypatch.setattr(compare, "_logits", pressed_meanwhile)
    assert pair.compare([pair.item(TEXT)], k=K, cancel=cancel) == []
    assert pair.b is None and not pair.together


def test_a_one_token_text_is_refused(loaded):
    lm = loaded("gpt2")
    pair = pair_of(lm, lm)
    with pytest.raises(EngineError, match="no position to compare"):
        pair.compare([pair.item_from_ids([5])])


def test_a_token_one_model_rules_out_counts_as_impossible_not_nan(stats):
    """Masked logits (−∞: p = 0): KL(A‖B) sums over A's support only; KL(B‖A) and JS stay finite
    (the −∞ counts at LOGPROB_FLOOR); nothing is NaN. Against float64 definitions in the test."""
    g = torch.Generator().manual_seed(3)
    logits_a, logits_b = torch.randn(4, 50, generator=g), torch.randn(4, 50, generator=g)
    logits_a[:, :10] = -math.inf  # A rules out ids 0…9
    values = compare._measures(logits_a, logits_b, [0, 11, 12, 13, 5], 3, torch.device("cpu")).host()
    la, lb = torch.log_softmax(logits_a.double(), -1), torch.log_softmax(logits_b.double(), -1)
    pa, pb = la.exp(), lb.exp()
    support = pa > 0
    kl_ab = torch.where(support, pa * (la - lb), 0.0).sum(-1)
    kl_ba = (pb * (lb - la.clamp_min(-1e4))).sum(-1)
    m = (pa + pb) / 2
    js = 0.5 * torch.where(support, pa * (la - m.log()), 0.0).sum(-1) + 0.5 * (pb * (lb - m.log())).sum(-1)
    np.testing.assert_allclose(values["kl_ab"], kl_ab, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(values["kl_ba"], kl_ba, rtol=1e-5)
    np.testing.assert_allclose(values["js"], js, atol=1e-5)
    assert values["kl_ba"][-1] > 100 and np.isfinite(values["kl_ba"]).all()  # B puts mass where A has none
    assert values["rank"][-1] == 41 and values["logprob"][-1] == -1e4  # id 5: ruled out by A, ranked after A's 40


def test_a_compared_run_grows_a_branch_of_model_a_alone(loaded, tmp_path):
    """Replayed with model A, a comparison run branches like any run: the new positions hold A's
    values and no B values (unknown), and the run saves, validates and reloads."""
    from tokentui.core.params import SamplingParams
    from tokentui.store.runfile import load_run, save_run

    lm = loaded("gpt2")
    pair = pair_of(lm, lm)
    [run] = pair.compare([pair.item(TEXT)], k=K)
    list(HFBackend(lm).fork(run, 0, 3, [5], SamplingParams(max_new_tokens=2)))
    b = run.branches[-1]
    assert len(b.steps) == 3 and np.isfinite(b.steps.col("logprob")).all()
    assert (b.steps.col("rank_b") == 0).all() and np.isnan(b.steps.col("kl_ab")).all()
    again = load_run(save_run(run, tmp_path / f"{run.id}.tokentui"))
    np.testing.assert_array_equal(again.branches[-1].steps.col("token_id"), b.steps.col("token_id"))
    assert np.isnan(again.branches[-1].steps.col("kl_ab")).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # (the interpreter's numpy, on the NaN rows)
def test_the_fused_kernel_gives_the_registered_functions_numbers_in_bfloat16_and_past_one_tile(monkeypatch):
    """The kernel's tiles (BLOCK vocabulary entries) and a model in bfloat16: every column as the
    registered functions compute it from the same logits (ranks and top-k ids exactly). Broken
    logits — a NaN, a +∞, a row all −∞ — give NaN as log_softmax does, not plausible numbers."""
    pair_kernel = interpreted_kernel()
    g = torch.Generator().manual_seed(5)
    vocab = pair_kernel.BLOCK * 2 + 37  # two whole tiles and a partial one
    logits_a = torch.randn(9, vocab, generator=g) * 4
    logits_b = logits_a + torch.randn(9, vocab, generator=g)
    logits_a[1, :50] = -math.inf
    logits_a[6, 1500], logits_b[7, 3], logits_a[8] = math.nan, math.inf, -math.inf
    targets = torch.randint(0, vocab, (9,), generator=g)
    for dtype in (torch.float32, torch.bfloat16):
        la, lb = logits_a.to(dtype), logits_b.to(dtype)
        fused, plain = pair_kernel.pair_block(la, lb, targets, K), compare.torch_stats(la, lb, targets, K)
        assert fused.keys() == plain.keys()
        for name, v in plain.items():
            if v.is_floating_point():  # (NaN where log_softmax gives NaN: assert_allclose compares them)
                np.testing.assert_allclose(fused[name], v, atol=1e-5, rtol=1e-5, err_msg=f"{name} {dtype}")
            elif dtype == torch.float32 or "topk" not in name:  # (bf16 logits tie: top-k order may differ)
                rows = slice(0, 6) if "topk" in name else slice(None)  # (top-k of NaN: either's choice)
                np.testing.assert_array_equal(fused[name][rows], v[rows], err_msg=f"{name} {dtype}")
        for name in ("kl_ab", "kl_ba", "js"):  # (NaN A, +∞ in B, A all −∞: each divergence is NaN)
            assert fused[name][6:].isnan().all() and not fused[name][:6].isnan().any(), name


def test_the_fused_kernels_top_k_is_torch_topks_from_its_candidates_or_the_whole_row(monkeypatch):
    """The kernel gathers each row's top-k candidates (the logits at least a threshold from its
    lanes' maxima): for ordinary rows few more than k, and the top k from them is `torch.topk`'s.
    Rows the candidates cannot serve — all logits tied (too many), fewer than k finite — and a k
    over TOPK_MAX take the whole row; a vocabulary under one tile works too."""
    from tokentui.engine.hf.measures import LOGPROB_FLOOR

    pair_kernel = interpreted_kernel()
    found: list[torch.Tensor] = []
    top_k = pair_kernel._top_k

    def spy(a, b, slots_v, slots_i, f, k):
        found.append(torch.stack([f["found"], f["found_b"]]))
        return top_k(a, b, slots_v, slots_i, f, k)

    monkeypatch.setattr(pair_kernel, "_top_k", spy)
    g = torch.Generator().manual_seed(11)
    for vocab in (40, 300, pair_kernel.BLOCK * 3 + 5):
        logits_a = torch.randn(6, vocab, generator=g) * 3
        logits_b = logits_a + torch.randn(6, vocab, generator=g)
        logits_a[1] = 0.5  # every logit tied: more candidates than slots when the vocabulary is large
        logits_b[2, 3:] = -math.inf  # three finite logits, fewer than k
        targets = torch.randint(0, vocab, (6,), generator=g)
        for k in (k for k in (1, 7, 40, pair_kernel.TOPK_MAX, pair_kernel.TOPK_MAX + 1) if k <= vocab):
            found.clear()
            fused = pair_kernel.pair_block(logits_a, logits_b, targets, k)
            for side, logits in (("", logits_a), ("_b", logits_b)):
                top, ids = logits.topk(k, dim=-1)
                for row in fused["topk_ids" + side].tolist():  # (−∞ logits tie with empty slots: not those)
                    assert len(set(row)) == k, (vocab, k, side, row)
                exact = [0, 3, 4, 5] + ([2] if side == "" else [1])  # (tied or −∞ logits: any order)
                np.testing.assert_array_equal(fused["topk_ids" + side][exact], ids[exact], err_msg=f"{vocab} {k}")
                np.testing.assert_allclose(
                    fused["topk_logprobs" + side],
                    torch.log_softmax(logits, -1).gather(-1, ids).clamp_min(LOGPROB_FLOOR),
                    atol=1e-5,
                    err_msg=f"{vocab} {k} {side}",
                )
            if k > pair_kernel.TOPK_MAX:
                assert not found  # (torch.topk on the rows: no candidates gathered)
                continue
            [counts] = found
            ordinary = counts[:, [0, 3, 4, 5]]
            assert (ordinary >= k).all() and (ordinary <= 2 * k + 4).all(), counts  # few more than k
            if vocab > pair_kernel.CANDIDATES:
                assert counts[0, 1] > pair_kernel.CANDIDATES  # (served by its whole row)
            if k > 3:  # (fewer finite logits than k: the threshold is −∞, every logit a candidate)
                assert counts[1, 2] == vocab


def test_a_new_registered_measure_or_a_failing_kernel_leaves_the_fused_path(monkeypatch):
    """The fused kernel computes a fixed set of measures: a registry with one more switches it off
    (the new measure is computed, not silently dropped); a kernel that fails warns once and the
    comparison goes on with the registered functions."""
    pair_kernel = interpreted_kernel()
    from tokentui.engine.hf import measures

    monkeypatch.setenv("TOKENTUI_FUSED_STATS", "1")
    monkeypatch.setattr(compare, "_fused_failed", [])
    cpu = torch.device("cpu")
    assert compare.fused_stats(cpu) is not None
    monkeypatch.setattr(measures, "TOKEN_FNS", [*measures.TOKEN_FNS, (("margin",), lambda x: {})])
    monkeypatch.setattr(pair_kernel, "TOKEN_FNS", measures.TOKEN_FNS)
    assert compare.fused_stats(cpu) is None
    monkeypatch.undo()
    monkeypatch.setenv("TOKENTUI_FUSED_STATS", "1")
    monkeypatch.setattr(compare, "_fused_failed", [])

    calls = []

    def broken(*_args):
        import subprocess

        calls.append(1)
        raise subprocess.CalledProcessError(1, ["gcc"], stderr="Python.h: no such file")  # (Triton's stub build)

    monkeypatch.setattr(pair_kernel, "pair_block", broken)
    g = torch.Generator().manual_seed(2)
    logits_a, logits_b = torch.randn(3, 40, generator=g), torch.randn(3, 40, generator=g)
    monkeypatch.setattr(compare, "FUSED_BLOCK_ELEMENTS", 40)  # one position per block: the kernel is tried once
    monkeypatch.setattr(compare, "GPU_BLOCK_ELEMENTS", 80)  # the fallback's blocks: its own size
    with pytest.warns(UserWarning, match="gcc"):
        values = compare._measures(logits_a, logits_b, [1, 2, 3, 4], K, cpu).host()
    assert len(calls) == 1
    np.testing.assert_array_equal(
        values["rank"], compare.torch_stats(logits_a, logits_b, torch.tensor([2, 3, 4]), K)["rank"]
    )
    assert compare.fused_stats(cpu) is None  # switched off for the process


COMPILE = """
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from tokentui.engine.hf import pair_kernel as P

assert not P.interpreting()
for capability in (80, 90):  # A100; H100 and H200
    for dtype in ("fp32", "bf16", "fp16"):
        sig = {"a_ptr": f"*{dtype}", "b_ptr": f"*{dtype}", "t_ptr": "*i64", "out_ptr": "*fp32",
               "va_ptr": "*fp32", "ia_ptr": "*i32", "vb_ptr": "*fp32", "ib_ptr": "*i32", "V": "i32",
               "stride_a": "i32", "stride_b": "i32", "floor": "fp32", "ln2": "fp32", "k": "i32",
               "BLOCK": "constexpr", "WIDTH": "constexpr", "SLOTS": "constexpr", "TOPK": "constexpr"}
        constants = {k: v for k, v in P.LAUNCH.items() if k.isupper()} | {"TOPK": True}
        options = {k: v for k, v in P.LAUNCH.items() if not k.isupper()}
        src = ASTSource(fn=P._KERNEL, signature=sig, constexprs=constants)
        kernel = triton.compile(src, target=GPUTarget("cuda", capability, 32), options=options)
        assert kernel.asm["cubin"], (capability, dtype)
        print(capability, dtype, "compiled")
"""


def test_the_fused_kernel_compiles_to_gpu_code_without_a_gpu():
    """The interpreter runs the kernel's Python; a real GPU needs it compiled (types, loops,
    pointers). Triton compiles for a CUDA target without one: to PTX and on to a cubin with its
    own ptxas, for the A100 and H100/H200 architectures, for the logits dtypes models use."""
    import os
    import subprocess
    import sys

    pytest.importorskip("triton", reason="Triton is not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    done = subprocess.run([sys.executable, "-c", COMPILE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("compiled") == 6
