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
        # a format's name as the extension is no known extension (a trial was told .tree-json
        # "does not match" --format tree-json)
        ("a.tree-json", "tree-json", "tree-json"),
        ("a.seed002-jsonl", "seed002-jsonl", "seed002-jsonl"),
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
        ("a.csv", "\x1b[31m", "unknown format '␛\\[31m'"),  # (shown safely, as every other message)
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
    for out, why in ((tmp_path / "nope" / "x.csv", "no such folder"), (tmp_path / "plain" / "x.csv", "is a file")):
        with pytest.raises(ExportError, match=why) as info:
            write_file(make_run(), "csv", out)
        assert str(info.value).startswith(f"cannot write {out}:") and ".tmp" not in str(info.value)
    with pytest.raises(ExportError, match="is a folder"):
        write_file(make_run(), "csv", tmp_path)


# --- untrusted text in exports ---------------------------------------------------------------------
PAYLOADS = ["\x1b]52;c;cHduZWQ=\x07", "\x1b[2J", "\x7f", "\x9b2J", "\u202eevil", "\u2028", "\x00", "\U000e0001"]


def hostile_export_run():
    """A run whose tokens and metadata hold terminal payloads and formulas, with a non-finite value."""
    from tokentui.core.tokens import TokenTable

    run = make_run()
    texts = [p.encode() for p in PAYLOADS] + [b'=HYPERLINK("http://x")', b"+1+1", b"-x", b"@SUM(A1)", b"-0.5"]
    table = {i: texts[i % len(texts)] for i in range(run.meta.vocab_size)}
    order = list(dict.fromkeys(run.sequence(0).tolist() + run.sequence(1).tolist()))
    for j, tid in enumerate(order):  # every payload is a token of the run
        table[tid] = texts[j % len(texts)]
    run.tokens = TokenTable(table)
    run.meta.model = "\x1b]2;title\x07\u202e"
    run.branches[0].steps._a["entropy"][0] = float("inf")
    return run


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_exports_escape_every_control_and_format_character(fmt):
    text = exported(hostile_export_run(), fmt)
    assert text.isascii() or all(ch.isprintable() or ch == "\n" for ch in text)
    for raw in ("\x1b", "\x07", "\x7f", "\x9b", "\u202e", "\u2028", "\x00", "\U000e0001"):
        assert raw not in text
    for escaped in ("\\u001b", "\\u007f", "\\u009b", "\\u202e", "\\u2028", "\\udb40\\udc01"):
        assert escaped in text
    assert "NaN" not in text and "Infinity" not in text
    parse = (
        (lambda t: [json.loads(x, parse_constant=_refuse) for x in t.splitlines()])
        if fmt == "jsonl"
        else (lambda t: json.loads(t, parse_constant=_refuse))
    )
    parsed = parse(text)  # strict JSON; the escapes decode to the original characters
    assert "\u202eevil" in json.dumps(parsed, ensure_ascii=False)


def _refuse(name):
    raise AssertionError(f"non-strict JSON constant {name}")


def test_json_text_writes_null_for_non_finite_numbers():
    from tokentui.store.export import json_text

    assert (
        json_text({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5]}) == '{"a": null, "b": [null, null, 1.5]}'
    )


def test_csv_escapes_controls_and_neutralises_formulas_but_not_numbers():
    import csv

    text = exported(hostile_export_run(), "csv")
    for raw in ("\x1b", "\x07", "\x7f", "\x9b", "\u202e", "\x00"):
        assert raw not in text
    cells = {c for row in csv.reader(io.StringIO(text)) for c in row}
    assert '\'=HYPERLINK("http://x")' in cells and "'+1+1" in cells and "'-x" in cells
    assert not any(c[:1] in ("=", "+", "@") or (c[:1] == "-" and not _is_number(c)) for c in cells)
    assert any(c.startswith("-") and _is_number(c) for c in cells)  # the log-probs, untouched
    assert "␛]52;c;cHduZWQ=␇" in cells


@pytest.mark.parametrize(
    "value, want",
    [
        ("=1+1", "'=1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-x", "'-x"),
        ("+x", "'+x"),
        ("\tx", "'\tx"),
        ("-0.5", "-0.5"),
        ("+3", "+3"),
        ("1e-3", "1e-3"),
        ("a\nb", "a\nb"),
        ("\x1b[2J", "␛[2J"),
        (-0.5, -0.5),
        (None, ""),
    ],
)
def test_csv_cell(value, want):
    from tokentui.store.export import csv_cell

    assert csv_cell(value) == want


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_raw_csv_keeps_the_text_as_it_is():
    import csv

    buf = io.StringIO()
    export(hostile_export_run(), "csv", buf, raw_csv=True)
    cells = {c for row in csv.reader(io.StringIO(buf.getvalue())) for c in row}
    assert '=HYPERLINK("http://x")' in cells and "\x1b]52;c;cHduZWQ=\x07" in cells


# --- only regular files are written ----------------------------------------------------------------
def _special_targets(tmp_path):
    import os

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.csv"
    link.symlink_to(victim)
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "nowhere.csv")
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    return victim, {
        "symbolic link": [link, dangling],
        "not a regular file": [fifo, Path("/dev/null")],
        "is a folder": [folder],
    }


@pytest.mark.parametrize("overwrite", [False, True])
def test_write_file_refuses_links_fifos_devices_and_folders(tmp_path, overwrite):
    import stat

    victim, targets = _special_targets(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for why, paths in targets.items():
        for path in paths:
            with pytest.raises(ExportError, match=why) as info:
                write_file(make_run(), "csv", path, overwrite=overwrite)
            assert "\n" not in str(info.value)
    assert victim.read_text() == "keep me"
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "dangling.csv").is_symlink()
    assert stat.S_ISFIFO((tmp_path / "fifo.csv").lstat().st_mode)
    assert stat.S_ISCHR(Path("/dev/null").stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary file left
    assert not (tmp_path / "nowhere.csv").exists()


def test_an_error_mid_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    import tokentui.store.export as ex

    def broken(run, out, raw=False):
        out.write("half")
        raise RuntimeError("boom")

    monkeypatch.setitem(ex.__dict__, "write_csv", broken)
    with pytest.raises(RuntimeError):
        write_file(make_run(), "csv", tmp_path / "x.csv")
    assert list(tmp_path.iterdir()) == []


def test_csv_full_text_is_on_every_row_of_a_short_branch_and_on_the_first_of_a_long_one(monkeypatch):
    """seed 000 repeats the branch's text on every row: a 30,000-token run's file was 4.3 GB. Up
    to the limit every row holds it; past it, each branch's first row only, the others empty."""
    import csv

    from tokentui.core.display import decode_bytes
    from tokentui.store import export as E

    run = make_run(n_branch_steps=(40, 6))
    texts = {b.id: decode_bytes(run.text(b.id)) for b in run.branches}

    def full_texts() -> dict[int, list[str]]:
        rows = list(csv.DictReader(io.StringIO(exported(run, "csv"))))
        by: dict[int, list[str]] = {}
        for r in rows:
            by.setdefault(int(r["branch_id"]), []).append(r["full_text"])
        return by

    assert all(len(texts[b]) <= E.FULL_TEXT_EVERY_ROW for b in texts)
    for b, cells in full_texts().items():
        assert len(cells) > 1 and set(cells) == {E.csv_cell(texts[b], False)}
    monkeypatch.setattr(E, "FULL_TEXT_EVERY_ROW", min(len(t) for t in texts.values()) - 1)
    for b, cells in full_texts().items():
        assert cells[0] == E.csv_cell(texts[b], False) and set(cells[1:]) == {""}


@pytest.mark.parametrize(
    "source", ["synthetic", "empty branch", "sample_runs/tree.tokentui", "sample_runs/chat.tokentui"]
)
def test_the_json_export_written_a_step_at_a_time_holds_every_step_record(source):
    """write_json streams (built whole, a 30,000-token run's document took 2.7 GB): what it writes
    parses to the schema, the meta, and each branch's header, text and step records, as the
    JSONL records and the run itself give them — a branch without steps too."""
    from tokentui.core.display import decode_bytes
    from tokentui.store.export import step_record
    from tokentui.store.runfile import load_run

    if source in ("synthetic", "empty branch"):
        run = make_run()
        if source == "empty branch":
            run.add_branch(0, 2)
    else:
        run = load_run(Path(__file__).resolve().parents[2] / source)
    text = exported(run, "json")
    doc = json.loads(text)
    assert text.endswith("}\n") and "\x1b" not in text
    assert list(doc) == ["schema", "meta", "prompt_steps", "branches"]  # (not a comparison)
    assert doc["schema"] == "tokentui-run-json/1" and doc["meta"] == json.loads(json.dumps(run.meta.to_dict()))
    roundtrip = lambda records: json.loads(json.dumps(records, allow_nan=False))  # noqa: E731
    assert doc["prompt_steps"] == roundtrip(
        [step_record(run, 0, run.prompt.get(i, i, "prompt")) for i in range(len(run.prompt))]
    )
    assert len(doc["branches"]) == len(run.branches)
    for got, b in zip(doc["branches"], run.branches):
        assert got["text"] == decode_bytes(run.text(b.id, b.fork_position))
        head = {k: v for k, v in b.to_dict().items() if k != "steps"}  # (its count: the list replaces it)
        assert {k: got[k] for k in head} == json.loads(json.dumps(head))
        assert got["steps"] == roundtrip([step_record(run, b.id, b.step(i)) for i in range(len(b.steps))])
    if source == "empty branch":
        assert doc["branches"][-1]["steps"] == []
