"""Exports of a run for analysis: CSV (seed 000's columns plus rank/logprob), JSONL (one token per
line with its top-k, like seed 002) and JSON (the whole run with its tree). No torch needed.

`token_record` is the one per-token record of JSONL exports and of `generate --json` / `score
--json`, so a line printed live and the same line exported later from the saved run are equal.
`write_file` is the one way to write an export to a named file: the format follows the file's
extension, an existing file is kept unless overwriting was asked for, and the write is atomic.

Exports are read with `cat` and opened in spreadsheets, and token text is untrusted:
- every JSON writer goes through `json_text`: strict JSON (non-finite numbers are written as
  null, never NaN/Infinity) with every control, format or line/paragraph-separator character
  (Unicode Cc, Cf, Zl, Zp: ESC, DEL, C1 such as U+009B, bidi overrides such as U+202E) written as
  a \\uXXXX escape, so the file holds no byte that can drive a terminal;
- CSV cells go through `csv_cell`: control characters become the same visible escapes as on
  screen (ESC → ␛), and a text cell that starts with = + - @ (or tab/CR) gets a leading ' so a
  spreadsheet does not run it as a formula; plain numbers such as -0.5 are left alone. `raw=True`
  (`export --raw-csv`) writes the text as it is.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import stat
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from tokentui.core.display import decode_bytes, sanitize
from tokentui.core.run import Run
from tokentui.core.step import Step

CSV_COLUMNS = [
    "prompt_id",
    "branch_id",
    "full_text",
    "token_position",
    "current_token",
    "next_token",
    "next_token_id",
    "next_token_kind",
    "entropy",
    "probability_of_next_token",
    "logprob_of_next_token",
    "rank_of_next_token",
]
FORMATS = ("csv", "jsonl", "json")


class TextSink(Protocol):
    """Where an export is written: an open text file, standard output, or the CLI's pipe-safe output."""

    def write(self, text: str, /) -> object: ...


class ExportError(ValueError):
    """An export cannot be written as asked; the message is one line for the user."""


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


_NON_ASCII = re.compile(r"[^\x00-\x7e]")
_ESCAPED_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"))


def _escape_char(m: re.Match[str]) -> str:
    """A character json.dumps left raw, as a \\uXXXX escape (a surrogate pair above U+FFFF) when
    it could act on a terminal or hide text; any other character as it is."""
    ch = m.group()
    code = ord(ch)
    if code != 0x7F and unicodedata.category(ch) not in _ESCAPED_CATEGORIES:
        return ch
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def _finite(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_text(obj: Any, indent: int | None = None) -> str:
    """`obj` as strict JSON that is safe to `cat`: the one serialiser of every JSON output (JSON
    and JSONL exports, `generate --json`, `score --json`). json.dumps escapes only characters
    below U+0020; DEL, C1 controls, bidi overrides and other format characters would reach a
    terminal raw, so they are escaped here too (outside strings JSON is ASCII, so the escapes can
    only land inside strings). Non-finite numbers become null."""
    text = json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False, indent=indent)
    return _NON_ASCII.sub(_escape_char, text)  # (DEL is ASCII: no isascii() shortcut)


_KEPT_IN_CSV = re.compile(r"[^\n\t]+")  # line breaks and tabs stay (quoted cells hold them); the rest is escaped
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any, raw: bool = False) -> Any:
    """One CSV cell, safe to open in a spreadsheet and to `cat`: control characters shown as
    visible escapes (core.display.sanitize: ESC → ␛, NUL → ␀, U+202E → <U+202E>; line breaks
    and tabs kept), and text that a
    spreadsheet would run as a formula (starting with = + - @, tab or CR) prefixed with ' — the
    OWASP rule for CSV injection. Plain numbers (-0.5, +3) are kept as numbers. `raw`: as it is."""
    if value is None:
        return ""
    if raw or not isinstance(value, str):
        return value
    text = value if value.isprintable() else _KEPT_IN_CSV.sub(lambda m: sanitize(m.group()), value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        text = "'" + text
    return text


def _text(run: Run, token_id: int) -> str:
    return decode_bytes(run.tokens.bytes_of(token_id))


def step_record(run: Run, branch_id: int, step: Step) -> dict[str, Any]:
    """One token as a JSON-ready dict (the steps of JSON exports; `token_record` adds the run id)."""
    top = [
        [int(i), _text(run, int(i)), round(float(lp), 5)] for i, lp in zip(step.topk_ids, step.topk_logprobs) if i >= 0
    ]
    return {
        "branch": branch_id,
        "position": step.position,
        "kind": step.kind,
        "token_id": step.token_id,
        "token": _text(run, step.token_id),
        "logprob": _num(step.logprob),
        "prob": _num(step.prob),
        "rank": step.rank or None,
        "entropy": _num(step.entropy),
        "sampler_prob": _num(step.sampler_prob),
        "top_k": top,
        "layer_entropy": [_num(float(x)) for x in step.layer_entropy],
    }


def token_record(run: Run, branch_id: int, step: Step) -> dict[str, Any]:
    """One token of a run as one JSONL line's object: the run id, then `step_record`. The schema of
    JSONL exports, `generate --json` and `score --json` alike."""
    return {"run_id": run.id, **step_record(run, branch_id, step)}


def token_line(run: Run, branch_id: int, step: Step) -> str:
    """`token_record` as one line of JSON (no newline)."""
    return json_text(token_record(run, branch_id, step))


def iter_steps(run: Run, branch_id: int, start: int = 0) -> Iterator[Step]:
    for pos in range(start, run.length(branch_id)):
        yield run.step(branch_id, pos)


def _branch_rows(run: Run, branch_id: int) -> Iterator[dict[str, Any]]:
    """Rows of a branch's own positions (the root also covers the prompt)."""
    b = run.branch(branch_id)
    full_text = decode_bytes(run.text(branch_id))
    seq = run.sequence(branch_id)
    first = 0 if b.parent is None else b.fork_position
    for pos in range(max(first, 1), run.length(branch_id)):
        step = run.step(branch_id, pos)
        yield {
            "prompt_id": run.id,
            "branch_id": branch_id,
            "full_text": full_text,
            "token_position": pos - 1,
            "current_token": _text(run, int(seq[pos - 1])),
            "next_token": _text(run, step.token_id),
            "next_token_id": step.token_id,
            "next_token_kind": step.kind,
            "entropy": _num(step.entropy),
            "probability_of_next_token": _num(step.prob),
            "logprob_of_next_token": _num(step.logprob),
            "rank_of_next_token": step.rank,
        }


def write_csv(run: Run, out: TextSink, raw: bool = False) -> None:
    """One row per token (see `csv_cell` for what happens to the text, and `raw`)."""
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for b in run.branches:
        for row in _branch_rows(run, b.id):
            w.writerow({k: csv_cell(v, raw) for k, v in row.items()})


def write_jsonl(run: Run, out: TextSink, raw: bool = False) -> None:
    for b in run.branches:
        start = 0 if b.parent is None else b.fork_position
        for step in iter_steps(run, b.id, start):
            out.write(token_line(run, b.id, step))
            out.write("\n")


def run_to_json(run: Run) -> dict[str, Any]:
    prompt = [step_record(run, 0, run.prompt.get(i, i, "prompt")) for i in range(len(run.prompt))]
    branches = [
        {
            **b.to_dict(),
            "text": decode_bytes(run.text(b.id, b.fork_position)),
            "steps": [step_record(run, b.id, b.step(i)) for i in range(len(b.steps))],
        }
        for b in run.branches
    ]
    return {"schema": "tokentui-run-json/1", "meta": run.meta.to_dict(), "prompt_steps": prompt, "branches": branches}


def write_json(run: Run, out: TextSink, raw: bool = False) -> None:
    out.write(json_text(run_to_json(run), indent=1))
    out.write("\n")


def export(run: Run, fmt: str, out: TextSink, raw_csv: bool = False) -> None:
    """Write `run` in `fmt` to `out`; `raw_csv`: CSV cells as they are (see `csv_cell`). JSON is
    always escaped (the escapes are lossless)."""
    {"csv": write_csv, "jsonl": write_jsonl, "json": write_json}[fmt](run, out, raw_csv)


def format_for(path: Path, fmt: str | None = None) -> str:
    """The export format for writing to `path`: `fmt` when given, else the file's extension. A
    known extension that disagrees with `fmt` is refused (a .json file holding CSV helps nobody);
    an unknown extension needs `fmt`."""
    ext = path.suffix.lower().removeprefix(".")
    if fmt is not None:
        if fmt not in FORMATS:
            raise ExportError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
        if ext in FORMATS and ext != fmt:
            raise ExportError(
                f"--format {fmt} does not match the extension of {path.name} (.{ext}); change one of them"
            )
        return fmt
    if ext not in FORMATS:
        raise ExportError(
            f"cannot tell the format from the name {path.name}: end it in .csv, .jsonl or .json, or give --format "
            f"({', '.join(FORMATS)})"
        )
    return ext


def check_target(path: Path, overwrite: bool = False) -> None:
    """Refuse a name that cannot take a regular file: a folder, a symlink, a FIFO, a device or a
    socket there is never replaced (a rename over it would turn it into a file, or follow the
    link), and an existing file only with `overwrite`."""
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: no such folder {path.parent}")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise ExportError(f"cannot write {path}: {e.strerror or e}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ExportError(f"{path} is a folder; give a file name")
        if stat.S_ISLNK(st.st_mode):
            raise ExportError(f"{path} is a symbolic link; give the name of a regular file")
        if not stat.S_ISREG(st.st_mode):
            raise ExportError(f"{path} is not a regular file (a FIFO, device or socket); give another name")
        if not overwrite:
            raise ExportError(f"{path} already exists; add --force to overwrite it")


def write_file(run: Run, fmt: str, path: Path, overwrite: bool = False, raw_csv: bool = False) -> Path:
    """Export `run` into the file `path` atomically (a uniquely named temporary file beside it,
    fsync, then a rename). The temporary file is removed whatever goes wrong, also an exception
    that is not an OSError or a Ctrl-C mid-write. Errors name `path`, never the temporary file."""
    check_target(path, overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with open(fd, "w", encoding="utf-8", newline="") as f:
            export(run, fmt, f, raw_csv)
            f.flush()
            os.fsync(f.fileno())
        check_target(path, overwrite)  # nothing non-regular appeared there while writing
        os.replace(tmp, path)
    except OSError as e:
        raise ExportError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
