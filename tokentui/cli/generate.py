"""`generate` and `score`: run a model headless and save the run.

Each command is two parts. The command checks everything it can before the model loads
(settings, lens options, the model path, the prompt or text; k against the vocabulary as soon as
the model's configuration is read) and loads the model. Then one job function drives the engine
and prints: `generate_job` / `score_job` are the only places that loop over the engine's events,
so they are what moves to the engine's shared jobs API."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer

from tokentui.cli.options import (
    CacheOpt,
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    KOpt,
    LensOpt,
    LensPrecisionOpt,
    ModelOpt,
    RemoteOpt,
    check_before_load,
    generation_options,
)
from tokentui.cli.output import Output, fail, progress, save_to_cache, user_errors
from tokentui.cli.text_input import ESCAPES_HELP, read_text
from tokentui.core.display import sanitize
from tokentui.core.params import GenerationSettings


def _load(model: str, device: str, dtype: str, trust_remote_code: bool, settings: GenerationSettings):
    """Load the model; `settings` (k) are checked against the configuration's vocabulary before the weights."""
    from tokentui.engine.hf.loading import load_model

    return load_model(model, device, dtype, trust_remote_code, progress=progress, check=settings.check)


@generation_options
def generate(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt text.")],
    model: ModelOpt = "demo",
    settings: GenerationSettings = None,  # the generation options (see options.GENERATION_OPTIONS)
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
    lens_chunk: LensOpt = 32,
    lens_precision: LensPrecisionOpt = "auto",
    cache_dir: CacheOpt = None,
) -> None:
    """Generate from a prompt, recording every token; print the stream and a stats table, save the run."""
    try:
        settings.check()
        check_before_load(model, dtype, lens_chunk, lens_precision)
        if not prompt.strip():
            fail("the prompt is empty")
        lm = _load(model, device, dtype, trust_remote_code, settings)
        generate_job(lm, prompt, settings, lens_chunk, lens_precision, cache_dir, as_json)
    except user_errors() as e:
        fail(str(e))


def generate_job(
    lm, prompt: str, settings: GenerationSettings, lens_chunk: int, lens_precision: str, cache_dir, as_json: bool
) -> None:
    """Generate on a loaded model and print as it goes: the coloured stream then the table, or
    (`as_json`) one JSONL record per position, the prompt's first, each once its layer values are
    in. Ctrl-C stops the generation and keeps what was made; the run is saved either way."""
    from tokentui.cli.render import paint, table, use_color
    from tokentui.core.display import safe_text
    from tokentui.engine.events import BranchStarted, Finished, LensEvent, StepEvent
    from tokentui.engine.hf.backend import HFBackend
    from tokentui.store.export import token_line

    out = Output()
    session = HFBackend(lm, lens_chunk, lens_precision, autosave=lambda r: save_to_cache(r, cache_dir))
    _ids, template = session.encode_prompt(prompt, settings.chat)
    run = session.new_run(prompt, settings.k, settings.chat, settings.sampling, template=template)
    forced = lm.tokenizer(settings.forced, add_special_tokens=False)["input_ids"] if settings.forced else []
    color = use_color() and not as_json
    waits_for_lens = session.lens_chunk > 1 and run.n_layers > 1  # records wait for their layer values
    pending: list[int] = []  # positions whose JSON records are not printed yet
    done = None

    def print_records(upto: int | None = None) -> None:
        while pending and (upto is None or pending[0] < upto):
            out.line(token_line(run, 0, run.step(0, pending.pop(0))))

    if not as_json:
        out.write(safe_text(prompt.encode()))
    cancel = threading.Event()
    events = session.generate(run, settings.sampling, cancel, forced)
    while True:
        try:
            for ev in events:
                if isinstance(ev, BranchStarted) and as_json:
                    pending.extend(range(ev.fork_position))  # the prompt's positions
                    print_records()
                elif isinstance(ev, StepEvent):
                    if as_json:
                        pending.append(ev.step.position)
                        if not waits_for_lens:
                            print_records()
                    else:
                        out.write(paint(safe_text(run.tokens.bytes_of(ev.step.token_id)), ev.step.prob, color))
                        out.flush()
                elif isinstance(ev, LensEvent) and as_json:
                    print_records(ev.start_position + len(ev.values))
                elif isinstance(ev, Finished):
                    done = ev
            break
        except KeyboardInterrupt:  # stop within one step; the loop drains the generator's end
            cancel.set()
            typer.echo("\n(interrupted: keeping the partial run)", err=True)
    print_records()
    path = save_to_cache(run, cache_dir)
    if as_json:
        typer.echo(f"run {run.id} saved to {sanitize(str(path))}", err=True)
    else:
        out.write("\n\n" + table(run, 0, run.branches[0].fork_position) + "\n")
        rate = f", {done.tokens_per_second:.1f} tokens/s" if done else ""
        status = done.status if done else "cancelled"
        out.line(f"\nrun {run.id} ({status}{rate}) saved to {sanitize(str(path))}")
    out.flush()


def score(
    model: ModelOpt = "demo",
    text: Annotated[
        str | None,
        typer.Option(
            "--text",
            help="Text to score, as given: a shell passes 'a\\nb' as a backslash and an n (see --text-escapes). "
            "'-' reads standard input.",
        ),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read the text from this file ('-': standard input).")
    ] = None,
    text_escapes: Annotated[
        bool, typer.Option("--text-escapes", help=f"Read {ESCAPES_HELP} in --text as the characters they name.")
    ] = False,
    alternatives: KOpt = 20,
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
    lens_precision: LensPrecisionOpt = "auto",
    cache_dir: CacheOpt = None,
) -> None:
    """Teacher-forced scoring: the same per-token records for every position of a given text."""
    try:
        k_only = GenerationSettings(k=alternatives)
        k_only.check()
        check_before_load(model, dtype, None, lens_precision)
        value = read_text(text, file, text_escapes)
        lm = _load(model, device, dtype, trust_remote_code, k_only)
        score_job(lm, value, alternatives, lens_precision, cache_dir, as_json)
    except user_errors() as e:
        fail(str(e))


def score_job(lm, text: str, k: int, lens_precision: str, cache_dir, as_json: bool) -> None:
    """Score `text` on a loaded model, save the run, print its records (JSONL) or its table and summary."""
    from tokentui.cli.render import table
    from tokentui.engine.hf.backend import HFBackend
    from tokentui.store.export import iter_steps, token_line

    out = Output()
    run = HFBackend(lm, lens_precision=lens_precision).score(text, k)
    path = save_to_cache(run, cache_dir)
    if as_json:
        for st in iter_steps(run, 0):
            out.line(token_line(run, 0, st))
        typer.echo(f"run {run.id} saved to {sanitize(str(path))}", err=True)
    else:
        from tokentui.core.metrics import summary

        out.line(table(run, 0, 0))
        s = summary(run.prompt.col("logprob"), run.prompt.col("entropy"))
        out.line(
            f"\n{s['tokens']} scored tokens · mean logprob {s['mean_logprob']:.3f} nats · "
            f"perplexity {s['perplexity']:.2f} · mean entropy {s['mean_entropy']:.3f} nats"
        )
        out.line(f"run {run.id} saved to {sanitize(str(path))}")
    out.flush()
