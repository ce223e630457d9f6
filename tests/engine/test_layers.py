"""Every per-layer measure (issue 14) against a reference written here from the model's own
outputs: `output_hidden_states=True` → the final norm → the unembedding → a full `log_softmax`
over the whole vocabulary at each layer, and `output_attentions=True` (eager) for attention
entropy. Generated tokens (lens every token and every 5), teacher-forced scoring and a tree
search's nodes, on tiny models of five families; layer L is the model's own distribution; the
vocabulary slicing with slices forced tiny; a saved run loads with the same columns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.factories import FAMILIES, assert_same
from tokentui.core.measures import DERIVED, derive
from tokentui.core.params import GenerationSettings, RunError, SamplingParams, TreeParams
from tokentui.engine import jobs
from tokentui.engine.events import LensEvent, StepEvent, apply_event
from tokentui.engine.hf.backend import HFBackend
from tokentui.engine.hf.tree import TreeSearch
from tokentui.store.runfile import load_run, save_run

PROMPT = "def wrap(text, width):\n    "
K_LENS = 4
SCALARS = ("layer_entropy", "layer_margin", "layer_kl_final", "layer_surprisal")
EPS = 1e-4  # logits this close to the chosen token's count as a tie for the rank check


class Reference:
    """Per-layer distributions of one sequence computed the plain way: one forward with every
    hidden state; layer l < L: hidden state → final norm → unembedding (→ soft-cap) → log_softmax
    over the whole vocabulary; layer L: log_softmax of the model's own logits."""

    def __init__(self, lm, seq: list[int], attention: bool = False) -> None:
        parts = lm.lens
        model = lm.model
        with torch.inference_mode():
            impl = model.config._attn_implementation
            if attention:
                model.set_attn_implementation("eager")
            try:
                out = model(torch.tensor([seq]), output_hidden_states=True, output_attentions=attention)
            finally:
                model.set_attn_implementation(impl)
            layers = []
            for h in out.hidden_states[1:-1]:
                logits = torch.nn.functional.linear(parts.norm(h[0]), parts.weight, parts.bias).float()
                if parts.softcap:
                    logits = torch.tanh(logits / parts.softcap) * parts.softcap
                layers.append(torch.log_softmax(logits, -1))
            layers.append(torch.log_softmax(out.logits[0].float(), -1))
        self.logp = torch.stack(layers)  # [L, T, V]
        self.attentions = out.attentions if attention else None
        self.vocab = self.logp.shape[-1]

    def at(self, p: int, token: int) -> dict[str, np.ndarray]:
        """Every measure at input position p (whose output predicts the token at p + 1 = `token`)."""
        lp = self.logp[:, p]  # [L, V]
        pr = lp.exp()
        top2 = pr.topk(2, dim=-1).values
        final = lp[-1]
        mine = lp[:, token]
        top = lp.topk(K_LENS, dim=-1)
        out = {
            "layer_entropy": -(pr * lp).sum(-1),
            "layer_perplexity": (-(pr * lp).sum(-1)).exp(),
            "layer_kl_uniform": (pr * (lp + math.log(self.vocab))).sum(-1),
            "layer_margin": top2[:, 0] - top2[:, 1],
            "layer_kl_final": (pr * (lp - final)).sum(-1),
            "layer_surprisal": -mine / math.log(2),
            "rank_lo": (lp > mine[:, None] + EPS).sum(-1) + 1,
            "rank_hi": (lp > mine[:, None] - EPS).sum(-1) + 1,
            "layer_topk_ids": top.indices,
            "layer_topk_logprobs": top.values,
        }
        if self.attentions is not None:
            rows = [a[0, :, p, : p + 1].float() for a in self.attentions]  # [heads, p + 1] per layer
            out["attention_entropy"] = torch.stack([torch.special.entr(r).sum(-1).mean() for r in rows])
        return {k: v.numpy() for k, v in out.items()}


def event_values(events, branch: int = 0) -> dict[int, dict]:
    """position → (step, {measure: full-precision values}) from StepEvents, with the per-layer
    values that LensEvents deliver later filled in."""
    out: dict[int, dict] = {}
    for ev in events:
        if isinstance(ev, StepEvent) and ev.branch_id == branch:
            out[ev.step.position] = {"step": ev.step, **{k: np.array(v) for k, v in ev.step.values.items()}}
        elif isinstance(ev, LensEvent) and ev.branch_id == branch:
            for name, arr in ev.values.items():
                for i, row in enumerate(arr):
                    out[ev.start_position + i][name] = row
    return out


def check(got: dict, ref: dict, vocab: int, tol=lambda r: 1e-4, what: str = "") -> None:
    """`got` (a step's values: one entry per layer 1…L) against the reference's."""

    def close(name: str, a, b, scale=None) -> None:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        bad = np.abs(a - b) > tol(b if scale is None else scale)
        assert not bad.any(), f"{what} {name}: {a} vs {b}"

    for name in SCALARS:
        close(name, got[name], ref[name])
    for name in DERIVED:  # computed on read from the stored entropy (perplexity compared as its log)
        value = derive(name, lambda n: np.asarray(got[n]), vocab)
        if name == "layer_perplexity":
            close(name, np.log(value), np.log(ref[name]))
        else:  # (as exact as the stored entropy it comes from)
            close(name, value, ref[name], scale=ref[DERIVED[name].source])
    rank = np.asarray(got["layer_rank"])
    assert ((ref["rank_lo"] <= rank) & (rank <= ref["rank_hi"])).all(), f"{what} rank {rank} vs {ref['rank_lo']}"
    assert np.array_equal(got["layer_topk_ids"], ref["layer_topk_ids"]), what
    close("layer_topk_logprobs", got["layer_topk_logprobs"], ref["layer_topk_logprobs"])
    if "attention_entropy" in ref:
        close("attention_entropy", got["attention_entropy"], ref["attention_entropy"])


def stored_tol(ref: np.ndarray) -> np.ndarray:
    """float16 storage: 1e-4 plus half a float16 step of the value."""
    return 1e-4 + np.abs(ref) * 2.0**-11


def backend(lm, chunk: int = 1) -> HFBackend:
    return HFBackend(lm, lens_chunk=chunk, lens_precision="float32")


def settings(n: int = 8, attention: bool = False, **kw) -> GenerationSettings:
    return GenerationSettings(SamplingParams(max_new_tokens=n, **kw), k=6, k_lens=K_LENS, attention_entropy=attention)


def generate(b: HFBackend, s: GenerationSettings, prompt: str = PROMPT):
    job = jobs.Generate(b, prompt, s)
    events = list(job)
    assert job.run is not None
    return job.run, events


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("chunk", [1, 5])
def test_every_layer_measure_of_generated_tokens_matches_the_reference(loaded, family, chunk):
    lm = loaded(family)
    run, events = generate(backend(lm, chunk), settings(9, temperature=1.0, seed=3))
    got = event_values(events)
    seq = run.sequence(0).tolist()
    ref = Reference(lm, seq)
    assert len(got) == 9
    for pos, values in got.items():
        step = values["step"]
        r = ref.at(pos - 1, seq[pos])
        check(values, r, ref.vocab, what=f"{family} position {pos}")
        # layer L is the model's own distribution, exactly what the per-token measures say
        assert values["layer_entropy"][-1] == step.entropy and values["layer_rank"][-1] == step.rank
        assert values["layer_surprisal"][-1] == pytest.approx(-step.logprob / math.log(2), rel=1e-6)
        assert values["layer_kl_final"][-1] == 0
        assert values["layer_topk_ids"][-1].tolist() == step.topk_ids[:K_LENS].tolist()
    # the run stores them (float16; ranks and ids exact)
    b = run.branches[0]
    for name in (*SCALARS, "layer_rank", "layer_topk_ids"):
        want = np.stack([got[p][name] for p in sorted(got)])
        np.testing.assert_allclose(b.steps.col(name).astype(np.float64), want, rtol=2**-10, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_teacher_forced_scoring_matches_the_reference(loaded, family):
    lm = loaded(family)
    text = "import os\nprint(os.getcwd())\n"
    ids = lm.tokenizer(text)["input_ids"]
    run = backend(lm, 32).score_ids(ids, 6, text, settings())
    ref = Reference(lm, ids)
    assert len(run.prompt) == len(ids) and run.layout.j == K_LENS
    for pos in range(1, len(ids)):
        st = run.prompt.get(pos, pos, "prompt")
        values = {name: np.asarray(st.values[name], dtype=np.float64) for name in st.values}
        check(values, ref.at(pos - 1, ids[pos]), ref.vocab, tol=stored_tol, what=f"{family} position {pos}")
        assert values["layer_rank"][-1] == st.rank
    assert np.isnan(run.prompt.col("layer_entropy")[0]).all()  # position 0 predicts nothing
    assert (run.prompt.col("layer_rank")[0] == 0).all() and (run.prompt.col("layer_topk_ids")[0] == -1).all()


@pytest.mark.parametrize("family", ["opt-project-out", "opt-post-norm"])
def test_opt_350m_shapes_lens_through_their_projection_out(tokenizer_dir, family):
    """OPT-350m projects the final norm's output down to the embedding size (`project_out`), and
    its post-norm variant has no final norm: the lens applies what the model applies to its last
    layer — written out here from OPT's own modules — to every layer (a trial's generate failed in
    the lens's matmul, and the post-norm model could not be opened at all)."""
    from tests.factories import tiny_loaded

    lm = tiny_loaded(tokenizer_dir, family)
    dec, model = lm.model.model.decoder, lm.model
    assert (dec.final_layer_norm is None) == (family == "opt-post-norm")
    text = "import os\nprint(os.getcwd())\n"
    ids = lm.tokenizer(text)["input_ids"]
    run = backend(lm, 32).score_ids(ids, 6, text, settings())
    with torch.inference_mode():
        out = model(torch.tensor([ids]), output_hidden_states=True)

        def opt_head(h: torch.Tensor) -> torch.Tensor:
            if dec.final_layer_norm is not None:
                h = dec.final_layer_norm(h)
            return model.lm_head(dec.project_out(h)).float()

        logp = torch.stack([torch.log_softmax(opt_head(h[0]), -1) for h in out.hidden_states[1:-1]]
                           + [torch.log_softmax(out.logits[0].float(), -1)])  # fmt: skip
    entropy = -(logp.exp() * logp).sum(-1)  # [L, T]
    got = run.prompt.col("layer_entropy").astype(np.float64)  # [T, L]: position p predicts token p
    np.testing.assert_allclose(got[1:], entropy[:, :-1].T.numpy(), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize(("family", "final_norm"), [("xglm", "layer_norm"), ("ctrl", "layernorm"),
                                                    ("lfm2", "embedding_norm")])  # fmt: skip
def test_families_naming_their_final_norm_otherwise_are_lensed_through_it(tokenizer_dir, family, final_norm):
    """XGLM, CTRL and LFM2 call the norm their decoder applies after its last block by other names
    (LFM2's `embedding_norm` despite its name): such models could not be opened at all. The lens
    applies that module, named here from each family's source, then the model's own head."""
    from tests.factories import tiny_loaded

    lm = tiny_loaded(tokenizer_dir, family)
    model = lm.model
    text = "import os\nprint(os.getcwd())\n"
    ids = lm.tokenizer(text)["input_ids"]
    run = backend(lm, 32).score_ids(ids, 6, text, settings())
    norm = getattr(model.get_decoder(), final_norm)
    with torch.inference_mode():
        out = model(torch.tensor([ids]), output_hidden_states=True)
        logp = torch.stack([torch.log_softmax(model.lm_head(norm(h[0])).float(), -1) for h in out.hidden_states[1:-1]]
                           + [torch.log_softmax(out.logits[0].float(), -1)])  # fmt: skip
    entropy = -(logp.exp() * logp).sum(-1)  # [L, T]
    got = run.prompt.col("layer_entropy").astype(np.float64)  # [T, L]: position p predicts token p
    np.testing.assert_allclose(got[1:], entropy[:, :-1].T.numpy(), rtol=2e-3, atol=2e-3)


def test_a_model_whose_final_norm_is_unknown_loads_and_generates_with_the_lens_off(tokenizer_dir, tmp_path):
    """A post-norm BART decoder has no final norm tokentui can name: the model could not be opened
    at all. It loads, says why it has no lens (while loading, in the run, in the capabilities),
    and generates `model.generate()`'s greedy tokens with the model's own entropy recorded."""
    from tests.conftest import build_model_dir
    from tokentui.engine.hf.loading import load_model

    said: list[str] = []
    lm = load_model(str(build_model_dir("bart", tokenizer_dir, tmp_path / "bart")), progress=said.append)
    why = "no logit lens: tokentui cannot tell which module of BartDecoder is its final norm"
    assert why in said
    b = backend(lm, 32)
    assert b.lens_chunk == 0 and b.capabilities.why_not("lens") == why
    assert HFBackend.capabilities.lens  # (the class's, for other models, unchanged)
    ids, _ = b.encode_prompt(PROMPT)
    run = b.new_run(PROMPT, settings(6), None)
    list(b.generate(run, ids, SamplingParams(max_new_tokens=6)))
    assert run.meta.lens == f"off ({why})"
    with torch.inference_mode():
        want = lm.model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False, eos_token_id=None,
                                 pad_token_id=0, forced_eos_token_id=None)[0, len(ids):].tolist()  # fmt: skip
        logp = torch.log_softmax(lm.model(torch.tensor([ids])).logits[0, -1].float(), -1)
    steps = run.branches[0].steps
    assert steps.col("token_id").tolist() == want
    assert [n for n in run.layout.names if n.startswith("layer_")] == ["layer_entropy"]
    assert steps.col("layer_entropy")[0, -1] == pytest.approx(float(-(logp.exp() * logp).sum()), abs=2e-3)
    reloaded = load_run(save_run(run, tmp_path / "bart.tokentui"))
    assert reloaded.meta.lens == run.meta.lens


@pytest.mark.parametrize(("family", "shared"), [("gpt2", True), ("llama", True), ("gpt_neox", False)])
def test_the_nodes_of_a_tree_search_match_the_reference(peaked, family, shared):
    """Each node is a one-step branch: its layers describe its parent's distribution (the same
    for its siblings) and its own token (rank, surprisal), reported by LensEvents after the
    node's expansion; a receiver grown from the events holds the same run."""
    lm = peaked(family)
    b = backend(lm, 1)
    ids, _ = b.encode_prompt(PROMPT)
    run = b.new_run(PROMPT, settings(), None, mode="tree")
    params = TreeParams(0.05, 0.5, soft_queue_limit=5, max_depth=4, max_completed_paths=50, max_nodes=24)
    events = list(TreeSearch(b, run, params, batch=4, shared=shared).events(ids))
    lens_events = [e for e in events if isinstance(e, LensEvent)]
    assert len(lens_events) >= len(run.branches) - 6  # (children of nodes never expanded wait for nothing)
    assert len({len(run.children(x.id)) for x in run.branches}) > 1  # it really branched
    checked = 0
    for br in run.branches:
        seq = run.sequence(br.id).tolist()
        st = br.step(0)
        values = {name: np.asarray(v, dtype=np.float64) for name, v in st.values.items()}
        ref = Reference(lm, seq[:-1])
        check(values, ref.at(len(seq) - 2, seq[-1]), ref.vocab, tol=stored_tol, what=f"branch {br.id}")
        checked += 1
    assert checked == len(run.branches) >= 5
    copy = None
    for ev in events:
        copy = apply_event(copy, ev)
    assert copy is not None
    assert_same(copy, run)
    copy.validate()  # the per-layer top tokens' bytes came with the LensEvents


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2", "gemma", "gpt_neox"])
def test_attention_entropy_matches_output_attentions(loaded, family):
    """Mean over heads of the entropy of the attention row of the position that predicted the
    token, for generated tokens (eager attention switched on per forward, then restored) and for
    the teacher-forced prompt."""
    lm = loaded(family)
    impl = lm.model.config._attn_implementation
    run, events = generate(backend(lm, 5), settings(6, attention=True))
    assert lm.model.config._attn_implementation == impl  # restored after every forward
    seq = run.sequence(0).tolist()
    ref = Reference(lm, seq, attention=True)
    for pos, values in event_values(events).items():
        r = ref.at(pos - 1, seq[pos])
        np.testing.assert_allclose(values["attention_entropy"], r["attention_entropy"], atol=1e-4)
        assert len(values["attention_entropy"]) == lm.n_layers
    for pos in range(1, len(run.prompt)):
        got = run.prompt.col("attention_entropy")[pos].astype(np.float64)
        want = ref.at(pos - 1, seq[pos])["attention_entropy"]
        assert (np.abs(got - want) <= stored_tol(want)).all()


def test_attention_entropy_of_tree_nodes(peaked):
    """Tree attention with eager attention (an additive mask): each node's attention rows."""
    lm = peaked("gpt2")
    b = backend(lm, 1)
    ids, _ = b.encode_prompt(PROMPT)
    run = b.new_run(PROMPT, settings(attention=True), None, mode="tree")
    params = TreeParams(0.05, 0.5, soft_queue_limit=5, max_depth=3, max_completed_paths=50, max_nodes=12)
    list(TreeSearch(b, run, params, batch=4).events(ids))
    assert len(run.branches) >= 6
    for br in run.branches:
        seq = run.sequence(br.id).tolist()
        ref = Reference(lm, seq[:-1], attention=True)
        want = ref.at(len(seq) - 2, seq[-1])["attention_entropy"]
        got = br.steps.col("attention_entropy")[0].astype(np.float64)
        assert (np.abs(got - want) <= stored_tol(want)).all(), br.id


def lens_parts(softcap):
    from tokentui.engine.hf.arch import LensParts

    gen = torch.Generator().manual_seed(0)
    vocab, d = 5000, 16
    parts = LensParts(
        norm=torch.nn.LayerNorm(d),
        weight=torch.randn(vocab, d, generator=gen),
        bias=torch.randn(vocab, generator=gen),
        softcap=softcap,
        n_layers=4,
    )
    return parts, gen


@pytest.mark.parametrize("softcap", [None, 30.0])
@pytest.mark.parametrize("chosen_per_position", [1, 3, 11])
def test_every_lens_measure_in_vocabulary_slices_equals_the_full_softmax(softcap, chosen_per_position):
    """Blocks of positions and vocabulary slices forced tiny (and several chosen tokens per
    position, as a tree node's children, more than one rank group) give the full softmax's values."""
    from tokentui.engine.hf.measures import LensInputs, lens_values

    parts, gen = lens_parts(softcap)
    vocab = parts.weight.shape[0]
    positions, layers, c = 9, 3, chosen_per_position
    hidden = torch.randn(positions, layers, 16, generator=gen)
    final = torch.randn(positions, vocab, generator=gen) * 3
    chosen = torch.randint(0, vocab, (positions, c), generator=gen)
    chosen[0, -1] = -1  # padding (a node with fewer children)
    with torch.inference_mode():
        lp = torch.log_softmax(parts.project(parts.normed(hidden)), -1)  # the whole vocabulary at once
        got = lens_values(parts, hidden, LensInputs(chosen, final, 5), block_elements=3000, max_rows=7)
    pr, fl = lp.exp(), torch.log_softmax(final, -1)[:, None, :]
    top2 = pr.topk(2, dim=-1).values
    torch.testing.assert_close(got["layer_entropy"], -(pr * lp).sum(-1), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got["layer_margin"], top2[..., 0] - top2[..., 1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["layer_kl_final"], (pr * (lp - fl)).sum(-1), atol=1e-4, rtol=1e-5)
    top = lp.topk(5, dim=-1)
    assert torch.equal(got["layer_topk_ids"], top.indices)
    torch.testing.assert_close(got["layer_topk_logprobs"], top.values, atol=1e-4, rtol=1e-5)
    mine = lp.gather(-1, chosen.clamp_min(0)[:, None, :].expand(-1, layers, -1))  # [P, R, C]
    torch.testing.assert_close(got["layer_surprisal"][chosen[:, None, :].expand_as(mine) >= 0],
                               (-mine / math.log(2))[chosen[:, None, :].expand_as(mine) >= 0], atol=1e-4, rtol=1e-5)  # fmt: skip
    lo = (lp[..., None, :] > mine[..., None] + EPS).sum(-1) + 1
    hi = (lp[..., None, :] > mine[..., None] - EPS).sum(-1) + 1
    rank = got["layer_rank"]
    known = (chosen >= 0)[:, None, :].expand_as(rank)
    assert ((lo <= rank) & (rank <= hi))[known].all()
    assert (rank[~known] == 0).all()
    assert got["layer_rank"].shape == (positions, layers, c)
    entropies = -(pr * lp).sum(-1)
    assert entropies.min() < 1.5 and entropies.max() > 3  # peaked and flatter rows alike


def test_a_run_with_every_layer_measure_saves_and_loads(loaded, tmp_path):
    lm = loaded("qwen2")
    run, _ = generate(backend(lm, 5), settings(7, attention=True))
    assert run.layout.j == K_LENS
    names = set(run.layout.names)
    assert {"layer_margin", "layer_kl_final", "layer_rank", "layer_surprisal", "attention_entropy"} <= names
    assert {"layer_topk_ids", "layer_topk_logprobs"} <= names
    again = load_run(save_run(run, tmp_path / "r.tokentui"))
    assert_same(again, run)
    assert again.layout == run.layout
    assert again.branches[0].steps.col("layer_topk_ids").shape == (7, lm.n_layers, K_LENS)


def test_what_a_run_records_follows_the_settings(loaded):
    lm = loaded("llama")
    none = backend(lm, 5).new_run("x", GenerationSettings(k=4, k_lens=0), None)
    assert "layer_topk_ids" not in none.layout.names and "layer_rank" in none.layout.names
    assert "attention_entropy" not in none.layout.names
    off = HFBackend(lm, lens_chunk=0).new_run("x", GenerationSettings(k=4, attention_entropy=True), None)
    assert [n for n in off.layout.names if n.startswith("layer_")] == ["layer_entropy"]
    assert "attention_entropy" in off.layout.names
    # with the lens off --lens-top changes nothing the run records (batch redoes nothing for it)
    lens_top = [HFBackend(lm, lens_chunk=0).new_run("x", GenerationSettings(k=4, k_lens=j), None) for j in (0, 7)]
    assert lens_top[0].layout == lens_top[1].layout
    for bad in (-1, 101, True):
        with pytest.raises(RunError, match="--lens-top"):
            GenerationSettings(k_lens=bad).check()
    with pytest.raises(RunError, match="vocabulary"):
        GenerationSettings(k_lens=50).check(vocab_size=40)


def test_lens_off_still_records_the_last_layer_and_attention(loaded):
    lm = loaded("gpt2")
    run, events = generate(HFBackend(lm, lens_chunk=0), settings(4, attention=True))
    assert not any(isinstance(e, LensEvent) for e in events)
    seq = run.sequence(0).tolist()
    ref = Reference(lm, seq, attention=True)
    b = run.branches[0]
    lay = b.steps.col("layer_entropy")
    assert np.isnan(lay[:, :-1]).all() and np.isfinite(lay[:, -1]).all()
    for i in range(len(b.steps)):
        want = ref.at(b.fork_position + i - 1, seq[b.fork_position + i])["attention_entropy"]
        got = b.steps.col("attention_entropy")[i].astype(np.float64)
        assert (np.abs(got - want) <= stored_tol(want)).all()


def test_count_above_is_exact_with_ties_and_extreme_values():
    """The CPU rank count (sign of max(x − c, 0) summed in float) against the plain comparison:
    ties with the chosen value count as not above, tiny and huge differences count exactly."""
    from tokentui.engine.hf.measures import LOGPROB_FLOOR, count_above

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 4, 3000, generator=gen) * 20
    c = x[..., 17:18].clone()  # each row's value is in the row (a tie with itself)
    x[..., 100:140] = c  # more ties
    x[..., 200] = torch.nextafter(c[..., 0], torch.tensor(float("inf")))  # the least float above
    x[..., 201] = torch.nextafter(c[..., 0], torch.tensor(float("-inf")))  # and below
    x[0, 0, :50] = 3e38
    x[1, 1, :50] = LOGPROB_FLOOR
    want = (x > c).sum(-1, keepdim=True)
    got = count_above(x, c)
    assert got.dtype == torch.int64 and torch.equal(got, want)


def test_a_twin_of_the_chosen_token_ties_with_it_in_the_lens_rank():
    """Rows of the unembedding that are equal (twins: duplicated or untrained tokens) give equal
    logits, yet the chosen token's logit, projected apart from the vocabulary slices, could come
    out a step lower than its twin's: the twin was counted as larger (an analyst's trial: 6 of 16
    ranks one too high). Every chosen token here has a twin; the lens rank counts only tokens
    larger beyond rounding, as a float64 reference does."""
    from tokentui.engine.hf.measures import LensInputs, lens_values

    parts, gen = lens_parts(None)
    with torch.no_grad():
        parts.weight[1::2] = parts.weight[0::2]  # token 2i+1 is token 2i's twin
        parts.bias[1::2] = parts.bias[0::2]
    vocab = parts.weight.shape[0]
    positions, layers = 24, 3
    hidden = torch.randn(positions, layers, 16, generator=gen) * 3
    chosen = torch.randint(0, vocab, (positions, 4), generator=gen)
    final = torch.randn(positions, vocab, generator=gen)
    with torch.inference_mode():
        got = lens_values(parts, hidden, LensInputs(chosen, final, 0), {"layer_rank"})["layer_rank"]
        x = parts.project(parts.normed(hidden)).double()  # [P, R, V]
    mine = x.gather(-1, chosen[:, None, :].expand(-1, layers, -1))  # [P, R, C]
    above = x[..., None, :] - mine[..., None]  # [P, R, C, V]
    lo = (above > 1e-4).sum(-1) + 1  # what is larger beyond doubt
    hi = (above > 1e-12).sum(-1) + 1  # and everything above, the twin excluded (it is equal in float64)
    assert ((lo <= got) & (got <= hi)).all(), (got - hi).max()


def _scores_as_a_plain_forward(b: HFBackend, lm) -> None:
    """`score` (one whole forward) of a model that cannot do something else: equal to a plain forward."""
    ids = lm.tokenizer(PROMPT)["input_ids"]
    run = b.score_ids(ids, 4, PROMPT, settings())
    with torch.inference_mode():
        logp = torch.log_softmax(lm.model(torch.tensor([ids])).logits[0].float(), -1)
    want = logp[:-1].gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    np.testing.assert_allclose(run.prompt.col("logprob")[1:], want.numpy(), rtol=1e-5, atol=1e-5)


def test_a_model_whose_cache_is_no_key_value_cache_cannot_generate_but_scores(tokenizer_dir, tmp_path):
    """RWKV carries a recurrent state, not a key-value cache: decoded as tokentui decodes, each step
    saw the new token alone (a trial's greedy tokens differed from model.generate's, with plausible
    numbers). Generating and growing a tree are refused in one line, saying why; scoring (and what
    else needs one whole forward: compare, steer-vector) works — it was refused too."""
    from tests.conftest import build_model_dir
    from tokentui.engine.errors import EngineError
    from tokentui.engine.hf.loading import load_model

    lm = load_model(str(build_model_dir("rwkv", tokenizer_dir, tmp_path / "rwkv")))
    b = HFBackend(lm)
    with pytest.raises(EngineError, match="cannot generate with this model: it returns no key-value cache") as e:
        generate(b, settings(2))
    assert "\n" not in str(e.value)
    with pytest.raises(EngineError, match="cannot generate with this model"):
        list(jobs.TreeSearch(b, TreeParams(max_nodes=3), PROMPT, GenerationSettings()))
    _scores_as_a_plain_forward(b, lm)


@pytest.mark.parametrize(("family", "scale"), [("cohere", lambda c: c.logit_scale), ("granite",
                                                                                 lambda c: 1 / c.logits_scaling)])  # fmt: skip
def test_families_that_scale_their_logits_are_lensed_with_the_scale(tokenizer_dir, family, scale):
    """Cohere multiplies its logits by `logit_scale`, Granite divides them by `logits_scaling`: the
    lens without it was off by hundreds, and the opening check turned it off for these families.
    Every layer's lens equals the final norm, the head and that scale, written out here."""
    from tests.factories import tiny_loaded

    lm = tiny_loaded(tokenizer_dir, family)
    model = lm.model
    b = backend(lm, 32)
    assert b.no_lens is None
    ids = lm.tokenizer(PROMPT)["input_ids"]
    run = b.score_ids(ids, 6, PROMPT, settings())
    norm = model.get_decoder().norm
    with torch.inference_mode():
        out = model(torch.tensor([ids]), output_hidden_states=True)
        logp = torch.stack([torch.log_softmax(model.lm_head(norm(h[0])).float() * scale(model.config), -1)
                            for h in out.hidden_states[1:-1]] + [torch.log_softmax(out.logits[0].float(), -1)])  # fmt: skip
    entropy = -(logp.exp() * logp).sum(-1)  # [L, T]
    got = run.prompt.col("layer_entropy").astype(np.float64)
    np.testing.assert_allclose(got[1:], entropy[:, :-1].T.numpy(), rtol=2e-3, atol=2e-3)
    # a field of that name in another family's config that its model does not apply (MPT's
    # logit_scale): no scale, and the lens stays on
    assert backend(tiny_loaded(tokenizer_dir, "llama", logit_scale=2.0), 32).no_lens is None


def test_attention_entropy_of_a_hybrid_is_refused_in_words(tokenizer_dir):
    """A hybrid (LFM2 here; Jamba, Qwen3-Next) has attention in some layers only: the per-layer
    measure was refused as "found 1 attention modules on …, expected 3"; it says what it means."""
    from tests.factories import tiny_loaded
    from tokentui.engine.errors import EngineError

    lm = tiny_loaded(tokenizer_dir, "lfm2", layer_types=["conv", "full_attention", "conv"])
    with pytest.raises(EngineError, match="Lfm2ForCausalLM has attention in 1 of its 3 layers"):
        generate(backend(lm, 0), settings(2, attention=True))


def test_a_model_whose_cache_drifts_over_steps_cannot_generate(tokenizer_dir):
    """Zamba2's cache in transformers 5 drifts from a whole forward a little more at every step: one
    cached step was within the check's tolerance, and a trial's generated numbers were 0.95 nats
    from `score`'s. Decoding a few steps, held to float32's own agreement, refuses it; the drift is
    measured here with plain transformers."""
    from tests.factories import tiny_loaded
    from tokentui.engine.errors import EngineError
    from tokentui.engine.hf.backend import cache_of
    from tokentui.engine.hf.selfcheck import probe_ids

    lm = tiny_loaded(tokenizer_dir, "zamba2")
    ids = probe_ids(lm.model)
    with torch.inference_mode():
        whole = lm.model(input_ids=ids).logits[0]
        out = lm.model(input_ids=ids[:, :1], use_cache=True)
        off = 0.0
        for i in range(1, ids.shape[1]):
            out = lm.model(input_ids=ids[:, i : i + 1], use_cache=True, cache=cache_of(out))
            off = max(off, float((out.logits[0, -1] - whole[i]).abs().max()))
    assert off > 1e-4 * float(whole.abs().max())
    b = HFBackend(lm)
    with pytest.raises(
        EngineError, match="cannot generate with this model: decoding with its cache gives other logits"
    ):
        generate(b, settings(2))
    _scores_as_a_plain_forward(b, lm)
    assert HFBackend(tiny_loaded(tokenizer_dir, "llama")).capabilities.generate  # (a sound cache passes)


def test_a_float16_overflow_is_not_taken_for_a_wrong_cache_or_head(tokenizer_dir):
    """A float16 model whose activations overflow (Gemma 2 in float16 is the known case) gives NaN
    logits: the opening checks read NaN as 'off', and the model opened with the lens off because
    'its head holds more' and generation refused because 'its cache gives other logits' — both
    wrong. The checks now prove nothing on NaN; generating says what it is, with the way out."""
    from tests.factories import tiny_loaded
    from tokentui.engine.errors import EngineError
    from tokentui.engine.hf.selfcheck import probe_ids

    lm = tiny_loaded(tokenizer_dir, "llama")
    lm.model.half()
    with torch.no_grad():
        lm.model.model.layers[0].mlp.down_proj.weight.fill_(6e4)  # finite weights, sums beyond float16's range
    assert bool(torch.isfinite(lm.model.model.layers[0].mlp.down_proj.weight).all())
    with torch.inference_mode():
        assert bool(lm.model(probe_ids(lm.model)).logits.isnan().all())
    b = HFBackend(lm)
    assert b.capabilities.generate and b.no_lens is None, b.capabilities
    with pytest.raises(EngineError, match=r"not finite .*float16.*try --dtype bfloat16"):
        generate(b, settings(2))


def test_a_sound_half_precision_model_is_not_refused_for_its_rounding(tokenizer_dir):
    """In bfloat16 the cached and the whole forward round differently, more so step after step: a
    sound Jamba was off by 1.4e-2 and 2.0e-2 of the logits' scale at the second and third step
    (float32: ~1e-6) and a check over several steps refused it. Half precision is checked on one
    step, as before; greedy decoding then equals generate() in bfloat16."""
    from tests.factories import tiny_loaded

    lm = tiny_loaded(tokenizer_dir, "jamba")
    lm.model.to(torch.bfloat16)
    run, _ = generate(backend(lm, 0), settings(4))
    prompt = lm.tokenizer(PROMPT)["input_ids"]
    with torch.inference_mode():
        want = lm.model.generate(torch.tensor([prompt]), max_new_tokens=4, do_sample=False)[0].tolist()
    assert run.sequence(0).tolist() == want


def test_mamba_generates_and_its_lens_reads_each_blocks_output(tokenizer_dir):
    """A state-space model in transformers 5: its cache is a state whose length cannot be asked
    (generation crashed on asking it), and its `hidden_states` have no embeddings entry — block 1's
    output comes first (read as the usual layout, each lens layer showed the next block's values).
    Greedy tokens equal generate(); every layer's lens equals the final norm and head applied to
    that block's output, taken here by a hook on the block; a steered generation runs too."""
    from tests.factories import tiny_loaded
    from tokentui.core.steering import SteeringSpec

    lm = tiny_loaded(tokenizer_dir, "mamba", head_scale=3.0)
    model = lm.model
    b = backend(lm, 1)
    assert b.hidden_start == 0 and b.no_lens is None
    run, _ = generate(b, settings(6))
    ids = run.sequence(0).tolist()
    prompt = lm.tokenizer(PROMPT)["input_ids"]
    with torch.inference_mode():
        want = model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False)[0].tolist()
    assert ids == want
    blocks, outs = model.backbone.layers, {}
    handles = [blk.register_forward_hook(lambda _m, _i, o, i=i: outs.__setitem__(i, o)) for i, blk in enumerate(blocks)]
    with torch.inference_mode():
        try:
            logits = model(torch.tensor([ids])).logits[0].float()
        finally:
            for h in handles:
                h.remove()
        hidden = [(o[0] if isinstance(o, tuple) else o)[0] for o in (outs[i] for i in range(len(blocks) - 1))]
        per_layer = [model.lm_head(model.backbone.norm_f(h)).float() for h in hidden]
    logp = torch.stack([torch.log_softmax(x, -1) for x in [*per_layer, logits]])  # [L, T, V]
    entropy = -(logp.exp() * logp).sum(-1)
    got = np.concatenate([run.prompt.col("layer_entropy"), run.branch(0).steps.col("layer_entropy")]).astype(float)
    np.testing.assert_allclose(got[1:], entropy[:, :-1].T.numpy(), rtol=2e-3, atol=2e-3)
    # steered, with a weight per position (its hook needs each forward's first position, which
    # the cache cannot tell): the tokens of generate() under the same addition by hand
    vector = torch.linspace(-1, 1, 32)
    spec = SteeringSpec(vector.numpy(), layers=(1,), weights=(1.0,), scale=2.0, position_weights=(0.0,) * 3 + (1.0,))
    job = jobs.Generate(b, PROMPT, GenerationSettings(SamplingParams(max_new_tokens=4), k=4), steering=spec)
    list(job)

    def add(_m, _i, out):
        h = out[0] if isinstance(out, tuple) else out
        start = add.seen
        add.seen += h.shape[1]
        w = torch.tensor([0.0 if p < 3 else 1.0 for p in range(start, start + h.shape[1])])
        h = h + 2.0 * w[None, :, None] * vector
        return (h, *out[1:]) if isinstance(out, tuple) else h

    add.seen = 0
    handle = blocks[0].register_forward_hook(add)
    try:
        with torch.inference_mode():
            want = model.generate(torch.tensor([prompt]), max_new_tokens=4, do_sample=False)[0].tolist()
    finally:
        handle.remove()
    assert job.run is not None and job.run.sequence(0).tolist() == want


def test_blocks_with_states_the_lens_cannot_read_turn_the_lens_off(tokenizer_dir):
    """Gemma 3n's blocks carry AltUp's streams, 4-D states: the lens crashed on them ("could not
    broadcast") and so did every generate and score. The check at opening turns the lens off,
    saying why; scoring works and equals a plain forward."""
    from tests.factories import tiny_loaded

    lm = tiny_loaded(tokenizer_dir, "gemma3n")
    b = backend(lm, 32)
    assert b.lens_chunk == 0 and "blocks output 4-D states" in (b.no_lens or "")
    _scores_as_a_plain_forward(b, lm)


def test_a_head_the_lens_does_not_know_turns_the_lens_off(tokenizer_dir):
    """ModernBERT's decoder puts a prediction head (dense, activation, norm) between its final norm
    and the unembedding: the lens without it was wrong at every layer (a trial's). The check at
    opening finds that the lens does not give the model's own logits: the lens is off, saying why."""
    from tests.factories import tiny_loaded

    lm = tiny_loaded(tokenizer_dir, "modernbert-decoder")
    b = backend(lm, 32)
    assert b.lens_chunk == 0 and "do not give ModernBertDecoderForCausalLM's own logits" in (b.no_lens or "")
    assert b.capabilities.why_not("lens") == b.no_lens
    assert backend(tiny_loaded(tokenizer_dir, "llama"), 32).no_lens is None  # (a lens that does: on)
    assert backend(lm, 0).no_lens is None  # (the lens off, as asked: not checked, no forward spent on it)


def test_opening_says_why_the_lens_is_off(tokenizer_dir, tmp_path):
    """The reason the check at opening turns the lens off is said while the model opens (the
    command's progress lines), not only in the layer view."""
    from tests.conftest import build_model_dir
    from tokentui.engine.backend import ModelSpec

    said: list[str] = []
    folder = build_model_dir("modernbert-decoder", tokenizer_dir, tmp_path / "mb")
    b = HFBackend.load(ModelSpec(str(folder)), progress=said.append)
    assert b.no_lens is not None and said[-2] == b.no_lens and said[-1].startswith("loaded ")


def test_a_soft_cap_under_another_name_is_applied_by_the_lens(tokenizer_dir):
    """xLSTM caps its logits as `output_logit_soft_cap` (Gemma 2: final_logit_softcapping): a lens
    without the cap was off by up to 0.36 nats (a trial's). The cap is read, the lens gives the
    model's own logits from its last block, and its layers are lensed through the cap."""
    from tests.factories import tiny_loaded

    lm = tiny_loaded(tokenizer_dir, "xlstm")
    assert lm.lens.softcap == 30.0
    assert backend(lm, 32).no_lens is None


def test_a_model_that_fails_inside_its_forward_is_a_one_line_error(tokenizer_dir):
    """xLSTM with 4 heads of 16 fails inside its own recurrent step on a short prompt (transformers
    5's ValueError "matC_old has wrong shape"; a longer one fails as a RuntimeError): generation
    ended as "unexpected ValueError … a bug in tokentui". It is the model's failure, said in one
    line as for any other model error."""
    from tests.factories import tiny_loaded
    from tokentui.engine.errors import EngineError

    lm = tiny_loaded(tokenizer_dir, "xlstm", hidden_size=64, embedding_dim=64, num_heads=4)
    with pytest.raises(EngineError, match=r"the model failed on this input \(\d+ tokens\): matC_old") as e:
        generate(backend(lm, 0), settings(3), prompt="def f")
    assert "\n" not in str(e.value)
