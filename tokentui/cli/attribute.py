"""`attribute`: gradient (or attention) attribution of tokens to the positions before them, headless
(issue 15, seed 004). Attributes positions of a saved run's branch, or the tokens generated greedily
from a prompt (a new run); shows progress on standard error, keeps the record with the run (saved
to the cache), prints a table per position (or JSONL with `--json`) and writes seed 004's JSON
with `--out`.

Everything that can be refused without the model is refused first: the method, --steps, the
positions, an --alternative id against the run's vocabulary, the prompt, the run and its branch,
the --out file. An --alternative text is refused once the tokenizer is loaded when it is not
exactly one token. Ctrl-C stops between two chunks of positions (integrated gradients: between two
path chunks); the positions finished are kept and saved (exit code 130)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tokentui.cli.options import CacheOpt, ChatOpt, DeviceOpt, DtypeOpt, RemoteOpt
from tokentui.cli.output import (
    Output,
    ProgressLine,
    StopThenInterrupt,
    autosave,
    ctrl_c_sets,
    exit_interrupted,
    fail,
    interrupted,
    load_ref,
    save_to_cache,
    usable_cache,
    user_errors,
)
from tokentui.core.display import counted, lone_token, sanitize
from tokentui.core.params import ATTRIBUTION_METHODS, DEFAULT_ATTRIBUTION, IG_STEPS, MAX_IG_STEPS, RunError, check_text

if TYPE_CHECKING:
    from tokentui.core.attribution import Attribution, Method
    from tokentui.core.run import Run
    from tokentui.engine.backend import Backend

METHOD_NAMES = ", ".join(ATTRIBUTION_METHODS)
TOP = 5  # contributors shown per position in the text table


def attribute(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Hub id, local model folder, a .gguf file, 'smollm2' or 'demo' (default: demo; with --run, its model).",
        ),
    ] = None,
    run_ref: Annotated[
        str | None, typer.Option("--run", help="Attribute tokens of this saved run (id, unique part of one, or path).")
    ] = None,
    branch: Annotated[int | None, typer.Option("--branch", "-b", help="With --run: the branch (0).")] = None,
    positions: Annotated[
        str | None,
        typer.Option(
            "--positions",
            help="With --run: absolute positions a:b (b excluded; either may be empty; negative counts from "
            "the end) or one position a (default: the tokens after the prompt).",
        ),
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option("--prompt", "-p", help="… or generate greedily from this prompt and attribute every new token."),
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option("--max-new-tokens", "-n", help="With --prompt: tokens to generate (64).")
    ] = None,
    chat: ChatOpt = False,
    method: Annotated[
        str,
        typer.Option("--method", help=f"One of: {METHOD_NAMES}."),
    ] = DEFAULT_ATTRIBUTION,
    alternative: Annotated[
        str | None,
        typer.Option(
            "--alternative",
            help="Contrast target log p(token) − log p(this): a token id, or a text that is exactly one token.",
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", help=f"Integrated gradients' path steps ({IG_STEPS})."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per attributed position instead.")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write seed 004's JSON to this file.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the --out file if it exists.")] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
    cache_dir: CacheOpt = None,
) -> None:
    """Attribute tokens to the positions before them (gradient norm, saliency, input × gradient,
    integrated gradients, attention); keep the result with the run and print it."""
    try:
        from tokentui.core import attribution
        from tokentui.core.params import GenerationSettings, SamplingParams
        from tokentui.engine.backend import ModelSpec
        from tokentui.store.export import ExportError, check_target, format_for

        m = attribution.method(method)
        method = m.name  # (inseq's spelling given: the run records tokentui's name)
        if steps is not None:
            if m.name != "integrated-gradients":
                fail("--steps goes with --method integrated-gradients")
            if not 1 <= steps <= MAX_IG_STEPS:
                fail(f"--steps must be 1…{MAX_IG_STEPS} (got {steps})")
        if alternative is not None and m.needs != "gradients":
            fail(f"--alternative needs a gradient method ({m.name} has no target to contrast)")
        alt_id = parse_alternative(alternative)
        if (prompt is None) == (run_ref is None):
            fail("give either --prompt or --run")
        run = None
        n_new = SamplingParams().max_new_tokens if max_new_tokens is None else max_new_tokens
        settings = GenerationSettings(SamplingParams(max_new_tokens=n_new), chat=chat)
        wanted: list[int] = []
        if prompt is not None:
            if branch is not None or positions is not None:
                fail("--branch and --positions go with --run")
            if not prompt.strip():
                fail("the prompt is empty")
            check_text(prompt, "the prompt")
            settings.check()
        else:
            assert run_ref is not None
            if max_new_tokens is not None or chat:
                fail("--max-new-tokens and --chat go with --prompt")
            run = load_ref(run_ref, cache_dir, grow=True)
            b = run.branch(branch or 0).id
            wanted = (
                parse_positions(positions, run.length(b), b) if positions is not None else default_positions(run, b)
            )
            if alt_id is not None and alt_id >= run.meta.vocab_size:
                fail(f"the alternative token id {alt_id} is outside the run's vocabulary (0…{run.meta.vocab_size - 1})")
        if out is not None:
            try:  # an extension that says another format (.csv, .jsonl) is refused, in attribute's words
                format_for(out, "seed004")
            except ExportError:
                raise ExportError(
                    f"--out {out.name}: attribute writes seed 004's JSON; give a .json file (or a name without "
                    "another format's extension)"
                ) from None
            check_target(out, force)
        name = model or (run.meta.model if run is not None else "demo")
        from tokentui.cli.generate import open_for_run

        usable_cache(cache_dir)
        backend = open_for_run(ModelSpec(name, device, dtype, trust_remote_code, 0), settings, run, model is not None)
        vocab = backend.info.vocab_size
        if alt_id is None and alternative is not None:
            alt_id = alternative_token(backend, alternative)
        if alt_id is not None and alt_id >= vocab:
            fail(f"the alternative token id {alt_id} is outside the vocabulary (0…{vocab - 1})")
        if run is None:
            assert prompt is not None
            run = generate_greedily(backend, prompt, settings, cache_dir)
            wanted = list(range(len(run.prompt), run.length(0)))
            if not wanted:
                fail("the model generated no tokens to attribute")
        seq = run.sequence(branch or 0)
        same = [p for p in wanted if alt_id is not None and int(seq[p]) == alt_id]
        if same:  # (its log p minus its own: a target of 0 and every score 0, said by nothing)
            fail(f"the alternative is the token itself at position {same[0]}: nothing to contrast (pick another)")
        attribute_job(
            backend,
            run,
            branch or 0,
            wanted,
            m.name,
            alt_id,
            steps or IG_STEPS,
            cache_dir,
            as_json,
            out,
            force,
        )
    except user_errors() as e:
        fail(str(e))
    except KeyboardInterrupt:  # before the attribution started (loading, generating): nothing attributed
        interrupted("interrupted before anything was attributed")


def parse_positions(spec: str, length: int, branch: int = 0) -> list[int]:
    """`--positions`: "a:b" (absolute positions a…b−1, Python slice bounds: either may be empty,
    a negative one counts from the branch's end) or one position "a". An empty start means 1 (the
    first position with anything before it). Every position must be 1…length−1; a bound outside
    the branch, or an empty range, is a one-line RunError (never clipped in silence)."""
    text = spec.strip()
    last = length - 1
    if not text:  # (an empty --positions '' took the default in silence)
        raise RunError("--positions is empty: give a:b, a: or :b (or leave it out: the tokens after the prompt)")

    def bound(part: str, default: int) -> int:
        part = part.strip()
        if not part:
            return default
        try:
            v = int(part)
        except ValueError:
            raise RunError(f"--positions {spec!r}: {part!r} is not a whole number (give a:b, a: or :b)") from None
        return v + length if v < 0 else v

    if ":" in text:
        a_text, _, b_text = text.partition(":")
        if ":" in b_text:
            raise RunError(f"--positions {spec!r}: give a:b (no step)")
        a, b = bound(a_text, 1), bound(b_text, length)
    else:
        a = bound(text, -1) if text else -1
        b = a + 1
    if a < 0:
        raise RunError(f"--positions {spec!r} starts before the start of branch {branch} (its positions are 0…{last})")
    if a < 1:
        raise RunError(
            f"--positions {spec!r}: position {a} cannot be attributed (nothing comes before it; the first is 1)"
        )
    if b > length or a > last:
        raise RunError(f"--positions {spec!r} goes past the end of branch {branch} (its positions are 0…{last})")
    if b <= a:
        raise RunError(f"--positions {spec!r} holds no position")
    return list(range(a, b))


def default_positions(run: Run, branch: int) -> list[int]:
    """The branch's tokens after the prompt; where there are none (a `score` run is all prompt),
    every position from 1."""
    length = run.length(branch)
    after = list(range(len(run.prompt), length))
    if after:
        return after
    if length < 2:
        raise RunError(f"branch {branch} holds {counted(length, 'token')}: nothing to attribute")
    return list(range(1, length))


def parse_alternative(text: str | None) -> int | None:
    """An --alternative that is a whole number is a token id; None for a text (encoded once the
    tokenizer is loaded) or no --alternative."""
    if text is None:
        return None
    if not text:
        raise RunError("--alternative is empty (give a token id or a text that is one token)")
    check_text(text, "--alternative")
    return int(text) if text.strip().isascii() and text.strip().isdigit() else None


def alternative_token(backend: Backend, text: str) -> int:
    """The one token `text` encodes to (without special tokens), or a one-line RunError."""
    ids = backend.encode_text(text)
    if len(ids) != 1:
        shown = ", ".join(map(str, ids[:6])) + (", …" if len(ids) > 6 else "")
        # (a number that is no token id, -1 or 4528.0, was read as text with no word of why)
        hint = " (a whole number from 0)" if _is_number(text) else ""
        raise RunError(
            f"--alternative {text!r} encodes to {len(ids)} tokens ({shown}), not one: give a token id{hint} "
            "or one token's text"
        )
    return ids[0]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def generate_greedily(backend: Backend, prompt: str, settings, cache_dir) -> Run:
    """A new run: greedy tokens from `prompt` (jobs.Generate), saved to the cache. Ctrl-C stops it
    and saves what was made; the command then ends (exit code 130) with nothing attributed."""
    from tokentui.engine import jobs

    typer.echo(f"… generating {counted(settings.sampling.max_new_tokens, 'token')} (greedy)", err=True)
    job = jobs.Generate(backend, prompt, settings)
    with ctrl_c_sets(job.cancel):
        jobs.drive(job, autosave(cache_dir))
    run = job.run
    if run is None or not run.branches:
        interrupted("interrupted before the prompt was scored: nothing saved")
    path = save_to_cache(run, cache_dir)
    if job.cancel.is_set():
        interrupted(
            f"interrupted while generating: run {sanitize(run.id)} saved to {sanitize(str(path))}, nothing attributed"
        )
    return run


def progress_text(done: int, total: int, label: str, fraction: float) -> str:
    return f"… attributing by {label}: {done}/{counted(total, 'position')}, {fraction:.0%}"


def attribute_job(
    backend: Backend,
    run: Run,
    branch: int,
    positions: list[int],
    method: str,
    alternative: int | None,
    steps: int,
    cache_dir,
    as_json: bool,
    out: Path | None,
    force: bool,
) -> None:
    """Drive an Attribute job: progress on standard error, the run saved with the record, then
    the record on standard output (a table, or JSONL), and seed 004's JSON in `out`."""
    from tokentui.core import attribution
    from tokentui.engine import jobs
    from tokentui.engine.events import Attributed, AttributionProgress

    m = attribution.method(method)
    # a chunk of positions takes up to a minute on a CPU: Ctrl-C says at once that it stops after
    # it (keeping the positions done), and a second stops now (a trial thought it hung)
    # (integrated gradients stops between groups of path points: its positions under way are dropped)
    what = (
        "stopping: the positions finished are kept, those under way dropped"
        if m.name == "integrated-gradients"
        else "stopping after the positions under way"
    )
    stop = StopThenInterrupt(f"tokentui: {what} (Ctrl-C again: now, keeping nothing)")
    job = jobs.Attribute(backend, run, branch, positions, method, alternative, steps, stop)
    line = ProgressLine()
    ended: list[Attributed] = []

    def show(_job: jobs.Job, ev) -> None:
        if isinstance(ev, AttributionProgress):
            line(progress_text(ev.done, ev.total, m.label, ev.fraction), final=ev.done == ev.total)
        elif isinstance(ev, Attributed):
            ended.append(ev)

    try:
        with ctrl_c_sets(job.cancel):
            line(progress_text(0, len(positions), m.label, 0.0))  # (from here Ctrl-C stops after a chunk)
            jobs.drive(job, autosave(cache_dir), show)
        rec = ended[-1].record if ended else None
        if line.tty and job.cancel.is_set():
            sys.stderr.write("\n")
        if rec is None:
            interrupted("interrupted before any position was attributed: nothing saved")
        _say_if_steered(run, branch, rec.positions)
        path = save_to_cache(run, cache_dir)
    except KeyboardInterrupt:
        # a second Ctrl-C: in the job, or just after it (the first one can end it at once, and from
        # there a Ctrl-C is Python's again: a trial's landed here and was called "before anything was
        # attributed"); or one that could not be redirected (not the main thread)
        threading.Event.set(job.cancel)  # (StopThenInterrupt.set would raise again)
        if ended and ended[-1].record is not None:  # (the autosave had kept it when `show` got it)
            interrupted(f"interrupted at once: the positions attributed are saved with run {sanitize(run.id)}")
        interrupted("interrupted at once: nothing saved")
    try:
        _print_record(run, rec, m, positions, branch, ended[-1].seconds, path, job.cancel.is_set(), as_json,
                      out, force)  # fmt: skip
    except KeyboardInterrupt:
        interrupted(f"interrupted: run {sanitize(run.id)} is saved with the positions attributed")


def _print_record(
    run: Run,
    rec: Attribution,
    m: Method,
    positions: list[int],
    branch: int,
    seconds: float,
    path: Path,
    cancelled: bool,
    as_json: bool,
    out: Path | None,
    force: bool,
) -> None:
    """The saved record on standard output (a table, or JSONL), seed 004's JSON in `out`, and the
    closing line; exit 130 when the job was cancelled."""
    from tokentui.store.export import attribution_rows, json_text, write_file

    stdout = Output()
    if as_json:
        for row in attribution_rows(run, rec):
            stdout.line(json_text(row))
    else:
        for text in table_lines(run, rec):
            stdout.line(text)
    stdout.flush()
    if out is not None:
        index = next(i for i, a in enumerate(run.attributions) if a is rec)
        written = write_file(run, "seed004", out, overwrite=force, attribution=index)
        typer.echo(f"wrote {sanitize(str(written))}", err=True)
    kept = (
        f"{len(rec.positions)} of {counted(len(positions), 'position')}"
        if cancelled
        else counted(len(rec.positions), "position")
    )
    typer.echo(
        f"run {sanitize(run.id)}: {kept} of branch {branch} attributed by {m.label}"
        f"{' (cancelled)' if cancelled else ''} in {seconds:.1f} s; saved to {sanitize(str(path))}",
        err=as_json,
    )
    if cancelled:
        exit_interrupted()


def _say_if_steered(run: Run, branch: int, positions: list[int]) -> None:
    """Attribution runs the model unsteered: say so when the branch made any of these tokens
    steered (their log p here is not the one they were chosen with)."""
    from tokentui.core.steering import steering_at

    steered = [p for p in positions if steering_at(run, branch, p) is not None]
    if steered:
        n, k = len(positions), len(steered)
        which = "the position was" if n == 1 else f"{k} of the {n} positions {'was' if k == 1 else 'were'}"
        typer.echo(
            f"note: {which} made steered; attribution runs the model unsteered, so {'its' if k == 1 else 'their'} "
            "log p and scores are the unsteered model's",
            err=True,
        )


def _tok(run: Run, token_id: int, width: int = 16) -> str:
    """The token in quotes, picked as Python's repr picks them: a lone apostrophe in double ones."""
    text = lone_token(run.tokens.bytes_of(token_id))
    q = '"' if "'" in text and '"' not in text else "'"
    return q + (text if len(text) <= width else text[: width - 1] + "…") + q


def table_lines(run: Run, rec: Attribution) -> list[str]:
    """The record as text: a header saying what was attributed and the target, then one line per
    attributed position: the position, its token (shown on its own: whitespace visible, controls
    escaped), the target's value, integrated gradients' completeness error, and the TOP largest
    |scores| as `pos 'token' score`."""
    from tokentui.core import attribution

    m = attribution.method(rec.method)
    seq = run.sequence(rec.branch)
    target = "log p(token)"
    if rec.alternative is not None:
        target = f"log p(token) − log p({_tok(run, rec.alternative)})"
    if m.needs == "attention":  # attention weights explain no target: the column is the token's log p
        target = "none (attention weights; the column: log p(token))"
    how = m.label + (f", {counted(rec.steps, 'step')}" if rec.steps else "")
    lines = [f"{how}; target {target}; branch {rec.branch} of run {sanitize(run.id)}"]
    ig = rec.completeness is not None
    lines.append(
        f"{'pos':>6}  {'token':<18} {'log p' if m.needs == 'attention' else 'target':>9}"
        + (f" {'complete err':>12}" if ig else "")
        + "  top contributors (pos 'token' score)"
    )
    for r, t in enumerate(rec.positions):
        row = rec.scores[r, :t]
        top = "   ".join(
            f"{i} {_tok(run, int(seq[i]), 12)} {float(row[i]):.4g}" for i in attribution.top_contributors(row, TOP)
        )
        value = float(rec.target_values[r]) if rec.target_values is not None else float("nan")
        err = f" {float(rec.completeness[r]):>12.3g}" if rec.completeness is not None else ""
        lines.append(f"{t:>6}  {_tok(run, rec.token_ids[r]):<18} {value:>9.4f}{err}  {top}")
    return lines
