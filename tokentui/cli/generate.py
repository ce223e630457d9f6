"""`generate` and `score`: run a model headless and save the run.

Each command is two parts. The command checks everything it can before the model loads
(settings, lens options, the model path, the prompt or text; k against the vocabulary as soon as
the model's configuration is read) and opens the backend. Then one function per command drives
the engine's job (`tokentui.engine.jobs`) and prints what it yields: `generate_job` and
`score_job` are the CLI's only contact with the events."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tokentui.cli.options import (
    AttentionEntropyOpt,
    CacheOpt,
    DeviceOpt,
    DtypeOpt,
    FileOpt,
    JsonOpt,
    KOpt,
    LensOpt,
    LensPrecisionOpt,
    LensTopOpt,
    ModelOpt,
    RemoteOpt,
    SteerOpt,
    TextEscapesOpt,
    TextOpt,
    generation_options,
)
from tokentui.cli.output import (
    Output,
    ProgressLine,
    StopThenInterrupt,
    autosave,
    ctrl_c_not_lost,
    ctrl_c_sets,
    exit_interrupted,
    fail,
    interrupted,
    printing_saved,
    progress,
    save_to_cache,
    usable_cache,
    user_errors,
)
from tokentui.cli.text_input import read_text
from tokentui.core.display import sanitize
from tokentui.core.params import GenerationSettings, RunError, check_text

if TYPE_CHECKING:
    from tokentui.core.run import Run
    from tokentui.engine.backend import Backend, ModelSpec


def _open(spec: ModelSpec, settings: GenerationSettings) -> Backend:
    """The model's backend, once `settings` (k) passed against the configuration's vocabulary:
    that refusal comes before the weights are read."""
    from tokentui.engine.backend import check_settings, open_backend

    check_settings(spec, settings, progress)
    with ctrl_c_not_lost():
        return open_backend(spec, progress, settings.chat)


def open_for_run(spec: ModelSpec, settings: GenerationSettings, run: Run | None, named: bool) -> Backend:
    """`_open` for a command that works on a saved run (`run`; None: on a new prompt). A model
    taken from the run (`named` False: no --model given) that does not load gets the reason along:
    a run keeps a local model's folder name only. A model that did not make the run (another
    name, vocabulary, layer count or tokenizer: `Backend.check_run`) is refused in one line."""
    from tokentui.engine.backend import check_spec

    if not named and run is not None and not recorded_model_name(spec.model):
        fail(
            f"run {run.id} names the model {sanitize(spec.model)!r}, which is not a name tokentui records "
            "(a Hub id, demo, smollm2, or a folder's or GGUF file's name): give the model with --model"
        )
    try:
        check_spec(spec)
        here = None if named or run is None else _local_folder(spec.model)
        if here is not None:  # (the run keeps a folder's name only: one of that name here is taken, and said so)
            progress(f"the run names the model {sanitize(spec.model)}: taking the folder {sanitize(str(here))} "
                     "(--model for another)")  # fmt: skip
        backend = _open(spec, settings)
    except user_errors() as e:
        if not named and run is not None:
            fail(f"{e} (the model run {run.id} names; give its folder with --model)")
        raise
    if run is not None:
        try:
            backend.check_run(run)
        except user_errors() as e:
            fail(f"run {run.id}: {e}")
    return backend


def recorded_model_name(model: str) -> bool:
    """Whether `model` can be what a run records as its model — a Hub id (`org/name`), `demo`,
    `smollm2`, a folder's or a GGUF file's name (any characters) — rather than a path: a run file
    from someone else naming `/somewhere/model`, `~/x` or `../../x` would otherwise decide what is
    read here."""
    parts = model.split("/")
    return (
        bool(model)
        and len(parts) <= 2
        and all(p not in ("", ".", "..") for p in parts)
        and not model.startswith("~")
        and not any(c in model for c in ("\\", ":", "\0"))
    )


def _local_folder(model: str) -> Path | None:
    """The folder `model` names when it loads as a local folder (not "demo", a GGUF or a Hub id)."""
    from tokentui.engine.hf.loading import resolve_source

    folder = Path(model)
    if not folder.is_dir():
        return None
    return folder.resolve() if Path(resolve_source(model)).resolve() == folder.resolve() else None


@generation_options
def generate(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt text.")],
    model: ModelOpt = "demo",
    settings: GenerationSettings | None = None,  # the generation options (see options.GENERATION_OPTIONS)
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
    lens_chunk: LensOpt = 32,
    lens_precision: LensPrecisionOpt = "auto",
    cache_dir: CacheOpt = None,
    steer: SteerOpt = None,
) -> None:
    """Generate from a prompt, recording every token; print the stream and a stats table, save the run."""
    assert settings is not None  # @generation_options passes it
    try:
        from tokentui.engine.backend import ModelSpec, check_spec

        settings.check()
        spec = ModelSpec(model, device, dtype, trust_remote_code, lens_chunk, lens_precision)
        check_spec(spec)
        if not prompt.strip():
            fail("the prompt is empty")
        check_text(prompt, "the prompt")
        from tokentui.cli.steer import load_steering

        steering = load_steering(steer, spec)
        usable_cache(cache_dir)
        backend = _open(spec, settings)
        generate_job(backend, prompt, settings, lens_chunk, cache_dir, as_json, steering)
    except user_errors() as e:
        fail(str(e))
    except KeyboardInterrupt:  # before the generation started (loading): nothing to save
        interrupted("interrupted before anything was generated: nothing saved")


def generate_job(
    backend, prompt: str, settings: GenerationSettings, lens_chunk: int, cache_dir, as_json: bool, steering=None
) -> None:
    """Drive a Generate job and print as it goes: the coloured stream then the table, or
    (`as_json`) one JSONL record per position, the prompt's first, each once its layer values are
    in. Ctrl-C stops the generation within a step and keeps what was made: the run is saved with
    the branch's status "cancelled" and the command exits with code 130 (it is saved either way,
    and autosaved while it grows)."""
    from tokentui.cli.render import paint, table, use_color
    from tokentui.core.display import safe_text
    from tokentui.engine import jobs
    from tokentui.engine.events import BranchStarted, Finished, LensEvent, Progress, StepEvent
    from tokentui.store.export import token_line

    out = Output()
    # the first Ctrl-C stops after this token, then the lens catches up on the last tokens (seconds
    # on a CPU with a large vocabulary); a second stops at once, saving the run without those
    stop = StopThenInterrupt("tokentui: stopping after this token (Ctrl-C again: at once, without the lens of "
                             "the last tokens)", keep_line=not as_json)  # (below the tokens streamed)  # fmt: skip
    job = jobs.Generate(backend, prompt, settings, cancel=stop, steering=steering)
    color = None if as_json else use_color()
    # records wait for their layer values when the lens runs in chunks
    waits_for_lens = lens_chunk > 1 and backend.capabilities.lens and backend.info.n_layers > 1
    pending: list[int] = []  # positions (of the root branch) whose records are not printed yet
    done: list[Finished] = []
    lens_line = ProgressLine()

    def print_records(upto: int | None = None) -> None:
        run = job.run
        assert run is not None  # records are printed once the run has started
        while pending and (upto is None or pending[0] < upto):
            out.line(token_line(run, 0, run.step(0, pending.pop(0))))

    def show(job: jobs.Job, ev) -> None:
        if isinstance(ev, BranchStarted) and as_json:
            pending.extend(range(ev.fork_position))  # the prompt's positions
            print_records()
        elif isinstance(ev, BranchStarted) and ev.parent is None:
            # (the job took the prompt: a refused one is never printed; in a chat the answer is
            # another message, so it starts on its own line)
            out.write(safe_text(prompt.encode()) + ("\n" if settings.chat else ""))
        elif isinstance(ev, StepEvent):
            if as_json:
                pending.append(ev.step.position)
                if not waits_for_lens:
                    print_records()
            elif job.run is not None:
                out.write(paint(safe_text(job.run.tokens.bytes_of(ev.step.token_id)), ev.step.prob, color))
                out.flush()
        elif isinstance(ev, LensEvent) and as_json:
            print_records(ev.start_position + len(next(iter(ev.values.values()))))
        elif isinstance(ev, Finished):
            print_records()
            done.append(ev)
        elif isinstance(ev, Progress) and ev.fraction is not None:  # a long prompt's lens: one line
            lens_line(f"… {sanitize(ev.message)}", final=ev.fraction >= 1.0)
        elif isinstance(ev, Progress):  # (the context cuts the generation short: said before it starts)
            lens_line.close()
            typer.echo(f"… {sanitize(ev.message)}", err=True)

    try:
        with ctrl_c_sets(job.cancel):
            jobs.drive(job, autosave(cache_dir, keep_line=not as_json), show)
    except KeyboardInterrupt:  # a second Ctrl-C (or one that could not be redirected: not the main thread)
        threading.Event.set(job.cancel)  # (StopThenInterrupt.set would raise again)
        if job.run is not None and job.run.branches and job.run.branches[-1].status in ("running", "length"):
            job.run.branches[-1].status = "cancelled"
        if job.run is not None and job.run.branches:
            try:
                job.run.validate()  # (stopped mid-step: a run that would not load is not saved)
            except RunError:
                interrupted("interrupted at once: the run as last autosaved is kept")
    run = job.run
    if job.cancel.is_set():
        typer.echo("\n(cancelled: keeping the partial run)", err=True)
    if run is None or not run.branches:
        interrupted("interrupted before the prompt was scored: nothing saved")
    if as_json:
        print_records()
    path = save_to_cache(run, cache_dir)
    with printing_saved(f"run {sanitize(run.id)} is saved to {sanitize(str(path))}"):
        # (the same closing line with --json, on stderr: it said neither how the run ended nor its rate)
        rate = f", {done[-1].tokens_per_second:.1f} tokens/s" if done and done[-1].tokens_per_second else ""
        closing = f"run {sanitize(run.id)} ({run.branches[0].status}{rate}) saved to {sanitize(str(path))}"
        if as_json:
            typer.echo(closing, err=True)
        else:
            out.write("\n\n" + table(run, 0, run.branches[0].fork_position) + "\n")
            out.line("\n" + closing)
        out.flush()
    if job.cancel.is_set():
        exit_interrupted()


def score(
    model: ModelOpt = "demo",
    text: TextOpt = None,
    file: FileOpt = None,
    text_escapes: TextEscapesOpt = False,
    alternatives: KOpt = 20,
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
    lens_chunk: Annotated[
        int, typer.Option("--lens-chunk", help="0 turns the logit lens off (any other value: every position).")
    ] = 32,
    lens_precision: LensPrecisionOpt = "auto",
    lens_top: LensTopOpt = GenerationSettings.k_lens,
    attention_entropy: AttentionEntropyOpt = False,
    cache_dir: CacheOpt = None,
    steer: SteerOpt = None,
) -> None:
    """Teacher-forced scoring: the same per-token records for every position of a given text."""
    try:
        k_only = GenerationSettings(k=alternatives, k_lens=lens_top, attention_entropy=attention_entropy)
        k_only.check()
        from tokentui.engine.backend import ModelSpec, check_spec

        spec = ModelSpec(model, device, dtype, trust_remote_code, lens_chunk, lens_precision)
        check_spec(spec)
        value = read_text(text, file, text_escapes)
        from tokentui.cli.steer import load_steering

        steering = load_steering(steer, spec)
        usable_cache(cache_dir)
        backend = _open(spec, k_only)
        score_job(backend, value, alternatives, cache_dir, as_json, k_only, steering)
    except user_errors() as e:
        fail(str(e))
    except KeyboardInterrupt:
        interrupted("interrupted: nothing saved")


def score_job(
    backend, text: str, k: int, cache_dir, as_json: bool, settings: GenerationSettings | None = None, steering=None
) -> None:
    """Drive a Score job, save the run, print its records (JSONL) or its table and summary."""
    from tokentui.cli.render import table
    from tokentui.engine import jobs
    from tokentui.store.export import iter_steps, token_line

    out = Output()
    line = ProgressLine()  # (a long text's logit lens: a trial waited 95 s without a line)
    job = jobs.Score(backend, text, k, settings=settings, steering=steering,
                     progress=lambda text, fraction: line(f"… {text}", final=fraction >= 1.0))  # fmt: skip
    jobs.drive(job)
    line.close()
    run = job.run
    assert run is not None  # the score job made it
    path = save_to_cache(run, cache_dir)
    with printing_saved(f"run {sanitize(run.id)} is saved to {sanitize(str(path))}"):
        if as_json:
            for st in iter_steps(run, 0):
                out.line(token_line(run, 0, st))
            typer.echo(f"run {sanitize(run.id)} saved to {sanitize(str(path))}", err=True)
        else:
            from tokentui.core.metrics import summary

            out.line(table(run, 0, 0))
            s = summary(run.prompt.col("logprob"), run.prompt.col("entropy"))
            out.line(
                f"\n{s['tokens']} scored tokens · mean logprob {s['mean_logprob']:.3f} nats · "
                f"perplexity {s['perplexity']:.2f} · mean entropy {s['mean_entropy']:.3f} nats"
            )
            out.line(f"run {sanitize(run.id)} saved to {sanitize(str(path))}")
        out.flush()
