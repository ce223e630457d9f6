"""Writing a file all at once or not at all, shared by everything tokentui saves (run files,
exports, steering vectors): a crash, a full disk or a Ctrl-C mid-write leaves the old file (or
none), never half of a new one."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO


def write_atomically(
    path: Path,
    fill: Callable[[IO[bytes]], object],
    tmp: Path | None = None,
    check: Callable[[], None] | None = None,
    durable: bool = True,
) -> None:
    """`fill` writes into a temporary file beside `path` (`tmp`, or a unique name), which is
    flushed to disk and renamed over `path`; `check` runs just before the rename (it may refuse by
    raising). The temporary file is removed whatever goes wrong, also an exception that is not an
    OSError; the folder is synced afterwards (best effort) so that the rename survives a crash.
    `durable` False: neither is synced — still all or nothing when the process dies (the rename
    is atomic), but a power cut may lose the file: for files whose reader checks them anyway.
    Permissions: a new file gets what the user's umask gives any file (not mkstemp's 0600: a CSV
    or an export is meant to be shared as a run file is); a file replaced keeps its own."""
    if tmp is None:
        fd, tmp = new_temporary(path)
        f = open(fd, "wb")
    else:
        f = open(tmp, "xb")
    try:
        with f:
            with suppress(OSError, AttributeError):  # (no file there, or no modes here: as created)
                os.fchmod(f.fileno(), path.stat().st_mode & 0o7777)
            fill(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if check is not None:
            check()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if not durable:
        return
    try:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:
        pass


def temporary_name(path: Path) -> Path:
    """A name beside `path` no other save can be using: the process, the thread and a random part
    (the explorer's ctrl+s and the worker's autosave may save the same run at once). The process
    comes third from the end, so that `store.cache.clean_stale_temporaries` can tell a killed
    save's file (its process gone) from a live one's."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}.tmp")


def new_temporary(path: Path) -> tuple[int, Path]:
    """A new file with a unique name beside `path` (`temporary_name`), created exclusively with
    mode 0666 less the umask (as `open` creates files)."""
    while True:
        tmp = temporary_name(path)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue


class NotAFile(OSError):
    """What `open_to_read` found is neither a regular file nor (where allowed) a pipe."""


PIPE_NOTICE_SECONDS = 1.0  # a pipe silent this long: `open_to_read` says what it waits for


def open_to_read(
    path: Path, follow_links: bool = True, pipes: bool = False, waiting: Callable[[str, bool], None] | None = None
) -> tuple[IO[bytes], os.stat_result]:
    """`path` opened for reading, with its status: every check is of the file opened, not of the
    name looked at before (a received folder's file swapped for a link or a pipe between a check
    and the read changes nothing). A folder raises IsADirectoryError, anything but a regular file
    NotAFile — except, with `pipes`, a FIFO or a terminal (`--file <(cmd)`, /dev/stdin), read
    once its writer sends (the open itself never blocks; `_wait_for_writer`). `follow_links`
    False: a symbolic link is refused (OSError ELOOP)."""
    import stat

    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    f = os.fdopen(os.open(path, flags), "rb")
    try:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode):
            return f, st
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "is a folder", str(path))
        if pipes and (stat.S_ISFIFO(st.st_mode) or os.isatty(f.fileno())):
            return _wait_for_writer(f, path, waiting, os.isatty(f.fileno()))
        raise NotAFile(f"{path}: not a regular file" + (" or a pipe" if pipes else ""))
    except BaseException:
        f.close()
        raise


def _wait_for_writer(
    f: IO[bytes], path: Path, waiting: Callable[[str, bool], None] | None, terminal: bool
) -> tuple[IO[bytes], os.stat_result]:
    """A pipe or terminal, opened without blocking, made ready to read: once its writer has sent
    something or closed, it blocks as any file does. The same descriptor throughout — closing it
    and opening the name again (blocking until a writer comes) lost a writer that had opened,
    written and closed in between, and then waited for ever. A pipe nobody writes to waits for
    ever, silently (a trial's `--prompts fifo` looked hung): `waiting(path, terminal)` is called
    once when nothing came within PIPE_NOTICE_SECONDS. (Linux: a FIFO no writer has opened
    since this open is not ready, so the wait is for the writer.)"""
    import select

    if not select.select([f], [], [], PIPE_NOTICE_SECONDS)[0]:
        if waiting is not None:
            waiting(str(path), terminal)
        select.select([f], [], [])
    os.set_blocking(f.fileno(), True)
    return f, os.fstat(f.fileno())


def probe_folder(folder: Path) -> None:
    """Make a file in `folder` and remove it: OSError when the folder takes no new file. Permission
    bits do not tell (root passes them; /sys refuses everyone), so a command that will write there
    tries before its work, not after it."""
    fd, name = new_temporary(folder / ".tokentui-probe")
    os.close(fd)
    os.unlink(name)


def write_crash_log(error: BaseException, directory: Path) -> Path | None:
    """The traceback of `error` in a new file under `directory` (its path), or None when that
    cannot be written (the one-line message then says so). A bug's traceback holds local values —
    untrusted run text among them — so it goes to a file, never onto the user's terminal."""
    import time
    import traceback

    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text("".join(traceback.format_exception(error)), encoding="utf-8")
    except OSError:
        return None
    return path


def crash_line(what: str, error: BaseException | None, log: Path | None) -> str:
    """The one line that reports a crash: what happened, the error (sanitised, cut) and where its
    traceback went. Shared by the explorer and the commands."""
    from tokentui.core.display import sanitize

    told = " ".join(f"{type(error).__name__}: {error}".split())[:300] if error is not None else "an unknown error"
    where = f"the traceback is in {sanitize(str(log))}" if log else "no log could be written"
    return f"{what} {sanitize(told)}; {where}"


def terminal_gone() -> None:
    """After a hang-up (SIGHUP: an SSH session dropped) the terminal takes no more output: writes
    fail with EIO, which would end a command, or the explorer, before it saves. What would go to
    it goes nowhere instead (standard input, output and error, where they are the terminal: reading
    it then ends too)."""
    import stat

    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        return
    for fd in (0, 1, 2):  # (isatty fails on a hung-up terminal: a character device is one)
        with suppress(OSError):
            if stat.S_ISCHR(os.fstat(fd).st_mode) and not os.path.samestat(os.fstat(fd), os.fstat(null)):
                os.dup2(null, fd)
    os.close(null)
