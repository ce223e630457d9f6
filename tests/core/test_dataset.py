"""Reading `batch`'s inputs as untrusted files: every bad line is one problem naming its line
(and the reading goes on), limits hold, and a dataset item's run splits at the response."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.factories import make_run
from tokentui.core import dataset
from tokentui.core.columns import Columns
from tokentui.core.dataset import DatasetError, loss_positions, read_dataset, read_prompts, response_run
from tokentui.core.run import Run


def _write(path, lines: list[bytes | str]) -> None:
    path.write_bytes(b"".join((x.encode() if isinstance(x, str) else x) + b"\n" for x in lines))


def test_a_prompts_file_is_one_prompt_a_line_and_bad_lines_are_problems(tmp_path):
    f = tmp_path / "p.txt"
    _write(f, ["\ufeffdef f(x):", "", "  import os  \r", "   ", b"caf\xe9", "x = [/] \x1b[2J"])
    src = read_prompts(f)
    assert [(i.index, i.prompt) for i in src.items] == [(1, "def f(x):"), (3, "  import os  "), (6, "x = [/] \x1b[2J")]
    assert [(p.index, p.why) for p in src.problems] == [
        (2, "the prompt is empty"),
        (4, "the prompt is empty"),
        (5, "not UTF-8 text (byte 4)"),
    ]


def test_a_line_ends_at_lf_crlf_or_a_lone_cr_as_text_mode_reads_it(tmp_path):
    """An old Mac file (CR alone) is one prompt a line, not one prompt; the other breaks that
    str.splitlines knows (U+2028, form feed, NEL) stay inside a prompt; line numbers count every
    break, as an editor shows them."""
    f = tmp_path / "p.txt"
    f.write_bytes("one\rtwo\r\nthree\u2028still\x0cthree\x85\r\rfive\n".encode())
    src = read_prompts(f)
    assert [(i.index, i.prompt) for i in src.items] == [
        (1, "one"), (2, "two"), (3, "three\u2028still\x0cthree\x85"), (5, "five")
    ]  # fmt: skip
    assert [(p.index, p.why) for p in src.problems] == [(4, "the prompt is empty")]
    # JSON Lines breaks at LF alone (a CR before it dropped): JSON allows a raw CR as whitespace
    # inside an object, and jq and editors number its lines so
    d = tmp_path / "d.jsonl"
    d.write_bytes(b'{"prompt": "p1",\r "response": "r1"}\r\n{"prompt": "p2", "response": "r2"}\n')
    assert [(i.index, i.prompt, i.response) for i in read_dataset(d).items] == [(1, "p1", "r1"), (2, "p2", "r2")]
    j = tmp_path / "p.jsonl"
    j.write_bytes(b'{"prompt": "a\\rb",\r "x": 1}\n\r\n{"prompt": "c"}')
    assert [(i.index, i.prompt) for i in read_prompts(j).items] == [(1, "a\rb"), (3, "c")]
    # a byte of a bad line is counted in that line, whatever the breaks around it
    f.write_bytes(b"ok\rcaf\xe9\r\nfine")
    src = read_prompts(f)
    assert [(i.index, i.prompt) for i in src.items] == [(1, "ok"), (3, "fine")]
    assert [(p.index, p.why) for p in src.problems] == [(2, "not UTF-8 text (byte 4)")]


def test_a_jsonl_prompts_file_reads_the_named_field(tmp_path):
    f = tmp_path / "p.jsonl"
    _write(f, [json.dumps({"q": "one", "prompt": "not this"}), "", json.dumps({"q": "two\nlines"}), '{"prompt": "x"}'])
    src = read_prompts(f, "q")
    assert [(i.index, i.prompt) for i in src.items] == [(1, "one"), (3, "two\nlines")]
    assert [(p.index, p.why) for p in src.problems] == [
        (4, "no 'q' field (it has 'prompt')")
    ]  # the blank line 2 is no item


def test_every_kind_of_bad_dataset_line_is_reported_once_with_its_line_number(tmp_path):
    f = tmp_path / "d.jsonl"
    good = {"prompt": "p", "response": "r"}
    _write(
        f,
        [
            json.dumps(good),
            json.dumps({"prompt": "p"}),
            "{not json",
            "[1, 2]",
            json.dumps({"prompt": 3, "response": "r"}),
            json.dumps({"prompt": "p", "response": None}),
            json.dumps({"prompt": " \n", "response": "r"}),
            json.dumps({"prompt": "p", "response": True}),
            '{"prompt": "\\ud800", "response": "r"}',
            "[" * 100_000 + "]" * 100_000,
            b'{"prompt": "\xff", "response": "r"}',
            json.dumps({"prompt": "last", "response": "one"}),
        ],
    )
    src = read_dataset(f)
    assert [(i.index, i.prompt, i.response) for i in src.items] == [(1, "p", "r"), (12, "last", "one")]
    problems = {p.index: p.why for p in src.problems}
    assert sorted(problems) == list(range(2, 12))
    assert problems[2] == "no 'response' field (it has 'prompt')"
    assert problems[3] == "not valid JSON (Expecting property name enclosed in double quotes at column 2)"
    assert problems[4] == "not a JSON object (a JSON list)"
    assert problems[5] == "field 'prompt' is not text (a number)"
    assert problems[6] == "field 'response' is null, not text"
    assert problems[7] == "field 'prompt' is empty"
    assert problems[8] == "field 'response' is not text (true/false)"
    assert "surrogate" in problems[9]
    assert problems[10].startswith("not valid JSON")
    assert problems[11].startswith("not UTF-8")


def test_field_names_are_settable(tmp_path):
    f = tmp_path / "d.jsonl"
    _write(f, [json.dumps({"instruction": "a", "output": "b", "prompt": "no", "response": "no"})])
    [item] = read_dataset(f, "instruction", "output").items
    assert (item.prompt, item.response) == ("a", "b")
    with pytest.raises(DatasetError):
        read_dataset(f, "x", "x")


def test_an_oversized_line_is_skipped_without_reading_it_whole_and_reading_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset, "MAX_LINE_BYTES", 64)
    f = tmp_path / "p.txt"
    _write(f, ["short", "y" * 1000, "after"])
    src = read_prompts(f)
    assert [(i.index, i.prompt) for i in src.items] == [(1, "short"), (3, "after")]
    [problem] = src.problems
    assert problem.index == 2 and "longer than" in problem.why


def test_a_text_over_the_run_files_prompt_limit_is_a_problem(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset, "MAX_TEXT_CHARS", 10)
    f = tmp_path / "d.jsonl"
    _write(f, [json.dumps({"prompt": "p" * 11, "response": "r"})])
    [problem] = read_dataset(f).problems
    assert problem.index == 1 and "longer than 10 characters" in problem.why


def test_reading_stops_at_the_file_limit_with_one_problem(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset, "MAX_FILE_BYTES", 20)
    f = tmp_path / "p.txt"
    _write(f, [f"prompt {i}" for i in range(10)])
    src = read_prompts(f)
    assert [i.prompt for i in src.items] == ["prompt 0", "prompt 1", "prompt 2"]
    [problem] = src.problems
    assert problem.index == 3 and "not read" in problem.why


def test_a_line_with_no_end_stops_at_the_file_limit(monkeypatch, tmp_path):
    """One line that never ends (a trial's /dev/zero, now refused as a device, read for ever): the
    rest of a long line is skipped only up to the file limit."""
    monkeypatch.setattr(dataset, "MAX_LINE_BYTES", 1 << 10)
    monkeypatch.setattr(dataset, "MAX_FILE_BYTES", 1 << 20)
    endless = tmp_path / "zeros.txt"
    with open(endless, "wb") as f:
        f.truncate(8 << 20)  # (sparse: 8 MiB of NUL, no newline)
    src = read_prompts(endless)
    assert src.items == [] and [p.index for p in src.problems] == [1, 1]
    assert "longer than" in src.problems[0].why and "not read" in src.problems[1].why
    with pytest.raises(DatasetError, match="not a regular file or a pipe"):
        read_prompts(Path("/dev/zero"))


def test_a_missing_file_or_a_folder_is_one_error(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        read_prompts(tmp_path / "nope.txt")
    with pytest.raises(DatasetError, match="folder"):
        read_dataset(tmp_path)


def _scored(n: int) -> Run:
    """A run as the score job makes it: all n positions in the prompt, an empty scored root."""
    src = make_run()
    arrays = {k: np.concatenate([a, a])[:n] for k, a in src.branches[0].steps.arrays().items()}
    arrays["logprob"][0], arrays["rank"][0] = np.nan, 0  # position 0 has no prediction
    run = Run(src.meta.copy(), src.tokens.copy(), Columns.from_arrays(src.layout, arrays), src.layout)
    run.add_branch(None, n).status = "scored"
    return run


def test_a_dataset_run_splits_into_prompt_and_forced_response():
    scored = _scored(8)
    run = response_run(scored, 3)
    run.validate()
    assert len(run.prompt) == 3 and run.branches[0].fork_position == 3 and run.branches[0].status == "scored"
    assert run.kinds(0) == ["prompt"] * 3 + ["forced"] * 5
    for name in run.layout.names:
        np.testing.assert_array_equal(run.column(0, name), scored.column(0, name))
    assert loss_positions(run, "response") == range(3, 8)
    assert loss_positions(run, "all") == range(1, 8)
    with pytest.raises(ValueError):
        loss_positions(run, "prompt")
    with pytest.raises(ValueError):
        response_run(scored, 8)  # no response left


def test_a_file_whose_items_all_lack_the_field_says_which_option_names_it(tmp_path):
    from tokentui.core.dataset import field_hint

    f = tmp_path / "d.jsonl"
    _write(f, [json.dumps({"instruction": "p", "output": "r"}), json.dumps({"output": None})])
    src = read_dataset(f)
    assert [p.why for p in src.problems] == [
        "no 'prompt' field (it has 'instruction', 'output')",
        "no 'prompt' field (it has 'output')",
    ]
    assert field_hint(src) == " (--prompt-field and --response-field name the fields that hold them)"
    assert field_hint(read_prompts(f)) == " (--prompt-field names the field that holds the prompt)"
    assert read_dataset(f, "instruction", "output").items and field_hint(read_dataset(f, "instruction", "output")) == ""
