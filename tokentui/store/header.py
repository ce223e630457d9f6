"""A run file's header: the JSON description (meta, branch list) in front of the arrays.

Reading it needs only the standard library, not numpy: listing the cache, resolving a run id and
checking a file before the explorer opens stay fast (`tokentui replay` draws its first frame from
this and loads the arrays after).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from tokentui.core.display import sanitize

SCHEMA_VERSION = 2  # 2: columns declared in the header (any measures); 1: a fixed set
FORMAT = "tokentui-run"
SUFFIX = ".tokentui"
MAX_FILE_BYTES = 8 << 30
MAX_HEADER_BYTES = 100 << 20


class RunFileError(Exception):
    """A run file cannot be used; str() is one line naming the file and the problem, safe to print
    (a file name or an array name from a damaged file may hold terminal escapes)."""

    def __init__(self, path: Path | str, problem: str) -> None:
        problem = sanitize(" ".join(str(problem).split())[:300])
        super().__init__(f"{sanitize(str(path))}: {problem}")
        self.path, self.problem = Path(path), problem


def read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The file's first `limit` bytes (all without one); every fault is a RunFileError."""
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise RunFileError(path, "is a folder, not a run file")
        if not path.is_file():
            raise RunFileError(path, "not a regular file")
        if size > MAX_FILE_BYTES:
            raise RunFileError(path, f"too large to be a run ({size} bytes)")
        with open(path, "rb") as f:
            return f.read(limit) if limit else f.read()
    except FileNotFoundError:
        raise RunFileError(path, "no such file") from None
    except IsADirectoryError:
        raise RunFileError(path, "is a folder, not a run file") from None
    except OSError as e:
        raise RunFileError(path, e.strerror or str(e)) from None


def parse_header_json(path: Path, raw: bytes) -> tuple[dict[str, Any], int]:
    """The run description from the safetensors header's `__metadata__`, checked for our format,
    and the file's schema version."""
    if len(raw) < 8:
        raise RunFileError(path, "not a tokentui run file (too short)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(raw):
        raise RunFileError(path, "not a tokentui run file (bad or truncated header)")
    try:
        header = json.loads(raw[8 : 8 + n])
        meta = header["__metadata__"]
        if meta.get("format") != FORMAT:
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RunFileError(path, "not a tokentui run file") from None
    try:
        schema = int(meta.get("schema"))
    except (TypeError, ValueError):
        raise RunFileError(path, "run file has no valid schema version") from None
    if schema > SCHEMA_VERSION:
        raise RunFileError(
            path, f"made by a newer tokentui (schema {schema}, this one reads ≤ {SCHEMA_VERSION}); upgrade tokentui"
        )
    if schema < 1:
        raise RunFileError(path, f"unknown schema version {schema}")
    try:
        run = json.loads(meta["run"])
        if not isinstance(run, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise RunFileError(path, "run description in the header is not valid JSON") from None
    return run, schema


def read_header(path: Path | str) -> dict[str, Any]:
    """Only the JSON description (meta, branch list) — cheap, for listing the cache."""
    path = Path(path)
    head = read_bytes(path, 8)
    if len(head) < 8:
        raise RunFileError(path, "not a tokentui run file (too short)")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER_BYTES:
        raise RunFileError(path, "not a tokentui run file (bad header)")
    return parse_header_json(path, read_bytes(path, 8 + n))[0]
