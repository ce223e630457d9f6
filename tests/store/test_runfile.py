"""Run files: exact round trips, and a clean one-line error for every kind of bad file."""

from __future__ import annotations

import json
import pickle
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.factories import assert_same, make_run, rewrite_header, with_run_desc
from tokentui.core.columns import Columns, Layout
from tokentui.core.measures import Measure
from tokentui.core.run import Run
from tokentui.core.tokens import TokenTable
from tokentui.store.header import SCHEMA_VERSION, RunFileError, read_header
from tokentui.store.runfile import encode_run, load_run, save_run


@pytest.mark.parametrize("vocab", [300, 70000])
@pytest.mark.parametrize("sampled", [True, False])
def test_round_trip_is_exact(tmp_path, vocab, sampled):
    run = make_run(sampled=sampled, vocab=vocab)
    path = save_run(run, tmp_path / "a.tokentui")
    back = load_run(path)
    assert_same(run, back)
    assert back.step(1, 7).kind == "generated" and back.step(1, 6).kind == "forced"
    assert back.sequence(1).tolist() == run.sequence(1).tolist()
    assert not back.dirty
    assert read_header(path)["meta"]["run_id"] == run.id


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    run = make_run()
    path = save_run(run, tmp_path / "a.tokentui")
    before = path.read_bytes()
    import tokentui.core.files as files

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", boom)  # (what every save's write_atomically calls)
    run.branches[0].steps.append(run.step(0, 4))
    with pytest.raises(OSError):
        save_run(run, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.tokentui"]  # no temp file left behind


def _set_meta(key, value):
    return with_run_desc(lambda d: d["meta"].__setitem__(key, value))


def _retype_array(name, dtype):
    def f(header):
        header[name]["dtype"] = dtype

    return f


def _bad_files(good: bytes):
    yield "empty", b""
    yield "random bytes", bytes(range(256)) * 10
    yield "truncated header", good[:20]
    yield "truncated data", good[: len(good) - 37]
    yield "pickle", pickle.dumps({"run": [1, 2, 3]})
    yield "json", b'{"meta": {}}'
    yield "huge header length", struct.pack("<Q", 2**62) + good[8:]
    yield "not our format", rewrite_header(good, lambda h: h["__metadata__"].__setitem__("format", "other"))
    yield (
        "newer schema",
        rewrite_header(good, lambda h: h["__metadata__"].__setitem__("schema", str(SCHEMA_VERSION + 1))),
    )
    yield "schema not a number", rewrite_header(good, lambda h: h["__metadata__"].__setitem__("schema", "x"))
    yield "run json broken", rewrite_header(good, lambda h: h["__metadata__"].__setitem__("run", "{nope"))
    yield "meta missing key", rewrite_header(good, with_run_desc(lambda d: d["meta"].pop("k")))
    yield "meta wrong type", rewrite_header(good, _set_meta("vocab_size", "300"))
    yield "k larger than vocab", rewrite_header(good, _set_meta("k", 10**6))
    yield "wrong layer count", rewrite_header(good, _set_meta("n_layers", 7))
    yield "vocab too small for ids", rewrite_header(good, _set_meta("vocab_size", 5))
    yield (
        "branch parent later",
        rewrite_header(good, with_run_desc(lambda d: d["branches"][1].__setitem__("parent", 1))),
    )
    yield (
        "branch fork out of range",
        rewrite_header(good, with_run_desc(lambda d: d["branches"][1].__setitem__("fork_position", 99))),
    )
    yield (
        "step count mismatch",
        rewrite_header(good, with_run_desc(lambda d: d["branches"][0].__setitem__("steps", 4))),
    )
    yield (
        "forced beyond steps",
        rewrite_header(good, with_run_desc(lambda d: d["branches"][1].__setitem__("n_forced", 9))),
    )
    yield (  # (a key missing beside one added: a fuzzed tree file raised KeyError)
        "branch entry lacks its parent",
        rewrite_header(
            good, with_run_desc(lambda d: d["branches"][1].__setitem__("extra", d["branches"][1].pop("parent")))
        ),
    )
    yield "no branches", rewrite_header(good, with_run_desc(lambda d: d.__setitem__("branches", [])))
    yield "bad status", rewrite_header(good, with_run_desc(lambda d: d["branches"][0].__setitem__("status", "weird")))
    yield "array dtype", rewrite_header(good, _retype_array("b0/logprob", "I32"))
    yield "missing token table", rewrite_header(good, lambda h: h.pop("tokens/ids"))


BAD_FILES = dict(_bad_files(encode_run(make_run())))


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_every_bad_file_gives_one_clean_line(tmp_path, case):
    data = BAD_FILES[case]
    path = tmp_path / "bad.tokentui"
    path.write_bytes(data)
    with pytest.raises(RunFileError) as info:
        load_run(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg, case
    # a listing of the cache survives it too
    from tokentui.store.cache import list_runs

    assert all(r.error or r.run_id for r in list_runs(tmp_path))


def test_each_metadata_key_left_out_opens_or_is_one_clean_line(tmp_path):
    """A run file whose metadata lacks any one key (a fuzzer's flipped byte in a key's name): it
    opens, with the key's default, or is refused in one line. `revision` left out crashed every
    reader (RunMeta had no default for it); it is unknown (None) now."""
    from dataclasses import MISSING

    from tokentui.core.run import RunMeta

    good = encode_run(make_run())
    path = tmp_path / "r.tokentui"
    for key in RunMeta.__dataclass_fields__:
        path.write_bytes(rewrite_header(good, with_run_desc(lambda d, key=key: d["meta"].pop(key, None))))
        try:
            run = load_run(path)
        except RunFileError as e:
            assert "\n" not in str(e) and key in str(e), (key, e)
        else:
            field = RunMeta.__dataclass_fields__[key]
            if field.default_factory is MISSING:  # (sampling and eos_ids: made afresh)
                assert getattr(run.meta, key) == (None if field.default is MISSING else field.default), key
    path.write_bytes(rewrite_header(good, with_run_desc(lambda d: d["meta"].pop("revision"))))
    assert load_run(path).meta.revision is None


def test_ids_out_of_vocab_and_missing_token_bytes(tmp_path):
    run = make_run()
    run.meta.vocab_size = 100  # ids up to 299 are now out of range
    path = tmp_path / "x.tokentui"
    path.write_bytes(encode_run(run))
    with pytest.raises(RunFileError, match="outside the vocabulary|vocabulary"):
        load_run(path)
    run = make_run()
    run.tokens = TokenTable({1: b"a"})
    path.write_bytes(encode_run(run))
    with pytest.raises(RunFileError, match="token table lacks"):
        load_run(path)


def test_not_a_file_and_missing(tmp_path):
    with pytest.raises(RunFileError, match="no such file"):
        load_run(tmp_path / "nope.tokentui")
    with pytest.raises(RunFileError, match="folder"):
        load_run(tmp_path)


SCHEMA1 = sorted((Path(__file__).parent.parent / "fixtures" / "schema1").glob("*.tokentui"))


@pytest.mark.parametrize("path", SCHEMA1, ids=lambda p: p.stem)
def test_schema_1_files_still_load_and_resave_as_schema_2(tmp_path, path):
    assert read_header_schema(path) == 1
    run = load_run(path)  # validated on load
    assert run.layout.names[:4] == ("token_id", "logprob", "entropy", "rank")
    again = load_run(save_run(run, tmp_path / "r.tokentui"))
    assert read_header_schema(tmp_path / "r.tokentui") == SCHEMA_VERSION == 2
    assert_same(run, again)
    b = run.branches[0]
    np.testing.assert_array_equal(again.column(b.id, "logprob"), run.column(b.id, "logprob"))


def read_header_schema(path) -> int:
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return int(json.loads(data[8 : 8 + n])["__metadata__"]["schema"])


EXTRA = Measure("margin_test", "nats", "float32", (), "a column this version does not declare", required=False)


def _with_extra_column(run, required: bool):
    """The run's file as a newer tokentui that records one more column would write it."""
    m = Measure(EXTRA.name, EXTRA.unit, EXTRA.dtype, EXTRA.shape, EXTRA.description, required=required)
    layout = Layout((*run.layout.measures, m), run.k, run.n_layers)
    out = Run(run.meta, run.tokens, Columns.from_arrays(layout, run.prompt.arrays()), layout)
    for b in run.branches:
        arrays = b.steps.arrays()
        arrays[m.name] = np.arange(len(b.steps), dtype=np.float32)
        out.branches.append(replace(b, steps=Columns.from_arrays(layout, arrays)))
    return out


def test_unknown_optional_columns_are_read_and_kept_unknown_required_ones_refused(tmp_path):
    run = _with_extra_column(make_run(), required=False)
    back = load_run(save_run(run, tmp_path / "a.tokentui"))
    assert back.layout.names[-1] == "margin_test"
    np.testing.assert_array_equal(back.branches[0].steps.col("margin_test"), np.arange(5, dtype=np.float32))
    assert back.step(0, 5).get("margin_test") == 1.0
    path = save_run(_with_extra_column(make_run(), required=True), tmp_path / "b.tokentui")
    with pytest.raises(RunFileError, match="requires column 'margin_test'.*upgrade tokentui"):
        load_run(path)


def test_a_known_column_declared_differently_or_a_required_one_missing_is_refused(tmp_path):
    good = encode_run(make_run())

    def retype(d):
        d["columns"]["entropy"]["dtype"] = "float16"

    path = tmp_path / "a.tokentui"
    path.write_bytes(rewrite_header(good, with_run_desc(retype)))
    with pytest.raises(RunFileError, match="'entropy' is declared with another dtype"):
        load_run(path)
    path.write_bytes(rewrite_header(good, with_run_desc(lambda d: d["columns"].pop("rank"))))
    with pytest.raises(RunFileError, match="required column 'rank' is missing"):
        load_run(path)


def test_error_lines_are_safe_to_print(tmp_path):
    """A file name or an array name from a damaged file may hold terminal escapes: shown escaped."""

    def extra_array(header):  # an empty array at the end, named with an OSC sequence and a bell
        end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
        header["b9\x1b]0;pwned\x07/x"] = {"dtype": "F32", "shape": [0], "data_offsets": [end, end]}

    path = tmp_path / "evil\x1b[2J.tokentui"
    path.write_bytes(rewrite_header(encode_run(make_run()), extra_array))
    with pytest.raises(RunFileError, match="unexpected array") as info:
        load_run(path)
    msg = str(info.value)
    assert "\x1b" not in msg and "\x07" not in msg and "␛[2J" in msg and "␛]0;pwned" in msg


def test_a_branch_saved_while_running_loads_as_cancelled(tmp_path):
    """An autosave mid-generation writes status "running"; the process that wrote it is gone when the
    file is read, so the branch loads as a generation stopped early (no ⋯ promising tokens), and a
    tree search saved mid-way likewise."""
    from tests.factories import make_tree_run
    from tokentui.core import tree
    from tokentui.tui.widgets.branch_tree import branch_label

    run = make_run()
    run.branches[1].status = "running"
    assert "⋯" in branch_label(run, run.branches[1]).plain  # (what a live generation shows)
    back = load_run(save_run(run, tmp_path / "a.tokentui"))
    assert [b.status for b in back.branches] == [run.branches[0].status, "cancelled"]
    assert "⋯" not in branch_label(back, back.branches[1]).plain
    assert not back.dirty

    searched = make_tree_run()  # autosaved after 3 of its nodes' progress: the later ones are its own too
    tree.end_search(searched, 0, "running", 3, 0)
    searched.meta.tree["searches"][0]["branches"] = [0, 3]
    back = load_run(save_run(searched, tmp_path / "t.tokentui"))
    assert back.meta.tree["searches"][0]["stopped"] == "cancelled"
    assert back.meta.tree["searches"][0]["branches"] == [0, len(back.branches)]
