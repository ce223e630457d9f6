"""The Typer application: every command registered in one place, each defined in its group's
module (generate/score, tree, runs, export, explore/replay). A new command group is a new module plus
its lines here."""

from __future__ import annotations

import typer

from tokentui.cli import attribute, batch, compare, explore, export, generate, runs, stats, steer, tree

app = typer.Typer(
    name="tokentui",
    help="Watch, question and branch a causal language model's writing, token by token.",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

app.callback(invoke_without_command=True)(explore.default)
app.command()(generate.generate)
app.command()(generate.score)
app.command()(tree.tree)
app.command()(attribute.attribute)
app.command()(compare.compare)
app.add_typer(runs.runs_app, name="runs")
app.command()(export.export)
app.command()(stats.stats)
app.command()(explore.explore)
app.command()(explore.replay)
app.command()(batch.batch)
app.command()(steer.steer_vector)  # steering (issue 14)
app.command()(steer.steer_compare)


def main() -> None:
    """The command line, with its usage errors (an unknown option or command, a value of the wrong
    type, a missing one) in the one line every other error has, not Typer's four."""
    import sys

    from tokentui.cli.output import (
        ENDED_BY_CTRL_C,
        ctrl_c_in_finalizers_delivered,
        interrupted_code,
        quiet_broken_pipes,
    )

    quiet_broken_pipes()
    ctrl_c_in_finalizers_delivered()
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as e:  # (Typer ≥ 0.29 has its own Click: its usage errors carry their context)
        ctx = getattr(e, "ctx", None)
        where = f"; see {ctx.command_path} --help" if ctx is not None else ""
        message = e.format_message().rstrip(".")
        explore_option = _explore_option(e, ctx)
        if explore_option:  # (`tokentui --model M`: the explorer's options follow its command)
            message = f"{explore_option} belongs to a command: tokentui explore {explore_option} …"
        typer.echo(f"tokentui: error: {message}{where}", err=True)
        sys.exit(getattr(e, "exit_code", 1))
    except (typer.Abort, KeyboardInterrupt):
        # Ctrl-C where no command handles it (Typer turns one inside a command into Abort), or a
        # second one as a command ends after the first, its handlers gone: a trial's landed while the
        # first one's exit unwound through Typer — a traceback, or "Aborted!" and exit 1, after the
        # command's own last line. One line, once, and 130 as for every Ctrl-C.
        if not ENDED_BY_CTRL_C.is_set():
            typer.echo("tokentui: interrupted", err=True)
        sys.exit(interrupted_code())
    except ModuleNotFoundError as e:  # a command that runs a model, where torch is not installed
        from tokentui.engine.errors import missing_package

        missing = missing_package(e)
        if missing is None:  # a module of ours or of another package: a bug
            sys.exit(_crashed(e))
        typer.echo(f"tokentui: error: {missing}", err=True)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - a bug: one line and a log, as the explorer does, not a traceback
        sys.exit(_crashed(e))
    sys.exit(_output_written(code if isinstance(code, int) else 0))


def _output_written(code: int) -> int:
    """`code`, or 2 with one line when standard output could not take the output (a full disk,
    `> /dev/full`): the command's work is done, but what it printed is lost."""
    import sys

    from tokentui.cli.output import WRITE_FAILURES

    sys.stdout.flush()
    failed = WRITE_FAILURES.get("stdout")
    if failed is None:
        return code
    typer.echo(f"tokentui: error: could not write to standard output: {failed.strerror or failed}", err=True)
    return code or 2


def _explore_option(error: Exception, ctx: object) -> str | None:
    """The option of an unknown-option error given to plain `tokentui` that `tokentui explore`
    takes (a trial's `tokentui --model demo`), else None."""
    option = getattr(error, "option_name", None)
    if not option or ctx is None or getattr(ctx, "parent", True) is not None:
        return None
    explore_command = typer.main.get_command(app).commands["explore"]  # type: ignore[attr-defined]
    return option if any(option in p.opts for p in explore_command.params) else None


def _crashed(error: Exception) -> int:
    """Report an unexpected exception in one line naming a log file that holds its traceback
    (under the run cache's `logs`: the command line's --cache-dir, else the default), never the
    traceback itself: its local values carry run text and prompts. Exit code 1, as an unhandled
    exception has."""
    import sys

    from tokentui.core.files import crash_line, write_crash_log
    from tokentui.store.cache import cache_dir

    log = write_crash_log(error, cache_dir(_cache_dir_given(sys.argv[1:])) / "logs")
    typer.echo(f"tokentui: error: {crash_line('unexpected', error, log)} — a bug in tokentui", err=True)
    return 1


def _cache_dir_given(args: list[str]) -> str | None:
    """The value of the command line's --cache-dir (its last), None without one."""
    found = None
    for i, arg in enumerate(args):
        if arg == "--cache-dir" and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("--cache-dir="):
            found = arg.partition("=")[2]
    return found
