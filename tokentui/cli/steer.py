"""Steering on the command line: `steer-vector` (a contrast vector from two prompt files),
`steer-compare` (the same prompt or text standard and steered, side by side), and
`load_steering`, which `generate`, `score` and `explore` use for their `--steer SPEC.toml`.

Everything that can be refused is refused before the weights load: a spec that is not valid
TOML, a field of the wrong type, a vector file that is missing, pickled or damaged, a layer the
model lacks or a vector of the wrong size (both read from the model's configuration)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokentui.cli.options import (
    CacheOpt,
    ChatOpt,
    DeviceOpt,
    DtypeOpt,
    LensOpt,
    LensPrecisionOpt,
    ModelOpt,
    RemoteOpt,
    generation_options,
)
from tokentui.cli.output import (
    Output,
    ProgressLine,
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
from tokentui.cli.text_input import ESCAPES_HELP, read_text
from tokentui.core.display import counted, sanitize
from tokentui.core.params import GenerationSettings, check_text

if TYPE_CHECKING:
    from tokentui.core.run import Run
    from tokentui.core.steer_compare import Comparison
    from tokentui.core.steering import SteeringSpec
    from tokentui.engine.backend import ModelSpec


def toml_string(text: str) -> str:
    """`text` as a TOML basic string that is also safe on a terminal: quotes and backslashes
    escaped, every control, format or separator character (Unicode Cc, Cf, Zl, Zp) as \\uXXXX or
    \\UXXXXXXXX, which TOML reads back as the same character."""
    import unicodedata

    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif unicodedata.category(ch) == "Cs":  # (a lone surrogate, from undecodable bytes: no TOML text names it)
            out.append("\ufffd")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\u{ord(ch):04X}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def spec_lines(vector_name: str, layer: int) -> list[str]:
    """The lines of a steering spec (TOML) that adds the vector file `vector_name` at `layer`."""
    return [f"vector = {toml_string(vector_name)}", f"layers = [{layer}]", "scale = 1.0"]


def vector_from(spec: Path, vector: Path) -> str:
    """How a spec at `spec` names the file `vector`: relative to the spec's folder (as specs read
    it), or absolute where no relative path leads there (another drive)."""
    import os

    try:
        relative = os.path.relpath(vector.resolve(), spec.resolve().parent)
    except ValueError:
        return str(vector.resolve())
    return f"./{relative}" if relative.startswith("~") else relative  # (a spec reads `~x/…` as user x's)


def load_steering(path: Path | None, spec: ModelSpec) -> SteeringSpec | None:
    """The `--steer` spec with its vector, checked against the model's configuration (layers,
    hidden size) before any weights load; None without `--steer`. Says on stderr what it steers."""
    if path is None:
        return None
    from tokentui.core.steering import describe, load_spec
    from tokentui.engine.hf.steering import check_before_load

    steering = load_spec(path)
    check_before_load(steering, spec.model, spec.trust_remote_code, progress)
    progress(describe(steering.record()))
    return steering


def steer_vector(
    positive: Annotated[Path, typer.Option("--positive", help="Prompts of one side: one per line (UTF-8).")],
    negative: Annotated[Path, typer.Option("--negative", help="Prompts of the other side: one per line.")],
    layer: Annotated[int, typer.Option("--layer", help="Layer 1…L: the output of block N (the lens's numbering).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The vector file to write (.safetensors).")],
    model: ModelOpt = "demo",
    position: Annotated[
        str,
        typer.Option(
            "--position",
            help="How a prompt's hidden states become one: mean (over positions 1…n−1; a one-token prompt: its "
            "only position) or last (the last position).",
        ),
    ] = "mean",
    chat: ChatOpt = False,
    spec_out: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help="Also write a steering spec (TOML) naming the vector here, for --steer (else it is printed on "
            "standard output).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the --out (and --spec) file if it exists.")] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
) -> None:
    """Compute a contrast vector: the mean hidden state at --layer over the --positive prompts minus
    the mean over the --negative prompts; saved as a .safetensors file a steering spec can name."""
    from tokentui.core.steering import CONTRAST_POSITIONS, SteeringError, read_prompts, save_vector

    try:
        from tokentui.engine.backend import ModelSpec, check_spec, open_backend
        from tokentui.store.export import check_target

        if position not in CONTRAST_POSITIONS:
            raise SteeringError(f"unknown --position {position!r} (choose from {', '.join(CONTRAST_POSITIONS)})")
        if layer < 1:
            raise SteeringError(f"--layer must be ≥ 1 (got {layer}; 1 is the output of the first block)")
        if out.suffix.lower() != ".safetensors":
            raise SteeringError(f"--out {out.name}: a steering vector is written as a .safetensors file")
        check_target(out, force)
        # (refused before the model loads: `> spec.toml` emptied an existing spec, refused or not)
        if spec_out is not None:
            if spec_out.suffix.lower() != ".toml":  # (--spec v.safetensors, with --force, replaced the vector)
                raise SteeringError(f"--spec {spec_out.name}: a steering spec is written as a .toml file")
            check_target(spec_out, force)
        pos, neg = read_prompts(positive), read_prompts(negative)
        spec = ModelSpec(model, device, dtype, trust_remote_code, 0)
        check_spec(spec)
        from tokentui.engine.hf.steering import check_layer_before_load, contrast_vector

        check_layer_before_load(layer, model, trust_remote_code, progress)
        with ctrl_c_not_lost():
            backend = open_backend(spec, progress, chat)
        line = ProgressLine()
        import threading

        cancel = threading.Event()
        with ctrl_c_sets(cancel):
            try:
                vector = contrast_vector(
                    backend,
                    pos,
                    neg,
                    layer,
                    position,
                    chat,
                    lambda done, total: line(f"… steer-vector: {done}/{counted(total, 'prompt')}", final=done == total),
                    cancel,
                )
            except KeyboardInterrupt:
                interrupted("interrupted: no vector written")
        import numpy as np

        from tokentui import __version__

        meta = {
            "format": "tokentui-steering-vector",
            "model": backend.info.name,
            "layer": str(layer),
            "position": position,
            "chat": str(chat).lower(),
            "positive": positive.name,
            "negative": negative.name,
            "n_positive": str(len(pos)),
            "n_negative": str(len(neg)),
            "tool_version": __version__,
        }
        check_target(out, force)
        sha = save_vector(out, vector, meta)
        norm = float(np.linalg.norm(vector.astype(np.float64)))
        # the summary on stderr, the spec alone on stdout: `steer-vector … > happy.toml` writes a
        # spec ready to use (a trial's redirect caught the summary too: not TOML)
        typer.echo(
            f"wrote {sanitize(str(out))}: {counted(vector.size, 'value')}, ‖v‖ = {norm:.4g}, layer {layer} "
            f"({position}), {counted(len(pos), 'positive prompt')} − {counted(len(neg), 'negative prompt')}, "
            f"sha256 {sha}",  # (whole: what sha256sum prints, and a spec records)
            err=True,
        )
        if norm == 0:  # (the same prompts on both sides, say: written, as asked, but it steers nothing)
            typer.echo("warning: the vector is zero (both sides have the same mean): steering with it changes nothing",
                       err=True)  # fmt: skip
        if spec_out is None:
            typer.echo("a spec using it (standard output; save it as a .toml file in the vector's folder):", err=True)
            typer.echo("\n".join(spec_lines(out.name, layer)))
        else:
            from tokentui.store.export import write_text

            write_text(spec_out, "\n".join(spec_lines(vector_from(spec_out, out), layer)) + "\n", force)
            typer.echo(
                f"wrote {sanitize(str(spec_out))}: a spec using it (--steer {sanitize(str(spec_out))})", err=True
            )
    except user_errors() as e:
        fail(str(e))
    except KeyboardInterrupt:
        interrupted("interrupted: no vector written")


@generation_options
def steer_compare(
    steer: Annotated[Path, typer.Option("--steer", help="The steering spec (TOML) to compare against no steering.")],
    model: ModelOpt = "demo",
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help="Generate from this prompt, standard and steered.")
    ] = None,
    text: Annotated[
        str | None, typer.Option("--text", help="… or teacher-force this text, standard and steered ('-': stdin).")
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="… or the text of this file ('-': stdin).")] = None,
    text_escapes: Annotated[
        bool, typer.Option("--text-escapes", help=f"Read {ESCAPES_HELP} in --text as the characters they name.")
    ] = False,
    settings: GenerationSettings | None = None,  # the generation options (see options.GENERATION_OPTIONS)
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="One JSON object per compared position (its standard, steered, difference and "
            "percent_change values) and a summary object last, instead of the table.",
        ),
    ] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
    lens_chunk: LensOpt = 32,
    lens_precision: LensPrecisionOpt = "auto",
    cache_dir: CacheOpt = None,
) -> None:
    """The same prompt (or text) run standard and steered: one run with two branches (0 standard,
    1 steered), the streams with their divergence point and every measure's difference per token."""
    assert settings is not None  # @generation_options passes it
    try:
        from tokentui.core.params import RunError, SamplingParams
        from tokentui.engine.backend import ModelSpec, check_settings, check_spec, open_backend

        settings.check()
        if sum(x is not None for x in (prompt, text, file)) != 1:
            raise RunError("give exactly one of --prompt, --text or --file")
        if prompt is None and (settings.sampling != SamplingParams() or settings.forced):
            raise RunError("a text is scored, not generated: the generation options (-n, -t, --top-k, --top-p, "
                           "--seed, --stop, --force) go with --prompt")  # fmt: skip
        if prompt is not None and text_escapes:
            raise RunError("--text-escapes goes with --text or --file")
        if prompt is not None and not prompt.strip():
            raise RunError("the prompt is empty")
        if prompt is not None:
            check_text(prompt, "the prompt")
        value = None if prompt is not None else read_text(text, file, text_escapes)
        spec = ModelSpec(model, device, dtype, trust_remote_code, lens_chunk, lens_precision)
        check_spec(spec)
        steering = load_steering(steer, spec)
        assert steering is not None
        check_settings(spec, settings, progress)
        usable_cache(cache_dir)
        with ctrl_c_not_lost():
            backend = open_backend(spec, progress, settings.chat)
        compare_job(backend, steering, prompt, value, settings, cache_dir, as_json)
    except user_errors() as e:
        fail(str(e))
    except KeyboardInterrupt:
        interrupted("interrupted before anything was generated: nothing saved")


def compare_job(
    backend, steering: SteeringSpec, prompt: str | None, text: str | None, settings, cache_dir, as_json: bool
) -> None:
    """Drive a SteerCompare job (progress on stderr), save the run, print the comparison (or its
    JSON lines). Ctrl-C keeps what was made: saved, exit code 130."""
    from tokentui.core.steer_compare import compare
    from tokentui.engine import jobs
    from tokentui.engine.events import BranchStarted, StepEvent

    job = jobs.SteerCompare(backend, steering, prompt=prompt, settings=settings, text=text)
    line = ProgressLine()
    counts: dict[int, int] = {}

    def show(_job: jobs.Job, ev: Any) -> None:
        if isinstance(ev, BranchStarted):
            counts[ev.branch_id] = 0
        elif isinstance(ev, StepEvent):
            counts[ev.branch_id] = counts.get(ev.branch_id, 0) + 1
            which = "steered" if ev.branch_id else "standard"
            line(f"… {which}: {counted(counts[ev.branch_id], 'token')}")

    with ctrl_c_sets(job.cancel):
        jobs.drive(job, autosave(cache_dir), show)
    if counts:
        line("… done", final=True)
    run = job.run
    if run is None or not run.branches:
        interrupted("interrupted before the prompt was scored: nothing saved")
    path = save_to_cache(run, cache_dir)
    out = Output()
    if len(run.branches) < 2:
        typer.echo(
            f"(cancelled before the steered branch: run {sanitize(run.id)} saved to {sanitize(str(path))})", err=True
        )
        exit_interrupted()
    c = compare(run, 1)
    with printing_saved(f"run {sanitize(run.id)} is saved to {sanitize(str(path))}"):
        if as_json:
            for rec in comparison_records(run, c):
                out.line(rec)
            typer.echo(f"run {sanitize(run.id)} saved to {sanitize(str(path))}", err=True)
        else:
            for text_line in comparison_lines(run, c):
                out.line(text_line)
            out.line(
                f"\nrun {sanitize(run.id)} (branch 0 standard, branch 1 steered) saved to {sanitize(str(path))}; "
                f"seed 001's files: tokentui export {sanitize(run.id)} --format seed001-comparative -o DIR"
            )
        out.flush()
    if job.cancel.is_set():
        typer.echo("(cancelled: keeping the partial run)", err=True)
        exit_interrupted()


def _token(run: Run, token_id: int) -> str:
    from tokentui.core.display import decode_bytes

    return decode_bytes(run.tokens.bytes_of(int(token_id)))


def _plain(x: Any) -> Any:
    """A numpy value or row as JSON-ready numbers (integers stay integers)."""
    import numpy as np

    a = np.asarray(x)
    if a.ndim:
        return [_plain(v) for v in a]
    return int(a) if a.dtype.kind in "iu" else float(a)


def comparison_records(run: Run, c: Comparison) -> list[str]:
    """`steer-compare --json`: one JSON line per compared position — position, diverged (at or
    after the divergence point), standard and steered (token_id, token and every compared
    measure: one number, or a list over layers 1…L), difference and percent_change per measure —
    then one summary line (`"summary": true`)."""
    import numpy as np

    from tokentui.store.export import json_text

    lines = []
    for i, p in enumerate(c.positions.tolist()):
        rec: dict[str, Any] = {"run_id": run.id, "position": p}
        rec["diverged"] = c.divergence is not None and p >= c.divergence
        for side, ids, values in (
            ("standard", c.standard_ids, c.standard_values),
            ("steered", c.steered_ids, c.steered_values),
        ):
            rec[side] = {"token_id": int(ids[i]), "token": _token(run, int(ids[i]))}
            rec[side].update({m.name: _plain(_cast(m.dtype, values[m.name][i])) for m in c.measures})
        rec["difference"] = {m.name: _plain(_cast(m.dtype, c.difference(m.name)[i])) for m in c.measures}
        rec["percent_change"] = {m.name: _plain(c.percent_change(m.name)[i]) for m in c.measures}
        lines.append(json_text(rec))
    with np.errstate(all="ignore"):
        means = {m.name: _plain(_nanmean(c.difference(m.name))) for m in c.measures}
    summary = {
        "summary": True,
        "run_id": run.id,
        "standard_branch": c.standard,
        "steered_branch": c.steered,
        "positions": len(c),
        "divergence": c.divergence,
        "steering": c.steered_steering,
        "mean_difference": means,
    }
    lines.append(json_text(summary))
    return lines


def _cast(dtype: str, value: Any) -> Any:
    import numpy as np

    a = np.asarray(value)
    if dtype == "int32" and np.isfinite(a).all():
        return a.astype(np.int64)
    return a


def _nanmean(a: Any) -> Any:
    """Mean over positions of the finite values (per layer for [n, L]); NaN where none."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a)
    n = finite.sum(0)
    total = np.where(finite, a, 0.0).sum(0)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def comparison_lines(run: Run, c: Comparison) -> list[str]:
    """The comparison for a terminal: what steered it, the prompt and the two streams (control
    characters escaped), the divergence point, a per-token table (Δ of log-prob, entropy and rank,
    ≠ where the tokens differ) and the mean difference per layer of each per-layer measure."""
    from tokentui.core.display import lone_token, safe_text
    from tokentui.core.steering import describe

    start = int(c.positions[0])
    lines = [describe(c.steered_steering)]
    lines.append("prompt:   " + _one_line(safe_text(run.tokens.text(run.sequence(c.standard)[:start].tolist()))))
    lines.append("standard: " + _one_line(safe_text(run.text(c.standard, start))))
    lines.append("steered:  " + _one_line(safe_text(run.text(c.steered, start))))
    if c.divergence is None:
        lines.append(
            "          the same token at the one compared position"
            if len(c) == 1
            else f"          the same tokens at all {len(c)} positions"
        )
    else:
        i = int(c.divergence - start)
        a, b = (lone_token(run.tokens.bytes_of(int(x[i]))) for x in (c.standard_ids, c.steered_ids))
        lines.append(f"          diverge at position {c.divergence} ({i + 1}. compared token): {a} → {b}")
    scalars = [n for n in ("logprob", "entropy", "rank") if n in c.names]
    head = f"\n{'pos':>5}  {'standard':<16} {'steered':<16}" + "".join(f" {'Δ' + n:>10}" for n in scalars)
    lines.append(head)
    for i, p in enumerate(c.positions.tolist()):
        a = lone_token(run.tokens.bytes_of(int(c.standard_ids[i])))[:16]
        b = lone_token(run.tokens.bytes_of(int(c.steered_ids[i])))[:16]
        mark = "≠" if c.standard_ids[i] != c.steered_ids[i] else " "
        cells = "".join(f" {float(c.difference(n)[i]):>10.4g}" for n in scalars)
        lines.append(f"{p:>5}{mark} {a:<16} {b:<16}{cells}")
    for m in c.measures:
        if m.shape == ("layer",):
            means = _nanmean(c.difference(m.name))
            per = "  ".join(f"{j + 1}: {float(v):+.3g}" for j, v in enumerate(means))
            lines.append(f"mean Δ {m.name} ({m.unit}) by layer: {per}")
    return lines


def _one_line(text: str, limit: int = 2000) -> str:
    text = text.replace("\n", "↵").replace("\t", "→")
    return text if len(text) <= limit else text[:limit] + "…"
