"""`stats`: seed 000's analysis of saved runs (no torch): summary numbers, entropy deciles, entropy
and probability by relative position (with plotext plots), the extreme tokens in their context and
a GLTR rank histogram, for one run, a branch, several runs or a `tokentui batch` collection.

The numbers come from `core.stats` (README.md, "Run statistics", defines each); this module only
reads the runs, shows the numbers and writes the files asked for: `--json` (every number), `--csv`
(one row per run, plus `all`), `--plot-dir` (each plot as plotext text and HTML). Token text is
untrusted: on the terminal it passes through `core.display`; in JSON through `json_text`; in CSV
through `csv_cell`. With several runs, a run that cannot be read (or lacks the branch asked for,
or has no token to count) is skipped with one line on stderr; with one, that is the error."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokentui.cli.options import CacheOpt, RawCsvOpt
from tokentui.cli.output import Output, ProgressLine, fail, interrupted, load_ref, user_errors
from tokentui.core.display import cut_middle, sanitize

if TYPE_CHECKING:
    from tokentui.core.run import Run
    from tokentui.core.stats import Report, Selection, Stats, Token
    from tokentui.store.cache import RunSummary

PLOT_FILE_SIZE = (100, 25)  # columns × rows of the plots saved by --plot-dir
PLOT_HEIGHT = 16  # rows of a plot printed on the terminal
TEXT_WIDTH = 100  # the widest a plot printed on the terminal gets
ITEM_WIDTH, RUN_WIDTH, MODEL_WIDTH = 20, 40, 16  # the most the per-run rows' text columns get (then cut)


def stats(
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="RUN",
            help="Run ids (or any unique part of one) or paths to run files; several: statistics of all.",
        ),
    ] = None,
    collection: Annotated[
        Path | None,
        typer.Option("--collection", help="A collection folder written by `tokentui batch` (its done items)."),
    ] = None,
    branch: Annotated[
        int | None,
        typer.Option(
            "--branch", "-b", help="Count this branch's full sequence (default: the whole run, each token once)."
        ),
    ] = None,
    tokens: Annotated[
        str,
        typer.Option(
            "--tokens",
            help="Which tokens count: auto (the generated ones; none: the forced ones, else the prompt's), all, or a "
            "list of generated, forced, prompt.",
        ),
    ] = "auto",
    include_prompt: Annotated[
        bool, typer.Option("--include-prompt", help="Count the prompt's scored positions too.")
    ] = False,
    bins: Annotated[int, typer.Option("--bins", help="Bins of relative position, 1…1000.")] = 10,
    top: Annotated[int, typer.Option("--top", help="Tokens in each list of extremes, 0…100.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Every number as one JSON document instead of text.")] = False,
    csv_out: Annotated[
        Path | None,
        typer.Option(
            "--csv", help="Also write a flat table: one row per run, one of all and, for several models, one per model."
        ),
    ] = None,
    plot_dir: Annotated[
        Path | None, typer.Option("--plot-dir", help="Also save each plot here as text (.txt) and HTML (.html).")
    ] = None,
    no_plots: Annotated[
        bool, typer.Option("--no-plots", help="Text output without the plots (--plot-dir still saves them).")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the --csv file and the plot files.")] = False,
    raw_csv: RawCsvOpt = False,
    cache_dir: CacheOpt = None,
) -> None:
    """Statistics of runs (seed 000's analysis): entropy and p(chosen), perplexity, entropy deciles,
    by relative position, extreme tokens, GLTR ranks."""
    from tokentui.core.stats import StatsError, check_options, parse_kinds

    try:
        check_options(bins, top)
        kinds = parse_kinds(tokens)
        if not runs and collection is None:
            raise StatsError("give run ids or files to count, or --collection DIR")
        if runs and collection is not None:
            raise StatsError("give run ids or files, or --collection DIR, not both")
        if raw_csv and csv_out is None:
            raise StatsError("--raw-csv goes with --csv (the table it writes)")
        _check_targets(csv_out, plot_dir, force)  # refused names fail before any run is read
        loaders = _collection(collection) if collection is not None else _refs(runs or [], cache_dir)
        rep = _report(loaders, branch, kinds, include_prompt, bins, top)
        out = Output()
        if as_json:
            from tokentui.store.export import json_text

            out.line(json_text(rep.to_dict(tokens.strip().lower(), include_prompt), indent=2))
        else:
            for line in render(rep, plots=not no_plots, width=_width()):
                out.line(line)
        out.flush()
        from tokentui.store.export import write_text

        for path, text in _files(rep, csv_out, plot_dir, raw_csv):
            write_text(path, text, force)
            typer.echo(f"wrote {_shown(path)}", err=True)
    except _errors() as e:
        fail(str(e))
    except KeyboardInterrupt:
        interrupted()


# --- reading ---------------------------------------------------------------------------------------
# (label, item number, what to call it in a message, load, the model as counted: None, as the run records it)
Loader = tuple[str, int, str, Callable[[], "Run"], str | None]


def _errors() -> tuple[type[BaseException], ...]:
    """What ends the command (or, with several runs, skips one) with a one-line message."""
    from tokentui.core.stats import StatsError

    return (*user_errors(), StatsError)


def _shown(path: Path | str) -> str:
    return sanitize(str(path))


def _refs(refs: list[str], cache_dir: Path | None) -> list[Loader]:
    """The runs given as arguments, labelled by their place among them: "arg 2" (a bare "2" in the
    item column was read as a collection's item number, its input line)."""
    return [(f"arg {i}", i, ref, partial(load_ref, ref, cache_dir), None) for i, ref in enumerate(refs, start=1)]


def _collection(path: Path) -> list[Loader]:
    """The done items of a `tokentui batch` collection, through its own reader; each labelled
    with its line number in the batch's input (and its model, when the batch ran several)."""
    from tokentui.store.cache import summarize
    from tokentui.store.collection import CollectionError, load_collection, load_item_run

    try:
        coll = load_collection(path)
    except CollectionError as e:
        fail(str(e))
    many = len(coll.models) > 1
    done = [(item, run_file, _recorded_model(summarize(run_file), item.model)) for item, run_file in coll.runs()]
    given_as: dict[str, set[str]] = {}  # recorded name → the --model texts it stands for
    for item, _file, name in done:
        given_as.setdefault(name, set()).add(item.model)
    out: list[Loader] = []
    for item, run_file, name in done:
        # two folders of one name (checkpoint-1000 of two trainings) record the same model: they
        # are told apart as the batch was told them (its tables do so), not pooled as one model
        model = item.model if len(given_as[name]) > 1 else None
        label = f"{model or name}:{item.index}" if many else str(item.index)
        out.append((label, item.index, str(run_file), partial(load_item_run, run_file), model))
    return out


def _recorded_model(run: RunSummary, given: str) -> str:
    """An item's model as its run records it (the folder's name: no path, as the model column
    shows it), from the header alone; the manifest's `--model` text when the header is unreadable
    (the run is then skipped with a line anyway)."""
    return run.model if run.error is None and run.model else given


def _report(
    loaders: list[Loader], branch: int | None, kinds: tuple[str, ...] | None, include_prompt: bool, bins: int, top: int
) -> Report:
    from tokentui.core.stats import StatsError, report, select

    if not loaders:
        raise StatsError("no runs to count (the collection has no finished items)")
    many = len(loaders) > 1
    show = ProgressLine() if many else None
    selections: list[Selection] = []
    seen: dict[str, str] = {}  # run id → the label it was counted under
    for done, (label, number, name, load, model) in enumerate(loaders, start=1):
        if show is not None:
            show(f"… stats: reading run {done}/{len(loaders)}", final=done == len(loaders))
        try:
            run = load()
            if run.id in seen:  # (`stats R R`, or a copy of R: its tokens counted twice, unsaid)
                raise StatsError(f"{name}: run {run.id} is {seen[run.id]} again: counted once")
            sel = select(run, branch, kinds, include_prompt, top, label, number, model)
            if not len(sel):
                raise StatsError(f"{name}: no tokens to count ({'+'.join(sel.sources[0].kinds)})")
            seen[run.id] = label  # (counted: not before, or a run skipped for its branch "was counted")
        except _errors() as e:
            message = " ".join(str(e).split())
            message = message if name in message or sanitize(name) in message else f"{name}: {message}"
            if not many:
                raise StatsError(message) from None
            typer.echo(f"tokentui: skipped: {_shown(message)}", err=True)
            continue
        selections.append(sel)
    if not selections:
        raise StatsError("none of the runs could be counted")
    return report(selections, bins)


# --- files -----------------------------------------------------------------------------------------
def _check_targets(csv_out: Path | None, plot_dir: Path | None, force: bool) -> None:
    """Every file this call will write, checked now (a folder, symlink or existing file without
    --force is refused before any run is read). The plot folder is made if missing."""
    from tokentui.core.stats import PLOT_NAMES
    from tokentui.store.export import ExportError, check_target

    if csv_out is not None and str(csv_out) == "-":  # (it wrote a file named "-", where - reads standard input)
        raise ExportError("--csv -: give the table a file name (the text, or --json, goes to standard output)")
    paths = [csv_out] if csv_out is not None else []
    if plot_dir is not None:
        if plot_dir.exists() and not plot_dir.is_dir():
            raise ExportError(f"--plot-dir {plot_dir} is not a folder")
        try:
            plot_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ExportError(f"cannot make {plot_dir}: {e.strerror or e}") from None
        paths += [plot_dir / f"{name}.{ext}" for name in PLOT_NAMES for ext in ("txt", "html")]
    for p in paths:
        check_target(p, force)


def _files(rep: Report, csv_out: Path | None, plot_dir: Path | None, raw_csv: bool) -> list[tuple[Path, str]]:
    from tokentui.core.stats import plots

    out = []
    if csv_out is not None:
        out.append((csv_out, csv_text(rep, raw_csv)))
    if plot_dir is not None:
        from tokentui.tui.plots import plot_html, plot_text

        with _not_clamped_to_the_terminal():
            for spec in plots(rep.all):
                out.append((plot_dir / f"{spec.name}.txt", plot_text(spec, *PLOT_FILE_SIZE) + "\n"))
                out.append((plot_dir / f"{spec.name}.html", plot_html(spec, *PLOT_FILE_SIZE)))
    return out


@contextmanager
def _not_clamped_to_the_terminal() -> Iterator[None]:
    """plotext clamps a plot to the size of the terminal it finds (80 × 22 cells when there is
    none), so the same command would write other files on another terminal; a file is drawn at
    the size asked for, and plotext's default (clamped, for the terminal output) is back after."""
    import plotext

    plotext.terminal.limit(False, False)
    try:
        yield
    finally:
        plotext.terminal.limit()  # (no arguments: plotext's defaults)


def csv_text(rep: Report, raw: bool = False) -> str:
    """The flat table: spreadsheet-safe cells (`store.export.csv_cell`; `raw`: as they are), an
    empty cell for no value."""
    import csv
    import io

    from tokentui.core.stats import csv_header, csv_rows
    from tokentui.store.export import csv_cell

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_header(rep.bins))
    for row in csv_rows(rep):
        w.writerow(["" if isinstance(v, float) and not math.isfinite(v) else csv_cell(v, raw) for v in row])
    return buf.getvalue()


# --- text ------------------------------------------------------------------------------------------
def _width() -> int:
    return max(40, min(TEXT_WIDTH, shutil.get_terminal_size((80, 24)).columns))


def render(rep: Report, plots: bool = True, width: int = 80) -> list[str]:
    """The report as text lines, every string sanitised."""
    from tokentui.core.display import sanitize
    from tokentui.core.stats import fmt, forced_left_out

    many = len(rep.rows) > 1
    kinds = "+".join(dict.fromkeys(k for r in rep.rows for k in r.source.kinds))
    scopes = ", ".join(dict.fromkeys(r.source.scope for r in rep.rows))
    lines = [
        f"statistics of {len(rep.rows)} run{'s' if many else ''} · tokens counted: {kinds}"
        f"{forced_left_out([r.source for r in rep.rows])} · scope: {scopes} · {rep.bins} position bins",
        "H: entropy of the model's raw next-token distribution, nats · p: p(chosen token) · "
        "loss: −log p, nats · ppl: exp(mean loss)",
        "",
    ]
    cells = [
        (sanitize(r.source.label), sanitize(r.source.run_id), sanitize(r.source.model), r.source.scope)
        for r in rep.rows
    ]
    # each text column as wide as its longest value (so every run id shows whole and rows stay
    # apart: a collection's ids differ only at their end), up to a cap; past it, cut in the middle
    wi, wr, wm, ws = (
        min(cap, max([len(head), *(len(c[at]) for c in cells)]))
        for at, (head, cap) in enumerate(
            (("item", ITEM_WIDTH), ("run", RUN_WIDTH), ("model", MODEL_WIDTH), ("scope", 20))
        )
    )
    lines.append(
        f"{'item':<{wi}} {'run':<{wr}} {'model':<{wm}} {'scope':<{ws}} {'tokens':>7} {'H mean':>7} {'H med':>7} "
        f"{'H std':>6} {'p mean':>7} {'p med':>6} {'p std':>6} {'ppl':>8}"
    )

    def row(label: str, run_id: str, model: str, scope: str, s: Any) -> str:
        e, p = s.entropy, s.probability
        return (
            f"{cut_middle(label, wi):<{wi}} {cut_middle(run_id, wr):<{wr}} {cut_start(model, wm):<{wm}} "
            f"{scope[:ws]:<{ws}} {s.tokens:>7} {fmt(e.mean):>7} {fmt(e.median):>7} {fmt(e.std):>6} {fmt(p.mean):>7} "
            f"{fmt(p.median):>6} {fmt(p.std):>6} {_perplexity(s.perplexity):>8}"
        )

    for r, (label, run_id, model, scope) in zip(rep.rows, cells, strict=True):
        lines.append(row(label, run_id, model, scope, r.summary))
    if many:
        lines.append(row("all", "", "", "", rep.all.summary))
    for r in rep.models:  # several models: each one's tokens together
        lines.append(row("all", "", sanitize(r.source.model), "", r.summary))
    lines += [""] + stats_lines(rep, width, plots)
    return lines


def _perplexity(x: float) -> str:
    """A perplexity in the table's 8 cells: 2 decimals, or 3 significant digits where those are
    wider (a random model's 128134923.99 stuck out past its column)."""
    from tokentui.core.stats import fmt

    shown = fmt(x, 2)
    return shown if len(shown) <= 8 else f"{x:.3g}"


def cut_start(text: str, width: int) -> str:
    """`text` in `width` characters: whole, or "…" and its end (a model's name ends with what tells it apart)."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


def stats_lines(rep: Report, width: int, plots: bool) -> list[str]:
    """The statistics of all the report's tokens: summary, ranks, deciles, positions, plots, extremes."""
    from tokentui.core.display import lone_token
    from tokentui.core.stats import EXTREME_TITLES, RANK_LABELS, fmt, fmt_pct
    from tokentui.core.stats import plots as plot_specs

    st: Stats = rep.all
    s = st.summary
    # (one branch: "the run's tokens" said of --branch N's was read as the whole run's)
    whose = "branch" if rep.rows[0].source.scope.startswith("branch") else "run"
    title = "all runs' tokens" if len(rep.rows) > 1 else f"the {whose}'s tokens"
    lines = [f"{title}: {s.tokens}"]
    for name, sp in (("entropy H (nats)", s.entropy), ("p(chosen)", s.probability)):
        lines.append(
            f"  {name:<17} mean {fmt(sp.mean)}  median {fmt(sp.median)}  std {fmt(sp.std)}  "
            f"min {fmt(sp.min)}  max {fmt(sp.max)}"
        )
    lines.append(f"  mean loss {fmt(s.mean_loss)} nats · perplexity {fmt(s.perplexity, 3)}")
    lines += ["", "GLTR rank histogram (rank of the chosen token; 1 = the model's first choice)"]
    for label, count, frac in zip(RANK_LABELS, s.ranks, s.rank_fractions):
        bar = "█" * (round(frac * 30) if math.isfinite(frac) else 0)
        lines.append(f"  rank {label:<9} {count:>7} {fmt_pct(frac):>6}  {bar}")
    lines += ["", "entropy deciles (quantiles of the counted tokens' H; low ≤ H < high, the last ≤ high)"]
    lines.append(
        f"  {'decile':>6}  {'H range (nats)':<17} {'tokens':>7} {'mean H':>7} {'mean p':>7}  examples (×count)"
    )
    for d in st.deciles:
        examples = "  ".join(f"{lone_token(t)[:16]}×{c}" for t, c in d.examples)
        lines.append(
            f"  {d.decile:>6}  {fmt(d.low) + ' – ' + fmt(d.high):<17} {d.count:>7} {fmt(d.mean_entropy):>7} "
            f"{fmt(d.mean_probability):>7}  {examples}"
        )
    lines += ["", f"by relative position (i/n: a token's index among its sequence's n counted tokens; {rep.bins} bins)"]
    lines.append(f"  {'bin':>4}  {'range':<11} {'tokens':>7} {'mean H':>7} {'mean p':>7}")
    for b in st.positions:
        lines.append(
            f"  {b.bin + 1:>4}  {f'{b.low:.2f}–{b.high:.2f}':<11} {b.count:>7} {fmt(b.mean_entropy):>7} "
            f"{fmt(b.mean_probability):>7}"
        )
    if plots:
        from tokentui.tui.plots import plot_text

        for spec in plot_specs(st):
            lines += [""] + plot_text(spec, width, PLOT_HEIGHT).splitlines()
    for name, tokens in st.extremes.items():
        if tokens:
            lines += ["", EXTREME_TITLES[name]]
            lines += ["  " + extreme_line(rep, t, width - 2) for t in tokens]
    return lines


def extreme_line(rep: Report, t: Token, width: int = TEXT_WIDTH) -> str:
    """One extreme token: its numbers, where it is, and its context cut to fit `width` cells (at
    80 columns a trial's lines were 83–100 wide and wrapped mid-word)."""
    from rich.cells import cell_len

    from tokentui.core.display import sanitize
    from tokentui.core.stats import fit_context, fmt, fmt_p

    src = rep.selection.sources[t.source]
    where = f"{sanitize(src.run_id)} #{t.branch} @{t.position}" if len(rep.rows) > 1 else f"#{t.branch} @{t.position}"
    head = f"H {fmt(t.entropy)}  p {fmt_p(t.prob)}  rank {t.rank:<6} {where}  "
    b, tok, a = fit_context(t, width - cell_len(head) - 2)  # (less the brackets)
    return f"{head}{b}⟦{tok}⟧{a}"
