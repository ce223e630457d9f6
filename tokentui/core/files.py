"""Writing a file all at once or not at all, shared by everything tokentui saves (run files,
exports, steering vectors): a crash, a full disk or a Ctrl-C mid-write leaves the old file (or
none), never half of a new one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomically(
    path: Path,
    fill: Callable[[IO[bytes]], object],
    tmp: Path | None = None,
    check: Callable[[], None] | None = None,
) -> None:
    """`fill` writes into a temporary file beside `path` (`tmp`, or a unique name), which is
    flushed to disk and renamed over `path`; `check` runs just before the rename (it may refuse by
    raising). The temporary file is removed whatever goes wrong, also an exception that is not an
    OSError; the folder is synced afterwards (best effort) so that the rename survives a crash."""
    if tmp is None:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        f = open(fd, "wb")
    else:
        f = open(tmp, "xb")
    try:
        with f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    try:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:
        pass
