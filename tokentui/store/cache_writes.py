"""Saving a run into the cache by its id without losing a version another process saved there.

The explorer and the commands save a run into `<cache>/<run id>.tokentui` each time it changes.
Two processes growing one run (the explorer open on it, `tokentui tree --run` in another
terminal) each wrote their own version over the other's: a trial lost a tree search's nodes so,
silently. Each process remembers every cache file as it last read or wrote it (its modification
time, size and inode: an atomic save makes a new file); a save that finds the file changed since
then leaves that version where it is and writes this one beside it, `<run id>-2.tokentui` (the
first free number), a file holding the same run (`tokentui runs` shows it `(holds run ID)`). Later
saves of this process follow it there. The caller tells the user the returned note.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from tokentui.core.display import sanitize
from tokentui.core.run import Run
from tokentui.store.cache import run_path
from tokentui.store.header import SUFFIX
from tokentui.store.runfile import save_run

_lock = threading.Lock()  # (the explorer's worker autosaves while its UI thread may save too)
_seen: dict[Path, tuple[int, int, int]] = {}  # file → as this process last read or wrote it
_moved: dict[Path, Path] = {}  # a run's cache file → where this process saves that run instead


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _key(path: Path) -> Path:
    return Path(os.path.abspath(path))


def remember(path: Path) -> None:
    """Note `path` as this process has just read it: a later save there first checks that no
    other process changed it since."""
    sig = _signature(path)
    if sig is not None:
        with _lock:
            _seen[_key(path)] = sig


def where_saved(run_id: str, directory: Path) -> Path:
    """The file this process saves run `run_id` to in the cache `directory`: its id's, or the one
    beside it a changed file sent it to."""
    home = _key(run_path(run_id, directory))
    with _lock:
        return _moved.get(home, home)


@dataclass(frozen=True)
class Saved:
    path: Path
    note: str | None = None  # one line for the user when the run went to another file than its id's


def save_in_cache(run: Run, directory: Path) -> Saved:
    """Save `run` atomically into the cache `directory` by its id, or, where another process
    changed that file since this one read or wrote it, beside it (see the module's docstring)."""
    home = _key(run_path(run.id, directory))
    with _lock:
        path = _moved.get(home, home)
        known, now = _seen.get(path), _signature(path)
        note = None
        if known is not None and now is not None and now != known:
            number = 2
            while (path.parent / f"{run.id}-{number}{SUFFIX}").exists():
                number += 1
            path = path.parent / f"{run.id}-{number}{SUFFIX}"
            _moved[home] = path
            note = (
                f"run {sanitize(run.id)} was changed on disk by another tokentui since this one read it: that "
                f"version stays, and this one is saved as {sanitize(path.stem)} (tokentui replay {sanitize(path.stem)})"
            )
        save_run(run, path)
        sig = _signature(path)
        if sig is not None:
            _seen[path] = sig
    return Saved(path, note)
