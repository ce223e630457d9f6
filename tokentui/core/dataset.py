"""The inputs of `tokentui batch`: a prompts file or a dataset of prompt/response pairs, read as
untrusted text; and how a dataset item becomes a run.

Files come from anywhere (scraped prompts, another tool's JSONL, a half-written download), so a
bad line never stops the reading: each one becomes a `Problem` (its line number and why — not
UTF-8, not JSON, not an object, a field missing, not text, empty, too long) and the reading
goes on. Only a file that cannot be opened at all is an error. Limits keep a hostile file from
exhausting memory: a line is read at most MAX_LINE_BYTES at a time (the rest of a longer one is
skipped unread into memory), texts are at most MAX_TEXT_CHARS characters (a run file's prompt
limit), and reading stops after MAX_FILE_BYTES or MAX_ITEMS with one problem saying where.

Formats:
- prompts: one prompt per line (UTF-8; the line break is not part of the prompt), or, for a file
  named `*.jsonl` / `*.ndjson`, JSON Lines whose objects hold the prompt in a field (`prompt`);
- dataset: JSON Lines whose objects hold a prompt and a response (`prompt`, `response`).
Item numbers are 1-based line numbers in the file. Blank lines of a JSON Lines file are not
items; an empty line of a plain prompts file is an empty prompt (reported).

A dataset item is scored teacher-forced as prompt + response in one sequence; `response_run`
turns that scored sequence into a run whose prompt is the item's prompt and whose root branch is
the response, every token of it `forced` (given, not sampled), so the explorer, the exports and
`loss_positions` can tell the response's positions from the prompt's. No torch here.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from tokentui.core.columns import Columns
from tokentui.core.params import RunError, check_text
from tokentui.core.run import Run

MAX_LINE_BYTES = 8 << 20  # a JSON line holding a 1M-character prompt and a response fits
MAX_TEXT_CHARS = 1_000_000  # a run file's prompt may hold this many (store/header.py)
MAX_FILE_BYTES = 1 << 30
MAX_ITEMS = 1_000_000
JSONL_SUFFIXES = (".jsonl", ".ndjson")
LOSS_OVER = ("response", "all")


class DatasetError(RunError):
    """The input file cannot be read at all; one line for the user (a RunError: every command
    that reports those reports this one)."""


@dataclass(frozen=True)
class Item:
    """One usable line: a prompt, and for a dataset its response."""

    index: int  # 1-based line number in the file
    prompt: str
    response: str | None = None


@dataclass(frozen=True)
class Problem:
    """A line that is not an item, and why (one line of text, safe to print once sanitised)."""

    index: int  # 1-based line number
    why: str


@dataclass
class Source:
    """What a file held: its items in file order and the problems of its other lines."""

    path: Path
    kind: str  # "prompts" or "dataset"
    items: list[Item] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _lines(f: BinaryIO, source: Source, jsonl: bool) -> list[tuple[int, bytes | None]]:
    """(line number, its bytes without the line break) of every line; None for a line over
    MAX_LINE_BYTES (a problem is noted, its rest skipped in pieces). Stops with a problem after
    MAX_FILE_BYTES or MAX_ITEMS lines. A prompts file's line ends at LF, CR LF or a CR alone (an
    old Mac file), as Python's text mode reads a file; a JSON Lines line ends at LF (a CR before
    it dropped) and nowhere else: JSON allows a raw CR as whitespace inside an object, and jq and
    editors number lines so. The bytes go through latin-1, one character each, so that the lines'
    own bytes come back unchanged and are decoded (and refused) line by line."""
    text = io.TextIOWrapper(f, encoding="latin-1", newline="\n" if jsonl else None)
    try:
        return _text_lines(text, source)
    finally:
        text.detach()


def _text_lines(text: io.TextIOWrapper, source: Source) -> list[tuple[int, bytes | None]]:
    out: list[tuple[int, bytes | None]] = []
    read = 0
    number = 0
    while True:
        line = text.readline(MAX_LINE_BYTES + 1)
        if not line:
            return out
        number += 1
        read += len(line)
        if len(line) > MAX_LINE_BYTES and not line.endswith("\n"):
            while line and not line.endswith("\n") and read <= MAX_FILE_BYTES:  # skip the rest, a piece at a time
                line = text.readline(MAX_LINE_BYTES)
                read += len(line)
            source.problems.append(Problem(number, f"line longer than {MAX_LINE_BYTES // (1 << 20)} MiB"))
            out.append((number, None))
        else:
            out.append((number, line.removesuffix("\n").removesuffix("\r").encode("latin-1")))
        if read > MAX_FILE_BYTES or number >= MAX_ITEMS:
            why = f"{MAX_FILE_BYTES >> 20} MiB" if read > MAX_FILE_BYTES else f"{MAX_ITEMS} lines"
            if text.read(1):
                source.problems.append(
                    Problem(number, f"the file holds more than {why}: the lines after this are not read")
                )
            return out


def _open(path: Path, waiting: Callable[[str, bool], None] | None) -> BinaryIO:
    """The file or pipe (`--prompts <(cmd)`) opened; a folder or a device is one error.
    `waiting(path, terminal)`: a pipe has sent nothing for a while (`open_to_read`)."""
    from tokentui.core.files import NotAFile, open_to_read

    try:
        return open_to_read(path, pipes=True, waiting=waiting)[0]  # type: ignore[return-value]
    except IsADirectoryError:
        raise DatasetError(f"{path} is a folder, not a file") from None
    except NotAFile:
        raise DatasetError(f"{path} is not a regular file or a pipe") from None
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the name
        raise DatasetError(f"{path}: {getattr(e, 'strerror', None) or e}") from None


def _field(obj: dict[str, Any], name: str) -> str:
    """Field `name` of a JSON object as usable text, or ValueError saying why not (a missing field
    names those the object has: a dataset with other field names shows them at once)."""
    if name not in obj:
        keys = [repr(str(k)[:30]) for k in list(obj)[:5]]
        has = f"it has {', '.join(keys)}{', …' if len(obj) > 5 else ''}" if keys else "an empty object"
        raise ValueError(f"no {name!r} field ({has})")
    value = obj[name]
    if value is None:
        raise ValueError(f"field {name!r} is null, not text")
    if not isinstance(value, str):
        kind = "a number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__
        raise ValueError(f"field {name!r} is not text ({'true/false' if isinstance(value, bool) else kind})")
    return _checked(value, f"field {name!r}")


def _checked(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} is empty")
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"{what} is longer than {MAX_TEXT_CHARS} characters")
    return check_text(value, what)


def _decode(raw: bytes, number: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {e.start + 1})") from None
    return text.removeprefix("\ufeff") if number == 1 else text


def _object(raw: bytes, number: int) -> dict[str, object] | None:
    """A JSON Lines line as an object; None for a blank line; ValueError when it is not one."""
    text = _decode(raw, number)
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ValueError("not valid JSON (nested too deep)") from None
    except ValueError as e:  # (a JSONDecodeError's msg ends in "at", its position following: say it)
        msg, col = getattr(e, "msg", None), getattr(e, "colno", None)
        where = f" at column {col}" if isinstance(col, int) else ""
        raise ValueError(f"not valid JSON ({msg.removesuffix(' at')}{where})" if msg else "not valid JSON") from None
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object (a JSON {type(obj).__name__})")
    return obj


def text_lines(text: str) -> list[str]:
    """A whole prompts file's lines as `read_prompts` breaks them (at LF, CR LF or a lone CR; a
    BOM at the start dropped): for a reader that takes the file at once (steer's contrast sets)."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")


def is_jsonl(path: Path) -> bool:
    """Whether a prompts file is read as JSON Lines (by its name) rather than one prompt a line."""
    return path.suffix.lower() in JSONL_SUFFIXES


def read_prompts(
    path: Path,
    prompt_field: str = "prompt",
    jsonl: bool | None = None,
    waiting: Callable[[str, bool], None] | None = None,
) -> Source:
    """The prompts of a file: one a line, or (`jsonl`; None: by the name, `*.jsonl`, `*.ndjson`)
    the `prompt_field` of each JSON object. DatasetError only when the file cannot be opened.
    `waiting(path, terminal)`: the file is a pipe that has sent nothing for a while."""
    source = Source(path, "prompts")
    jsonl = is_jsonl(path) if jsonl is None else jsonl
    with _open(path, waiting) as f:
        lines = _lines(f, source, jsonl)
    for number, raw in lines:
        if raw is None:
            continue
        try:
            if jsonl:
                obj = _object(raw, number)
                if obj is None:
                    continue
                prompt = _field(obj, prompt_field)
            else:
                prompt = _checked(_decode(raw, number), "the prompt")
        except ValueError as e:
            source.problems.append(Problem(number, str(e)))
            continue
        source.items.append(Item(number, prompt))
    source.problems.sort(key=lambda p: p.index)
    return source


def field_hint(source: Source) -> str:
    """When a file gave no item and some line lacked a field: what to give (for the one-line error
    that ends the command), else ""."""
    if source.items or not any(p.why.startswith("no '") for p in source.problems):
        return ""
    if source.kind == "prompts":
        return " (--prompt-field names the field that holds the prompt)"
    return " (--prompt-field and --response-field name the fields that hold them)"


def all_json_objects(source: Source) -> bool:
    """Whether every prompt read one a line is a JSON object: JSON Lines read as plain text (a
    file named otherwise than `*.jsonl`), which a batch warns about."""
    if not source.items:
        return False
    for item in source.items:
        text = item.prompt.strip()
        if not (text.startswith("{") and text.endswith("}")):
            return False
        try:
            if not isinstance(json.loads(text), dict):
                return False
        except ValueError:
            return False
    return True


def read_dataset(
    path: Path,
    prompt_field: str = "prompt",
    response_field: str = "response",
    waiting: Callable[[str, bool], None] | None = None,
) -> Source:
    """The prompt/response pairs of a JSON Lines file (fields named `prompt_field` and
    `response_field`). DatasetError only when the file cannot be opened. `waiting(path, terminal)`: the
    file is a pipe that has sent nothing for a while."""
    if prompt_field == response_field:
        raise DatasetError(f"the prompt and the response cannot both be the field {prompt_field!r}")
    source = Source(path, "dataset")
    with _open(path, waiting) as f:
        lines = _lines(f, source, jsonl=True)
    for number, raw in lines:
        if raw is None:
            continue
        try:
            obj = _object(raw, number)
            if obj is None:
                continue
            prompt = _field(obj, prompt_field)
            response = _field(obj, response_field)
        except ValueError as e:
            source.problems.append(Problem(number, str(e)))
            continue
        source.items.append(Item(number, prompt, response))
    source.problems.sort(key=lambda p: p.index)
    return source


# --- a dataset item as a run ------------------------------------------------------------------


def response_run(scored: Run, n_prompt: int) -> Run:
    """The teacher-forced run of prompt + response (all of it in `scored.prompt`, as the score job
    makes it) split at `n_prompt`: the first `n_prompt` positions stay the prompt, the rest become
    the root branch, every token `forced` (given by the dataset), status "scored". The values are
    the same numbers, moved, not recomputed."""
    arrays = scored.prompt.arrays()
    n = len(arrays["token_id"])
    if not 1 <= n_prompt < n:
        raise ValueError(f"cannot split {n} scored positions at {n_prompt}")
    run = Run(
        scored.meta.copy(),
        scored.tokens.copy(),
        Columns.from_arrays(scored.layout, {k: a[:n_prompt] for k, a in arrays.items()}),
        scored.layout,
    )
    root = run.add_branch(None, n_prompt)
    root.steps = Columns.from_arrays(scored.layout, {k: a[n_prompt:] for k, a in arrays.items()})
    root.n_forced = n - n_prompt
    root.status = "scored"
    return run


def loss_positions(run: Run, loss_over: str = "response") -> range:
    """The absolute positions of the root branch whose tokens count in a loss: "response" — the
    root branch's own tokens (a dataset's response, a generation's generated tokens); "all" —
    every position that has a prediction (1 … end; position 0 has none)."""
    if loss_over not in LOSS_OVER:
        raise ValueError(f"unknown --loss-over {loss_over!r} (choose from {', '.join(LOSS_OVER)})")
    root = run.branches[0]
    start = max(1, root.fork_position if loss_over == "response" else 1)
    return range(start, root.end)
