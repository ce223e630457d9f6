"""Exports of a run for analysis: CSV (seed 000's columns plus rank/logprob), JSONL (one token per
line with its top-k, like seed 002) and JSON (the whole run with its tree). No torch needed.

`token_record` is the one per-token record of JSONL exports and of `generate --json` / `score
--json`, so a line printed live and the same line exported later from the saved run are equal.
`write_file` is the one way to write an export to a named file: the format follows the file's
extension, an existing file is kept unless overwriting was asked for, and the write is atomic.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from tokentui.core.display import decode_bytes
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
    return None if math.isnan(x) else float(x)


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
    return json.dumps(token_record(run, branch_id, step), ensure_ascii=False)


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


def write_csv(run: Run, out: TextSink) -> None:
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for b in run.branches:
        for row in _branch_rows(run, b.id):
            w.writerow({k: "" if v is None else v for k, v in row.items()})


def write_jsonl(run: Run, out: TextSink) -> None:
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


def write_json(run: Run, out: TextSink) -> None:
    json.dump(run_to_json(run), out, ensure_ascii=False, indent=1)
    out.write("\n")


def export(run: Run, fmt: str, out: TextSink) -> None:
    {"csv": write_csv, "jsonl": write_jsonl, "json": write_json}[fmt](run, out)


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
    """Refuse a file name that cannot be written, or an existing file unless `overwrite`."""
    if path.is_dir():
        raise ExportError(f"{path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: no such folder {path.parent}")
    if path.exists() and not overwrite:
        raise ExportError(f"{path} already exists; add --force to overwrite it")


def write_file(run: Run, fmt: str, path: Path, overwrite: bool = False) -> Path:
    """Export `run` into the file `path` atomically (a temporary file beside it, then a rename).
    Errors name `path`, the file the user gave, never the temporary file."""
    check_target(path, overwrite)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            export(run, fmt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {e.strerror or e}") from None
    return path
