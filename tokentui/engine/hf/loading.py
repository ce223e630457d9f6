"""Load a causal LM and its tokenizer by Hub id, local folder or "demo", with clear errors.

Honours the user's HF cache and HF_HUB_OFFLINE (read by huggingface_hub at import, so set it in
the environment before starting). `trust_remote_code` stays off unless asked for. Device "auto"
picks CUDA, then MPS, then CPU; dtype "auto" keeps the checkpoint's dtype on a GPU and uses
float32 on the CPU (half precision on a CPU is slow and often unsupported). Library progress bars
are silenced: a TUI has no place for tqdm.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tokentui.engine.assets import DEMO_MODEL_DIR, DEMO_NAME
from tokentui.engine.errors import ModelLoadError

DTYPES = ("auto", "float32", "float16", "bfloat16")
LENS_PRECISIONS = ("auto", "float32", "bfloat16")  # see arch.LensParts.at_precision


@dataclass
class LoadedModel:
    spec: str  # what the user asked for
    source: str  # the folder or Hub id actually loaded
    model: object
    tokenizer: object
    revision: str | None
    device: str
    dtype: str
    vocab_size: int
    n_layers: int
    eos_ids: list[int]
    lens: object  # arch.LensParts
    vocab_bytes: list[bytes] = field(repr=False, default_factory=list)

    @property
    def chat_template(self) -> str | None:
        t = getattr(self.tokenizer, "chat_template", None)
        return t if isinstance(t, str) and t else None


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("./", "../", "/", "~", ".\\")) or spec in (".", "..") or Path(spec).expanduser().exists()


def resolve_source(spec: str) -> str:
    """'demo' → the bundled model; a path → checked folder; anything else → a Hub id."""
    if not spec or not spec.strip():
        raise ModelLoadError("no model given")
    if spec == DEMO_NAME:
        if not (DEMO_MODEL_DIR / "config.json").exists():
            raise ModelLoadError(f"the bundled demo model is missing from {DEMO_MODEL_DIR} (broken install?)")
        return str(DEMO_MODEL_DIR)
    if _looks_like_path(spec):
        p = Path(spec).expanduser()
        if not p.exists():
            raise ModelLoadError(f"no such folder: {spec}")
        if not p.is_dir() or not (p / "config.json").exists():
            raise ModelLoadError(f"{spec} is not a model folder (it has no config.json)")
        return str(p)
    return spec


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass


def _explain(source: str, err: BaseException) -> str:
    text = " ".join(str(err).split())
    low = text.lower()
    if "trust_remote_code" in low or "custom code" in low:
        return f"{source} needs custom code from its repository; rerun with --trust-remote-code if you trust it"
    if "backend tokenizer" in low or "sentencepiece" in low:
        return (
            f"could not load the tokenizer of {source} (it has no tokenizer.json; a slow tokenizer needs sentencepiece)"
        )
    if "unrecognized configuration class" in low or "automodelforcausallm" in low:
        return f"{source} is not a causal language model"
    if os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in low or "couldn't connect" in low or "connection" in low:
        return (
            f"could not load {source}: not in the local Hugging Face cache and offline (HF_HUB_OFFLINE or no network)"
        )
    if (
        "is not a local folder and is not a valid model identifier" in low
        or "repository not found" in low
        or "404" in low
    ):
        return f"unknown model {source}: not a local folder and not a model on the Hub"
    return f"could not load {source}: {text[:300]}"


def load_model(
    spec: str,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> LoadedModel:
    say = progress or (lambda _m: None)
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    source = resolve_source(spec)
    t0 = time.perf_counter()
    say("importing torch and transformers")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from tokentui.engine.hf.arch import lens_parts
    from tokentui.engine.hf.token_bytes import vocab_bytes

    _quiet_libraries()
    dev = pick_device(device)
    if dtype == "auto":
        torch_dtype = "auto" if dev != "cpu" else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    kw = {"trust_remote_code": trust_remote_code}
    if revision:
        kw["revision"] = revision
    try:
        say(f"reading the configuration of {spec}")
        config = AutoConfig.from_pretrained(source, **kw)  # refuses remote code first, before any weights
        say(f"loading tokenizer of {spec}")
        tok = AutoTokenizer.from_pretrained(source, **kw)
        say(f"loading weights of {spec}")
        model = AutoModelForCausalLM.from_pretrained(source, config=config, dtype=torch_dtype, **kw)
    except (OSError, ValueError, KeyError, ImportError, RuntimeError, TypeError) as e:
        raise ModelLoadError(_explain(spec, e)) from None
    try:
        model.to(dev)
    except (RuntimeError, AssertionError) as e:
        raise ModelLoadError(f"could not move {spec} to {dev}: {' '.join(str(e).split())[:200]}") from None
    model.eval()
    say("preparing the logit lens")
    parts = lens_parts(model)
    vocab = int(model.get_output_embeddings().weight.shape[0])
    eos = model.generation_config.eos_token_id if model.generation_config else None
    if eos is None:
        eos = tok.eos_token_id
    eos_ids = [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None]
    param = next(model.parameters())
    rev = getattr(model.config, "_commit_hash", None)
    say(f"loaded {spec} in {time.perf_counter() - t0:.1f}s")
    return LoadedModel(
        spec=spec,
        source=source,
        model=model,
        tokenizer=tok,
        revision=rev if isinstance(rev, str) else None,
        device=str(param.device),
        dtype=str(param.dtype).removeprefix("torch."),
        vocab_size=vocab,
        n_layers=parts.n_layers,
        eos_ids=eos_ids,
        lens=parts,
        vocab_bytes=vocab_bytes(tok, vocab),
    )
