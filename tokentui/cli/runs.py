"""`runs` and `runs rm`: the run cache, read through its headers only (no numpy, no torch)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from tokentui.cli.options import CacheOpt
from tokentui.cli.output import Output, fail, runs_dir

runs_app = typer.Typer(help="List or remove cached runs.", add_completion=False, rich_markup_mode=None)


@runs_app.callback(invoke_without_command=True)
def runs_list(ctx: typer.Context, cache_dir: CacheOpt = None) -> None:
    """List cached runs, newest first: id (its date and time), what (a generation's end: eos,
    length, cancelled …; else the kind: tree, score, compare …), model, tokens, branches, prompt."""
    if ctx.invoked_subcommand:
        return
    from tokentui.core.display import sanitize
    from tokentui.store.cache import list_runs

    d = runs_dir(cache_dir)
    if d.exists() and not d.is_dir():
        fail(f"the run cache {sanitize(str(d))} is not a folder")
    runs = list_runs(d)
    out = Output()
    if not runs:
        out.line(f"no runs in {sanitize(str(d))}")
        _collections(out, d)
        return
    # (the date is the id's start: no column of its own; the prompt takes what the terminal leaves)
    # the id column as wide as the longest id (a batch item's run, cached by `attribute`, has 33
    # characters: 23 pushed the other columns out of line), up to 64
    id_w = max(23, *(min(64, len(sanitize(r.path.stem))) for r in runs))
    room = max(20, shutil.get_terminal_size((110, 24)).columns - 49 - id_w) if sys.stdout.isatty() else 40
    out.line(f"{'id':<{id_w}} {'what':<9} {'model':<24} {'tokens':>7} {'br':>3}  prompt")
    for r in runs:
        # the id column is what commands take: the file's name (a file copied in under another
        # name than its run's id says which id it holds)
        handle = r.path.stem
        if r.error:
            out.line(f"{sanitize(handle):<{id_w}} (unreadable: {sanitize(r.error)})")
            continue
        held = f"(holds run {sanitize(r.run_id)}) " if r.run_id != handle else ""
        prompt = held + sanitize(r.prompt.replace("\n", " "), visible_whitespace=True)[: max(10, room - len(held))]
        out.line(
            f"{sanitize(handle):<{id_w}} {sanitize(r.what)[:9]:<9} {sanitize(r.models_in(24)):<24} {r.tokens:>7} "
            f"{r.branches:>3}  {prompt}"
        )
    _collections(out, d)


def _collections(out: Output, directory: Path) -> None:
    """The batch collections the cache knows, below the runs: their runs are not in the list (a
    trial found `runs` saying "no runs" beside a collection of 200), yet open by id."""
    import os
    import shutil
    import sys

    from tokentui.core.display import counted, sanitize
    from tokentui.store.cache import collection_folders
    from tokentui.store.collection import CollectionError, describe_collection
    from tokentui.store.header import SUFFIX

    found = []
    for folder in collection_folders(directory):
        try:
            n = sum(1 for e in os.scandir(folder / "runs") if e.name.endswith(SUFFIX))
        except OSError:
            continue  # (gone, or no runs folder: not a collection)
        try:  # (what it was made with: folders of one prompts file differ by a hash alone)
            what = describe_collection(folder)
        except CollectionError as e:
            what = f"(its manifest: {e.problem})"
        found.append((n, folder, what))
    if found:
        out.line("")
        out.line("batch collections (their runs open by id; stats --collection DIR, export --collection DIR):")
        width = max(len(counted(n, "run")) for n, _, _ in found)
        # (on a terminal one line, not wrapped; to a pipe or file whole)
        room = max(40, shutil.get_terminal_size().columns - width - 4) if sys.stdout.isatty() else None
        for n, folder, what in found:
            out.line(f"  {counted(n, 'run'):>{width}}  {sanitize(str(folder))}")
            what = sanitize(what)
            out.line(f"  {'':>{width}}  {what if room is None or len(what) <= room else what[: room - 1] + '…'}")
    out.flush()


@runs_app.command("rm")
def runs_rm(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id (or any unique part of one).")],
    cache_dir: CacheOpt = None,
) -> None:
    """Remove a run from the cache."""
    from tokentui.core.display import sanitize
    from tokentui.store.cache import resolve
    from tokentui.store.header import SUFFIX, RunFileError

    # `runs --cache-dir D rm RUN` names the folder before `rm`: that is the cache meant (a trial's
    # `rm` went to the default cache instead and removed another copy of the run)
    outer = ctx.parent.params.get("cache_dir") if ctx.parent is not None else None
    if cache_dir is not None and outer is not None and cache_dir.resolve() != outer.resolve():
        fail(f"two caches given ({outer} and {cache_dir}); give --cache-dir once")
    try:
        d = runs_dir(cache_dir or outer)
        path = resolve(run, d)
        if path.suffix != SUFFIX or path.resolve().parent != d.resolve():
            fail(f"{run} is not a run in the cache {d}")
        if not path.exists():
            fail(f"no run {run} in {d}")
        path.unlink()
        typer.echo(f"removed {sanitize(path.stem)}")
    except (RunFileError, OSError) as e:
        fail(str(e))
