"""Exports: the one per-token record, the format a file name asks for, and safe file writes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.factories import make_run
from tokentui.store.export import ExportError, export, format_for, iter_steps, token_record, write_file


def exported(run, fmt: str) -> str:
    buf = io.StringIO()
    export(run, fmt, buf)
    return buf.getvalue()


def test_jsonl_lines_are_token_records_of_every_branch():
    run = make_run()
    lines = [json.loads(x) for x in exported(run, "jsonl").splitlines()]
    want = [token_record(run, 0, s) for s in iter_steps(run, 0)]
    want += [token_record(run, 1, s) for s in iter_steps(run, 1, run.branches[1].fork_position)]
    assert lines == json.loads(json.dumps(want))
    assert all(x["run_id"] == run.id for x in lines)


@pytest.mark.parametrize(
    "name, fmt, want",
    [
        ("a.csv", None, "csv"),
        ("a.JSON", None, "json"),
        ("a.jsonl", None, "jsonl"),
        ("a.jsonl", "jsonl", "jsonl"),
        ("a.txt", "json", "json"),
        ("a", "csv", "csv"),
    ],
)
def test_format_for_a_file_name(name, fmt, want):
    assert format_for(Path(name), fmt) == want


@pytest.mark.parametrize(
    "name, fmt, expect",
    [
        ("a.json", "csv", "does not match"),
        ("a.txt", None, "cannot tell the format"),
        ("a", None, "csv, jsonl, json"),
        ("a.csv", "xml", "unknown format"),
    ],
)
def test_format_for_refuses(name, fmt, expect):
    with pytest.raises(ExportError, match=expect):
        format_for(Path(name), fmt)


def test_write_file_is_atomic_and_keeps_an_existing_file(tmp_path):
    run, out = make_run(), tmp_path / "x.json"
    assert write_file(run, "json", out) == out
    first = out.read_text()
    out.write_text("mine")
    with pytest.raises(ExportError, match="already exists; add --force"):
        write_file(run, "json", out)
    assert out.read_text() == "mine"
    write_file(run, "json", out, overwrite=True)
    assert out.read_text() == first and sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_write_file_errors_name_the_users_file(tmp_path):
    (tmp_path / "plain").write_text("")
    for out in (tmp_path / "nope" / "x.csv", tmp_path / "plain" / "x.csv"):
        with pytest.raises(ExportError, match="no such folder") as info:
            write_file(make_run(), "csv", out)
        assert str(info.value).startswith(f"cannot write {out}:") and ".tmp" not in str(info.value)
    with pytest.raises(ExportError, match="is a folder"):
        write_file(make_run(), "csv", tmp_path)
