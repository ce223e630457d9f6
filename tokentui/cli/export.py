"""`export`: a saved run as CSV, JSONL, JSON, seed 002's files or seed 004's attribution JSON, to
standard output or a file (no torch needed).

Writing to a file, the format follows the file's extension unless `--format` says otherwise (a
disagreement is an error), and an existing file is replaced only with `--force`; the rules live
in `store.export.format_for` / `write_file`. Only a regular file (or a new name) is written: a
symlink, FIFO, device or folder at `--out` is refused. CSV cells are made spreadsheet-safe unless
`--raw-csv` (see `store.export.csv_cell`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tokentui.cli.options import CacheOpt, RawCsvOpt
from tokentui.cli.output import Output, fail, load_ref, user_errors

if TYPE_CHECKING:
    from tokentui.core.run import Run


def export(
    run: Annotated[str | None, typer.Argument(help="Run id (or any unique part of one) or path to a run file.")] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="csv, jsonl, json, tree-json (seed 002's tree viewer), seed002-jsonl (its logprobs viewer), "
            "seed004 (an attribution record as seed 004's JSON), seed001 (seed 001's per-layer CSVs, into the "
            "--out folder) or seed001-comparative (seed 001's comparative CSVs of a steering comparison, into the "
            "--out folder); default: the --out file's extension (csv to standard output).",
        ),
    ] = None,
    attribution: Annotated[
        int | None,
        typer.Option(
            "--attribution",
            help="With --format seed004: which of the run's attribution records (0 = the oldest, -1 = the newest; "
            "default: the newest).",
        ),
    ] = None,
    branch: Annotated[
        int | None,
        typer.Option(
            "--branch",
            "-b",
            help="With --format seed001-comparative: the steered branch, compared with its parent (default: the "
            "run's first branch steered otherwise than its parent).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write here instead of standard output (a folder for --format seed001 and seed001-comparative).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the --out file if it exists.")] = False,
    raw_csv: RawCsvOpt = False,
    collection: Annotated[
        Path | None,
        typer.Option(
            "--collection",
            help="With --format seed001: a `tokentui batch` collection folder instead of a run (its done items, "
            "one set of files per model).",
        ),
    ] = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Export a run: CSV (one row per token), JSONL (one token per line with top-k), JSON (whole
    tree), seed 002's tree JSON and logprobs lines, seed 004's attribution JSON, or seed 001's
    per-layer CSV files."""
    from tokentui.core.display import counted, sanitize
    from tokentui.store.export import (
        FOLDER_FORMATS,
        SEED001_COMPARATIVE,
        ExportError,
        attribution_at,
        check_format,
        check_target,
        format_for,
        seed001_collection_files,
        write_file,
        write_seed001,
        write_seed001_comparative,
    )
    from tokentui.store.export import export as write_to

    try:
        if attribution is not None and fmt != "seed004":
            raise ExportError("--attribution goes with --format seed004")
        if branch is not None and fmt != SEED001_COMPARATIVE:
            raise ExportError(f"--branch goes with --format {SEED001_COMPARATIVE}")
        if (run is None) == (collection is None):
            raise ExportError("give a run, or --collection DIR with --format seed001 (not both)")
        if collection is not None and fmt != "seed001":
            raise ExportError("--collection goes with --format seed001")
        if fmt in FOLDER_FORMATS:
            if out is None:
                raise ExportError(f"--format {fmt} writes several files: give a folder with --out")
            if fmt == SEED001_COMPARATIVE:
                assert run is not None
                skipped: list[str] = []
                written = write_seed001_comparative(load_ref(run, cache_dir), out, force, branch, raw_csv, skipped)
                for name in skipped:
                    typer.echo(
                        f"… left out {name}: no value in either branch (a greedy or teacher-forced run has no "
                        "sampler probability)"
                        if name == "sampler_logprob"
                        else f"… left out {name}: no value in either branch",
                        err=True,
                    )
            elif collection is not None:
                files = seed001_collection_files(_collection_runs(collection), raw_csv)
                written = write_seed001(files, out, overwrite=force)
            else:
                assert run is not None
                written = write_seed001(load_ref(run, cache_dir), out, overwrite=force, raw_csv=raw_csv)
            typer.echo(f"wrote {counted(len(written), 'file')} under {sanitize(str(out))}", err=True)
            return
        assert run is not None
        if out is None:
            fmt = fmt or "csv"
            check_format(fmt)
            loaded = load_ref(run, cache_dir)
            if fmt == "seed004":
                attribution_at(loaded, attribution)  # no record: one line, nothing written
            stdout = Output()
            write_to(loaded, fmt, stdout, raw_csv, attribution)
            stdout.flush()
        else:
            check_target(out, force)  # before the run is read: a refused name fails fast (`.`: a folder)
            fmt = format_for(out, fmt)
            path = write_file(
                load_ref(run, cache_dir), fmt, out, overwrite=force, raw_csv=raw_csv, attribution=attribution
            )
            typer.echo(f"wrote {sanitize(str(path))}", err=True)
    except user_errors() as e:
        fail(str(e))


def _collection_runs(path: Path) -> Iterator[tuple[str, Run]]:
    """(model label, run) of a collection's done items, in its manifest's order, read one by one."""
    from tokentui.core.display import sanitize
    from tokentui.store.collection import CollectionError, load_collection, load_item_run

    try:
        coll = load_collection(path)
    except CollectionError as e:
        fail(str(e))
    if not any(True for _ in coll.runs()):
        fail(f"{sanitize(str(path))}: the collection has no finished items")
    for item, run_file in coll.runs():
        yield item.model, load_item_run(run_file)
