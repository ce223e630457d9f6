"""Building the explorer with what it reads from disk (themes, a run file's header) read here,
before the app exists, so TokentuiApp.__init__ reads nothing and still knows its theme. Used by
`tokentui replay` (the launcher's fast path and the Typer command alike), `tokentui explore` and
the tests: a bad reference or a file that is not a run is a one-line error before the screen opens;
the app then draws its first frame from the header and reads the arrays after."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from tokentui.core.params import GenerationSettings
from tokentui.store.cache import RunSummary, resolve, summarize
from tokentui.store.cache import cache_dir as resolve_dir
from tokentui.store.header import RunFileError
from tokentui.tui.app import ReplayExplorer, TokentuiApp
from tokentui.tui.theme import load_themes


class ExplorerCrashed(Exception):
    """The explorer stopped on an unhandled exception; the message is one line for the user (what
    went wrong and where the traceback was written)."""

    def __init__(self, app: TokentuiApp) -> None:
        from tokentui.core.files import crash_line

        super().__init__(crash_line("the explorer stopped on an unexpected error:", app.crash, app.crash_log))


def run_app(app: TokentuiApp) -> None:
    """Run the explorer; raise ExplorerCrashed when it ended on an unhandled exception (Textual
    itself would return normally, and the process would exit with code 0)."""
    app.run()
    if app.crash is not None:
        raise ExplorerCrashed(app)
    say_where_the_run_is(app)
    if app.engine is not None and not app.engine.stopped:  # quit twice: the model's thread is still in torch
        leave_now(app.return_code or 0)


def say_where_the_run_is(app: TokentuiApp) -> None:
    """Once the screen is restored: `replay_line`, the run on show and the command that opens it
    again (a newcomer quit, and found it only through `tokentui runs`)."""
    try:
        line = replay_line(app)
        if line is not None:
            print(line, file=sys.stderr)
    except OSError:  # (a terminal gone)
        pass


def replay_line(app: TokentuiApp) -> str | None:
    """`run ID is in the run cache: tokentui replay ID … opens it`, on the branch and at the
    position on show (a user who left from branch 3 came back to branch 0; the position is said
    unless it is the branch's end, where a replay opens anyway). A run read from a file outside
    the cache (`replay ./x.tokentui`, never written to) is named by that file. None: neither."""
    import shlex

    from tokentui.core.display import sanitize
    from tokentui.store.cache_writes import where_saved

    run = app.run_obj
    if run is None or not run.branches or run.dirty:
        return None
    try:
        path = where_saved(run.id, app.save_dir)
        cached = path.is_file()
        read_from = app.run_path if app.run_path is not None and app.run_path.is_file() else None
    except (OSError, ValueError, RunFileError):  # (a run id the cache takes no file for)
        return None
    where = f" --branch {app.branch_id}" if app.branch_id else ""
    if app.stream.view is not None and app.stream.cursor < run.length(app.branch_id) - 1:
        where += f" --position {app.stream.cursor}"
    if cached:
        return f"run {path.stem} is in the run cache: tokentui replay {path.stem}{where} opens it"
    if read_from is not None:
        return f"run {sanitize(run.id)} is in {sanitize(str(read_from))}: tokentui replay {sanitize(shlex.quote(str(read_from)))}{where} opens it"
    return None


def leave_now(code: int) -> NoReturn:
    """Exit without Python's shutdown: with the model's thread still inside torch, that shutdown
    aborts the process ("terminate called without an active exception", exit 134). The screen is
    already restored and the run file holds what was last saved."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def explorer(**options: Any) -> TokentuiApp:
    """TokentuiApp(**options) with the themes loaded and, for `run_path`, its header read
    (without a model: a ReplayExplorer, whose footer offers no key that needs one)."""
    themes, problems = load_themes()
    run_path = options.get("run_path")
    if run_path is not None and options.get("run") is None and "opening" not in options:
        options["opening"] = summarize(run_path)
    app_class = TokentuiApp if options.get("model") is not None else ReplayExplorer
    return app_class(themes=themes, theme_problems=problems, **options)


def settings_of(opening: RunSummary) -> GenerationSettings | None:
    """The settings a replayed run was made with that new runs of the session keep: its chat
    template on or off and its k (a trial edited a chat run's prompt and generated with chat off),
    from its header as `summarize` read it. None when the header does not say (the explorer's
    defaults then)."""
    from tokentui.core.params import RunError

    if opening.error or opening.chat is None or opening.k is None:
        return None
    settings = GenerationSettings(k=opening.k, chat=opening.chat)
    try:
        settings.check()
    except RunError:
        return None
    return settings


def replay(
    ref: str, model: str | None = None, cache_dir: Path | None = None, branch: int = 0, position: int | None = None
) -> None:
    """Run the explorer on run `ref` (id, id prefix or path), showing `branch` first, the cursor at
    `position` (None: the branch's end). Raises
    RunFileError when it cannot be opened (or has no such branch), also when the arrays turn out
    damaged after the screen was up (the app closes)."""
    path = resolve(ref, resolve_dir(cache_dir))
    opening = summarize(path)  # (the header, read once: the screen's first frame and the settings)
    if opening.error:
        raise RunFileError(path, opening.error)
    if not 0 <= branch < max(opening.branches, 1):
        last = f"0…{opening.branches - 1}" if opening.branches > 1 else "only branch 0"
        raise RunFileError(path, f"there is no branch {branch} in this run (it has {last})")
    settings = settings_of(opening) if model is not None else None
    app = explorer(
        model=model,
        run_path=path,
        opening=opening,
        cache_dir=cache_dir,
        settings=settings,
        branch=branch,
        position=position,
    )
    run_app(app)
    if app.open_error is not None:
        raise app.open_error
