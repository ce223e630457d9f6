"""The `tokentui` command line (Typer). Thin: flags become calls; heavy imports stay inside the
command bodies so `runs`, `export` and `--help` start fast and work without torch."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="tokentui",
    help="Watch, question and branch a causal language model's writing, token by token.",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="List or remove cached runs.", add_completion=False, rich_markup_mode=None)
app.add_typer(runs_app, name="runs")

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Hub id, local model folder, or 'demo' (bundled).")]
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
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line per token instead of the table.")]
MaxTokOpt = Annotated[int, typer.Option("--max-new-tokens", "-n", help="Tokens to generate.")]
TempOpt = Annotated[float, typer.Option("--temperature", "-t", help="0 = greedy (default); > 0 samples.")]
TopKOpt = Annotated[int, typer.Option("--top-k", help="Sample only among the k most likely tokens (0 = off).")]
TopPOpt = Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass (1 = off).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for sampling (reproducible runs).")]
ChatOpt = Annotated[bool, typer.Option("--chat", help="Wrap the prompt in the tokenizer's chat template.")]
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


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"tokentui: error: {message}", err=True)
    raise typer.Exit(code)


def _errors():
    """The exception types that end a command with a one-line message."""
    from tokentui.core.run import RunError
    from tokentui.engine.errors import EngineError  # no torch behind it
    from tokentui.store.header import RunFileError

    return (RunError, RunFileError, EngineError, OSError)


def _use_color() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


# Uncertainty (1 - p) → 256-colour code, from calm blue to hot orange (colour-blind safe order).
_SCALE = (39, 75, 187, 214, 202)


def _paint(text: str, prob: float, color: bool) -> str:
    if not color or prob != prob:
        return text
    level = min(4, int((1.0 - prob) * 5))
    return f"\x1b[38;5;{_SCALE[level]}m{text}\x1b[0m"


def _progress(msg: str) -> None:
    typer.echo(f"… {msg}", err=True)


def _check_lens_precision(precision: str) -> None:
    from tokentui.engine.hf.loading import LENS_PRECISIONS

    if precision not in LENS_PRECISIONS:
        fail(f"unknown lens precision {precision!r} (choose from {', '.join(LENS_PRECISIONS)})")


def _load(model: str, device: str, dtype: str, trust_remote_code: bool):
    from tokentui.engine.hf.loading import load_model

    return load_model(model, device, dtype, trust_remote_code, progress=_progress)


def _table(run, branch_id: int, start: int) -> str:
    from tokentui.core.display import sanitize

    k_show = min(3, run.k)
    lines = [f"{'pos':>5}  {'token':<16} {'prob':>7} {'logprob':>8} {'rank':>6} {'entropy':>7}  top alternatives"]
    for pos in range(start, run.length(branch_id)):
        st = run.step(branch_id, pos)
        alts = "  ".join(
            f"{run.tokens.display(int(i))!s:.12} {float(lp):.2f}"
            for i, lp in zip(st.topk_ids[:k_show], st.topk_logprobs[:k_show])
            if i >= 0
        )
        tok = sanitize(run.tokens.display(st.token_id))[:16]
        rank = str(st.rank) if st.rank else "-"
        lines.append(f"{pos:>5}  {tok:<16} {st.prob:>7.4f} {st.logprob:>8.3f} {rank:>6} {st.entropy:>7.3f}  {alts}")
    return "\n".join(lines)


def _save(run, cache_dir: Path | None) -> Path:
    from tokentui.store.cache import cache_dir as resolve_dir
    from tokentui.store.cache import run_path
    from tokentui.store.runfile import save_run

    return save_run(run, run_path(run.id, resolve_dir(cache_dir)))


@app.command()
def generate(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt text.")],
    model: ModelOpt = "demo",
    max_new_tokens: MaxTokOpt = 64,
    temperature: TempOpt = 0.0,
    top_k: TopKOpt = 0,
    top_p: TopPOpt = 1.0,
    seed: SeedOpt = None,
    alternatives: KOpt = 20,
    chat: ChatOpt = False,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="Stop when this text appears (repeatable).")] = None,
    force: Annotated[str, typer.Option("--force", help="Forced prefix: the answer starts with this text.")] = "",
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
    lens_chunk: LensOpt = 32,
    lens_precision: LensPrecisionOpt = "auto",
    cache_dir: CacheOpt = None,
) -> None:
    """Generate from a prompt, recording every token; print the stream and a stats table, save the run."""
    import json
    import threading

    from tokentui.core.display import safe_text
    from tokentui.core.run import SamplingParams
    from tokentui.engine.events import Finished, LensEvent, StepEvent

    try:
        params = SamplingParams(temperature, top_k, top_p, seed, max_new_tokens, list(stop or []))
        params.check()
        _check_lens_precision(lens_precision)
        lm = _load(model, device, dtype, trust_remote_code)
        from tokentui.engine.hf.backend import HFBackend
        from tokentui.store.export import step_record

        session = HFBackend(lm, lens_chunk, lens_precision, autosave=lambda r: _save(r, cache_dir))
        ids, template = session.encode_prompt(prompt, chat)
        run = session.new_run(prompt, alternatives, chat, params, template=template)
        forced = lm.tokenizer(force, add_special_tokens=False)["input_ids"] if force else []
        color = _use_color() and not as_json
        cancel = threading.Event()
        pending: list = []
        done = None
        if not as_json:
            sys.stdout.write(safe_text(prompt.encode()))
        try:
            for ev in session.generate(run, params, cancel, forced):
                if isinstance(ev, StepEvent):
                    if as_json:
                        pending.append(ev.step)
                    else:
                        text = safe_text(run.tokens.bytes_of(ev.step.token_id))
                        sys.stdout.write(_paint(text, ev.step.prob, color))
                        sys.stdout.flush()
                elif isinstance(ev, LensEvent) and as_json:
                    by_pos = {ev.start_position + i: v for i, v in enumerate(ev.values["layer_entropy"])}
                    for st in pending:
                        rec = step_record(run, ev.branch_id, st)
                        if st.position in by_pos:
                            rec["layer_entropy"] = [round(float(x), 5) for x in by_pos[st.position]]
                        print(json.dumps(rec, ensure_ascii=False))
                    pending.clear()
                elif isinstance(ev, Finished):
                    done = ev
        except KeyboardInterrupt:
            cancel.set()
            typer.echo("\n(interrupted: keeping the partial run)", err=True)
        for st in pending:  # steps whose layer values never came (single-layer model)
            print(json.dumps(step_record(run, 0, st), ensure_ascii=False))
        path = _save(run, cache_dir)
        if not as_json:
            sys.stdout.write("\n\n" + _table(run, 0, run.branches[0].fork_position) + "\n")
            rate = f", {done.tokens_per_second:.1f} tokens/s" if done else ""
            status = done.status if done else "cancelled"
            typer.echo(f"\nrun {run.id} ({status}{rate}) saved to {path}")
        else:
            typer.echo(f"run {run.id} saved to {path}", err=True)
    except _errors() as e:
        fail(str(e))


@app.command()
def score(
    model: ModelOpt = "demo",
    text: Annotated[str | None, typer.Option("--text", help="Text to score.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Read the text from this file.")] = None,
    alternatives: KOpt = 20,
    as_json: JsonOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
    lens_precision: LensPrecisionOpt = "auto",
    cache_dir: CacheOpt = None,
) -> None:
    """Teacher-forced scoring: the same per-token records for every position of a given text."""
    import json

    try:
        if (text is None) == (file is None):
            fail("give exactly one of --text or --file")
        if file is not None:
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                fail(f"{file} is not UTF-8 text")
        _check_lens_precision(lens_precision)
        lm = _load(model, device, dtype, trust_remote_code)
        from tokentui.engine.hf.backend import HFBackend
        from tokentui.store.export import iter_steps, step_record

        run = HFBackend(lm, lens_precision=lens_precision).score(text or "", alternatives)
        path = _save(run, cache_dir)
        if as_json:
            for st in iter_steps(run, 0):
                print(json.dumps(step_record(run, 0, st), ensure_ascii=False))
            typer.echo(f"run {run.id} saved to {path}", err=True)
        else:
            from tokentui.core.metrics import summary

            print(_table(run, 0, 0))
            s = summary(run.prompt.col("logprob"), run.prompt.col("entropy"))
            print(
                f"\n{s['tokens']} scored tokens · mean logprob {s['mean_logprob']:.3f} nats · "
                f"perplexity {s['perplexity']:.2f} · mean entropy {s['mean_entropy']:.3f} nats"
            )
            typer.echo(f"run {run.id} saved to {path}")
    except _errors() as e:
        fail(str(e))


@runs_app.callback(invoke_without_command=True)
def runs_list(ctx: typer.Context, cache_dir: CacheOpt = None) -> None:
    """List cached runs: id, date, model, prompt start, tokens, branches."""
    if ctx.invoked_subcommand:
        return
    from tokentui.core.display import sanitize
    from tokentui.store.cache import cache_dir as resolve_dir
    from tokentui.store.cache import list_runs

    d = resolve_dir(cache_dir)
    runs = list_runs(d)
    if not runs:
        typer.echo(f"no runs in {d}")
        return
    print(f"{'id':<23} {'date':<19} {'model':<24} {'tokens':>7} {'branches':>8}  prompt")
    for r in runs:
        if r.error:
            print(f"{sanitize(r.run_id):<23} (unreadable: {sanitize(r.error)})")
            continue
        prompt = sanitize(r.prompt.replace("\n", " "), visible_whitespace=True)[:40]
        print(
            f"{sanitize(r.run_id):<23} {r.created[:19]:<19} {sanitize(r.model)[-24:]:<24} {r.tokens:>7} {r.branches:>8}  {prompt}"
        )


@runs_app.command("rm")
def runs_rm(run: Annotated[str, typer.Argument(help="Run id (or unique prefix).")], cache_dir: CacheOpt = None) -> None:
    """Remove a run from the cache."""
    from tokentui.store.cache import cache_dir as resolve_dir
    from tokentui.store.cache import resolve
    from tokentui.store.header import SUFFIX, RunFileError

    try:
        d = resolve_dir(cache_dir)
        path = resolve(run, d)
        if path.suffix != SUFFIX or path.resolve().parent != d.resolve():
            fail(f"{run} is not a run in the cache {d}")
        if not path.exists():
            fail(f"no run {run} in {d}")
        path.unlink()
        typer.echo(f"removed {path.stem}")
    except RunFileError as e:
        fail(str(e))


def load_ref(ref: str, cache_dir: Path | None):
    from tokentui.store.cache import cache_dir as resolve_dir
    from tokentui.store.cache import resolve
    from tokentui.store.runfile import load_run

    return load_run(resolve(ref, resolve_dir(cache_dir)))


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix) or path to a run file.")],
    fmt: Annotated[str, typer.Option("--format", help="csv, jsonl or json.")] = "csv",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of standard output.")] = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Export a run: CSV (one row per token), JSONL (one token per line with top-k) or JSON (whole tree)."""
    from tokentui.store.export import FORMATS
    from tokentui.store.export import export as do_export
    from tokentui.store.header import RunFileError

    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    try:
        r = load_ref(run, cache_dir)
        if out is None:
            try:
                do_export(r, fmt, sys.stdout)
                sys.stdout.flush()
            except BrokenPipeError:  # `… | head`: the reader had enough; not an error
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return
        else:
            tmp = out.with_name(f".{out.name}.tmp")
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                do_export(r, fmt, f)
            os.replace(tmp, out)
            typer.echo(f"wrote {out}", err=True)
    except (RunFileError, OSError) as e:
        fail(str(e))


# No trailing whitespace: the demo model's BPE merges a newline with the indentation after it, so a
# prompt ending in a bare "\n" (or " ") ends in a token the model rarely saw there.
DEMO_PROMPT = "def read_config(path):"


@app.callback(invoke_without_command=True)
def default(ctx: typer.Context) -> None:
    """With no command: open the explorer on the bundled demo model."""
    if ctx.invoked_subcommand is None:
        explore(model="demo", prompt=DEMO_PROMPT)


@app.command()
def explore(
    model: ModelOpt = "demo",
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Start generating this prompt at once.")] = "",
    max_new_tokens: MaxTokOpt = 64,
    temperature: TempOpt = 0.0,
    top_k: TopKOpt = 0,
    top_p: TopPOpt = 1.0,
    seed: SeedOpt = None,
    alternatives: KOpt = 20,
    chat: ChatOpt = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
    lens_chunk: LensOpt = 32,
    lens_precision: LensPrecisionOpt = "auto",
    cache_dir: CacheOpt = None,
) -> None:
    """Open the explorer with a model: type a prompt, watch it generate, branch on alternatives."""
    from tokentui.core.run import RunError, SamplingParams

    params = SamplingParams(temperature, top_k, top_p, seed, max_new_tokens)
    try:
        params.check()
    except RunError as e:
        fail(str(e))
    _check_lens_precision(lens_precision)
    from tokentui.engine.errors import ModelLoadError
    from tokentui.engine.hf.loading import resolve_source

    try:
        resolve_source(model)  # a missing folder is an error before the screen opens
    except ModelLoadError as e:
        fail(str(e))
    from tokentui.tui.app import TokentuiApp

    TokentuiApp(
        model=model,
        prompt=prompt,
        cache_dir=cache_dir,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        params=params,
        k=alternatives,
        chat=chat,
        lens_chunk=lens_chunk,
        lens_precision=lens_precision,
    ).run()


@app.command()
def replay(
    run: Annotated[str, typer.Argument(help="Run id (or unique prefix) or path to a run file.")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Also load this model, to grow new branches.")
    ] = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Open a saved run in the explorer (no model needed, torch is not imported)."""
    from tokentui.store.header import RunFileError
    from tokentui.tui.start import replay as open_replay

    try:
        open_replay(run, model, cache_dir)
    except RunFileError as e:
        fail(str(e))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
