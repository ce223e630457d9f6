"""What every command shares about output: the one-line error, the exceptions that become one,
progress lines, standard output that a closed pipe silences, and the run cache.

Errors are always `tokentui: error: …` on stderr with exit code 2, never a traceback; Ctrl-C
ends a command with `tokentui: interrupted …` and exit code 130 (a generation first saves what it
made, with status "cancelled"); a hang-up or SIGTERM, which stop it the same way, with 129 or 143. A reader
that stops early (`… | head`) is not an error: output ends quietly and the command finishes its
work (a generation still runs to its end and is saved)."""

from __future__ import annotations

import io
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer

from tokentui.core.display import sanitize
from tokentui.core.files import terminal_gone

STOP_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)  # what stops a job as Ctrl-C does
EXIT_ERROR = 2
_STOPPED_BY = [signal.SIGINT]  # the signal `ctrl_c_sets` caught last (since the block began)


def interrupted_code() -> int:
    """128 + the signal that stopped the command: 130 for Ctrl-C, 129 for a hang-up, 143 for
    SIGTERM (a job scheduler's time limit), as shells and schedulers read a program's end."""
    return 128 + int(_STOPPED_BY[0])


def fail(message: str) -> NoReturn:
    """End the command with one line on stderr (control characters shown as visible escapes)."""
    typer.echo(f"tokentui: error: {sanitize(' '.join(str(message).split()))}", err=True)
    raise typer.Exit(EXIT_ERROR)


# Set once a command has said how a Ctrl-C ended it: a further Ctrl-C on the way out (the command's
# own handlers are gone by then) must add neither a traceback nor a second line (cli.app.main).
ENDED_BY_CTRL_C = threading.Event()


def interrupted(message: str = "interrupted") -> NoReturn:
    """End the command after Ctrl-C: one line on stderr, exit code 130 (`interrupted_code`), no traceback."""
    typer.echo(f"tokentui: {message}", err=True)
    exit_interrupted()


@contextmanager
def printing_saved(what: str) -> Iterator[None]:
    """Print what was saved: a Ctrl-C meanwhile ends the command saying `what` is saved (the
    command's own handler, around the whole of it, said "nothing saved": a trial read that beside
    145 saved runs, Ctrl-C pressed while a long dataset's tables printed)."""
    try:
        yield
    except KeyboardInterrupt:
        sys.stdout.flush()
        interrupted(f"interrupted while printing the results: {what}")


def exit_interrupted() -> NoReturn:
    """Exit code 130 (`interrupted_code`) for a command that has said how a Ctrl-C ended it (its last line)."""
    ENDED_BY_CTRL_C.set()
    raise typer.Exit(interrupted_code())


@contextmanager
def ctrl_c_sets(event: threading.Event) -> Iterator[None]:
    """While the block runs, Ctrl-C (SIGINT) sets `event` instead of raising KeyboardInterrupt, and
    so do a hang-up (SIGHUP: the SSH session dropped) and SIGTERM, which would otherwise end the
    process at once and lose what was made since the last autosave.

    A KeyboardInterrupt raised inside the engine's decode loop abandons it mid-step, and the branch
    ends with the loop's default status ("length"); setting the job's cancel event instead lets the
    loop stop after the current step with status "cancelled", send its Finished and be saved
    like any other end. Off the main thread (signals cannot be caught there) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            terminal_gone()
        _STOPPED_BY[0] = signal.Signals(signum)
        event.set()

    _STOPPED_BY[0] = signal.SIGINT  # (what a KeyboardInterrupt raised without a handler is)
    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def say_at_once(text: str, keep_line: bool = False) -> None:
    """A line on stderr from a signal handler: straight to the file descriptor, since the buffered
    stream may be in the middle of a write of the main code (a reentrant write raises). On a
    terminal it replaces the progress line under way, or with `keep_line` (the line holds text
    being streamed to standard output: `generate`'s tokens) goes below it."""
    start = ("\n" if keep_line else "\r\x1b[2K") if sys.stderr.isatty() else ""
    line = start + text + "\n"
    try:
        os.write(sys.stderr.fileno(), line.encode())
    except (AttributeError, OSError, ValueError):  # a replaced sys.stderr (tests): no descriptor
        typer.echo(text, err=True)


def waiting_for_pipe(path: str, terminal: bool) -> None:
    """`open_to_read`'s notice for a pipe (`--file fifo`, `<(cmd)`) or a terminal (`--file
    /dev/stdin`) that has sent nothing yet: a command waiting on a pipe nobody writes to looked
    hung. Said at once (no progress line is up yet)."""
    if terminal:
        say_at_once(f"… reading {sanitize(path)} from the terminal: type the text, then Ctrl-D (Ctrl-C stops)")
    else:
        say_at_once(f"… waiting for {sanitize(path)}: a pipe that has sent nothing yet (Ctrl-C stops)")


class StopThenInterrupt(threading.Event):
    """For `ctrl_c_sets`: the first Ctrl-C sets it (the work stops at its next boundary) and says
    `message` at once; a second raises KeyboardInterrupt where the main code is (stop now)."""

    def __init__(self, message: str, keep_line: bool = False) -> None:
        super().__init__()
        self.message, self.keep_line = message, keep_line

    def set(self) -> None:
        if self.is_set():
            raise KeyboardInterrupt
        # set before saying so: a second Ctrl-C while the message is written (a slow terminal) runs
        # this again inside it, and must find the first one counted (it printed twice, and stopped
        # nothing)
        super().set()
        say_at_once(self.message, self.keep_line)


@contextmanager
def ctrl_c_not_lost() -> Iterator[None]:
    """While the block runs (a model loading), Ctrl-C raises KeyboardInterrupt as usual, and once
    more when the block ends if the first was swallowed: Python ignores an exception raised in some
    callbacks (an import lock's weakref callback, a `__del__`), and a Ctrl-C that lands in one while
    torch and transformers import would otherwise be lost, the command going on as if not pressed.
    Off the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = threading.Event()

    def raise_interrupt(_signum: int, _frame: object) -> None:
        pressed.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed.is_set():
        raise KeyboardInterrupt


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that end a command with a one-line message (none of them imports torch)."""
    from tokentui.core.params import RunError
    from tokentui.engine.errors import EngineError
    from tokentui.store.export import ExportError
    from tokentui.store.header import RunFileError

    return (RunError, RunFileError, EngineError, ExportError, OSError)


def progress(message: str) -> None:
    """A progress line on stderr. Its text can hold what the user typed (a model's name: "reading the
    configuration of …"), shown safely here: an ESC in it reached a terminal, which coloured the rest."""
    typer.echo(f"… {sanitize(message)}", err=True)


PROGRESS_SECONDS = 2.0  # how often a progress line is written when standard error is not a terminal


class ProgressLine:
    """A long job's progress on standard error: rewritten in place on a terminal, otherwise a line
    every PROGRESS_SECONDS (and always the first and the last, `final`)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.shown = False
        self.open = False  # a terminal's line written without its newline

    def __call__(self, text: str, final: bool = False, force: bool = False) -> None:
        """`final`: the last line (always written; on a terminal it stays). `force`: written now
        whatever the time since the last (what changed matters: another model starts)."""
        import time

        now = time.monotonic()
        if self.shown and not (final or force or self.tty or now - self.last >= PROGRESS_SECONDS):
            return
        self.last, self.shown = now, True
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + text + ("\n" if final else ""))
            self.open = not final
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        """End the line a terminal was left on (another message follows on its own line)."""
        if self.open:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.open = False


SHOWN_PROBLEMS = 20  # problem lines printed before "… and N more"


class ProblemLines:
    """The input's problems (a bad line, an item that failed), one line each on standard error,
    escaped: the first SHOWN_PROBLEMS of them, then how many more. A dataset of thousands of bad
    lines printed a screenful for each of them, burying what the command went on to say."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, text: str) -> None:
        self.count += 1
        if self.count <= SHOWN_PROBLEMS:
            if sys.stderr.isatty():  # (over a progress line under way)
                sys.stderr.write("\r\x1b[2K")
            typer.echo(f"tokentui: {sanitize(' '.join(text.split()))}", err=True)

    def close(self, what: str) -> None:
        """Say how many were not shown: "… and N more `what`" (where they can all be read)."""
        if self.count > SHOWN_PROBLEMS:
            more = self.count - SHOWN_PROBLEMS
            typer.echo(f"tokentui: … and {more} more {sanitize(what)}", err=True)


def throughput(done: int, total: int, seconds: float, unit: str = "items", partial: float = 0.0) -> str:
    """`done/total unit · rate unit/s · ETA m:ss` for a ProgressLine: the rate over the work done
    so far in this command, the ETA at that rate ("ETA …" until the first piece is done).
    `partial`: pieces' worth of work done on pieces not finished yet (counted in the rate)."""
    text = f"{done}/{total} {unit}"
    worked = done + partial
    if worked <= 0 or seconds <= 0:
        return f"{text} · ETA …"
    rate = worked / seconds
    left = max(0.0, total - worked) / rate
    eta = (
        f"{int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"
        if left >= 3600
        else f"{int(left // 60)}:{int(left % 60):02d}"
    )
    return f"{text} · {rate:.2f} {unit}/s · ETA {eta}"


class Output:
    """Standard output for results. When the reader closes the pipe, writing stops silently (the
    file descriptor is pointed at /dev/null, so Python's final flush does not complain either)
    and `closed` turns true; the command carries on with its other work."""

    def __init__(self) -> None:
        self.closed = False

    def write(self, text: str) -> None:
        if self.closed:
            return
        try:
            sys.stdout.write(text)
        except BrokenPipeError:
            self._reader_gone()

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def flush(self) -> None:
        if self.closed:
            return
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        self.closed = True
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):  # a replaced sys.stdout (tests): nothing to redirect
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


WRITE_FAILURES: dict[str, OSError] = {}  # stream name → the error that stopped its writes (not EPIPE)


class _Forgiving(io.RawIOBase):
    """A file descriptor that a closed pipe silences: once a write meets EPIPE the rest is dropped
    (what a reader that stopped early, `… 2>&1 | head`, wants), so the command finishes its work.
    Any other failure (a full disk, an I/O error) drops the rest too and is kept in
    WRITE_FAILURES for `main` to report in one line: it raised from wherever the write was, and
    Python's exit printed "Exception ignored … Traceback" for the last flush."""

    def __init__(self, fd: int, name: str = "") -> None:
        super().__init__()
        self.fd = fd
        self.name = name
        self.gone = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def write(self, data) -> int:
        if not self.gone:
            while True:
                try:
                    return os.write(self.fd, data)
                except BlockingIOError:  # (a non-blocking pipe, as some CI runners hand over: wait for room)
                    select.select([], [self.fd], [])
                    continue
                except BrokenPipeError:
                    self.gone = True
                except OSError as e:
                    self.gone = True
                    WRITE_FAILURES.setdefault(self.name, e)
                break
        return len(data)


def ctrl_c_in_finalizers_delivered() -> None:
    """A Ctrl-C that lands while Python runs a finalizer (a `__del__`, a weakref callback: torch's
    autograd and import machinery run them at any moment) is ignored by Python, which prints
    "Exception ignored in …" with a traceback, and the press is lost (a trial's second Ctrl-C
    printed a traceback and went unheeded). This hook prints nothing for it and sends the signal
    again from a helper thread, so it arrives once the finalizer is over, where the command's own
    handling (`ctrl_c_sets`, StopThenInterrupt, KeyboardInterrupt) takes it."""
    previous = sys.unraisablehook

    def again() -> None:
        time.sleep(0.01)
        os.kill(os.getpid(), _STOPPED_BY[0])  # (a second SIGTERM's, not a Ctrl-C's: the exit code says which)

    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is KeyboardInterrupt:
            threading.Thread(target=again, daemon=True).start()
            return
        previous(unraisable)

    sys.unraisablehook = hook


def quiet_broken_pipes() -> None:
    """Standard output and standard error, where they are pipes or files, through `_Forgiving`:
    a progress or "wrote" line meeting a closed pipe ended commands with exit 1 halfway through
    their files, or with "error: Broken pipe" after their work. (A terminal is left alone: the
    explorer draws on it, and it never closes under a command.)"""
    for name, line_buffered in (("stdout", False), ("stderr", True)):
        stream = getattr(sys, name)
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # a replaced stream: not a descriptor of ours
            continue
        if os.isatty(fd):
            continue
        stream.flush()
        raw = io.BufferedWriter(_Forgiving(fd, name))
        setattr(sys, name, io.TextIOWrapper(raw, encoding=stream.encoding, errors=stream.errors,
                                            line_buffering=line_buffered, write_through=line_buffered))  # fmt: skip


def runs_dir(cache_dir: Path | None) -> Path:
    from tokentui.store.cache import cache_dir as resolve_dir

    return resolve_dir(cache_dir)


def usable_cache(cache_dir: Path | None) -> Path:
    """The run cache, made when missing; RunError when it cannot take a run file. A command that
    saves a run asks before its model loads: a file named as the cache, or a folder that takes
    nothing, used to fail once the work was done, with a raw errno ('[Errno 17] File exists')."""
    from tokentui.core.files import probe_folder
    from tokentui.core.params import RunError

    d = runs_dir(cache_dir)
    where = f"the run cache {sanitize(str(d))}"
    fix = "give another with --cache-dir or TOKENTUI_CACHE_DIR"
    if d.exists() and not d.is_dir():
        raise RunError(f"{where} is not a folder; {fix}")
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe_folder(d)
    except OSError as e:
        raise RunError(f"{where} cannot take a run file ({e.strerror or e}); {fix}") from None
    return d


def save_to_cache(run, cache_dir: Path | None) -> Path:
    """Save `run` into the run cache (atomically); its path. Where another process changed the
    run's file since this one read it, that version stays and this one goes beside it, said once
    on standard error (`store.cache_writes`)."""
    from tokentui.store.cache_writes import save_in_cache

    saved = save_in_cache(run, runs_dir(cache_dir))
    if saved.note is not None:
        say_at_once(f"tokentui: warning: {saved.note}")
    return saved.path


def autosave(cache_dir: Path | None, keep_line: bool = False):
    """A command's jobs.Autosave into the run cache; a periodic save that fails (a full disk) is
    said at once on standard error, as a warning (`keep_line`: as `say_at_once`): the job goes on."""
    from tokentui.engine.jobs import Autosave

    def warn(message: str) -> None:
        say_at_once(f"warning: {sanitize(message)}", keep_line)

    return Autosave(lambda r: save_to_cache(r, cache_dir), warn=warn)


def load_ref(ref: str, cache_dir: Path | None, grow: bool = False):
    """The run a user named (id, part of an id, or path), loaded and validated. `grow`: it will be
    saved into the cache under its id, so a file from elsewhere whose id the cache holds with other
    content is refused (saving would replace that run: a trial lost a cached run's records so)."""
    from tokentui.core.params import RunError
    from tokentui.store.cache import other_version, resolve
    from tokentui.store.cache_writes import remember
    from tokentui.store.runfile import load_run

    d = runs_dir(cache_dir)
    path = resolve(ref, d)
    run = load_run(path)
    remember(path)  # (as read: a save finding it changed by another process keeps that version)
    if grow:
        cached = other_version(path, run.id, d)
        if cached is not None:
            raise RunError(
                f"the cache holds another version of run {run.id} ({sanitize(str(cached))}); this command would "
                f"replace it with {sanitize(path.name)}'s: give --run {run.id} to grow the cached one, or remove it "
                f"first (tokentui runs rm {run.id})"
            )
    return run
