"""Run files from strangers: ids that are paths, references that look like globs, forged numbers
and types in the header, impossible values in the arrays, lone surrogates, oversized strings, and
one bad file among good ones in the cache. Each is one clean RunFileError line (or a listed error)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.factories import make_run, rewrite_header, rewrite_run_text, with_raw_value, with_run_desc
from tokentui.core.columns import Columns, Layout
from tokentui.core.measures import Measure
from tokentui.core.run import RunError, new_run_id
from tokentui.store.cache import list_runs, resolve, run_path, summarize
from tokentui.store.header import MAX_PROMPT_CHARS, RunFileError, valid_run_id
from tokentui.store.runfile import encode_run, load_run, save_run


def _refused(path, *needles):
    with pytest.raises(RunFileError) as info:
        load_run(path)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def _file(tmp_path, data, name="x.tokentui"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _meta(key, value):
    return with_run_desc(lambda d: d["meta"].__setitem__(key, value))


# --- 1. run ids ---------------------------------------------------------------------------------
BAD_IDS = ["../../../../x", "/abs/x", "sub/dir", ".hidden", "", "a" * 65, "a b", "x\x1b[31m", "-x", "é"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_run_id_that_is_not_a_plain_name_is_refused_on_load(tmp_path, bad):
    p = _file(tmp_path, rewrite_header(encode_run(make_run()), _meta("run_id", bad)))
    _refused(p, "run id")
    assert summarize(p).error


@pytest.mark.parametrize("bad", BAD_IDS)
def test_run_path_builds_only_plain_names_inside_the_cache(tmp_path, bad):
    with pytest.raises(RunFileError):
        run_path(bad, tmp_path / "cache")


def test_run_path_and_new_ids(tmp_path):
    assert run_path("a.b_c-1", tmp_path) == tmp_path / "a.b_c-1.tokentui"
    assert all(valid_run_id(new_run_id()) for _ in range(20))


# --- 2. references are literal ------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path):
    for i in ("sample-tree", "sample-score"):
        run = make_run()
        run.meta.run_id = i
        save_run(run, run_path(i, tmp_path))
    return tmp_path


@pytest.mark.parametrize("ref", ["[s]", "*", "?", "sample-[st]*", "**", "\x00", "x" * 5000, "[", "\\", "..."])
def test_a_reference_is_never_a_pattern(cache, ref):
    with pytest.raises(RunFileError) as info:
        resolve(ref, cache)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in cache.iterdir()) == ["sample-score.tokentui", "sample-tree.tokentui"]


def test_literal_parts_still_match(cache):
    assert resolve("tree", cache) == cache / "sample-tree.tokentui"
    assert resolve("sample-score", cache) == cache / "sample-score.tokentui"


# --- 3. strict header types ---------------------------------------------------------------------
def _branch(key):
    return lambda d, v: d["branches"][1].__setitem__(key, v)


FIELDS = {
    "prompt_steps": lambda d, v: d.__setitem__("prompt_steps", v),
    "fork_position": _branch("fork_position"),
    "n_forced": _branch("n_forced"),
    "steps": _branch("steps"),
    "id": _branch("id"),
    "parent": _branch("parent"),
    "k": lambda d, v: d["meta"].__setitem__("k", v),
    "n_layers": lambda d, v: d["meta"].__setitem__("n_layers", v),
    "vocab_size": lambda d, v: d["meta"].__setitem__("vocab_size", v),
    "dims.k": lambda d, v: d["dims"].__setitem__("k", v),
    "dims.j": lambda d, v: d["dims"].__setitem__("j", v),
    "eos": lambda d, v: d["meta"].__setitem__("eos_ids", [v]),
}


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(
    "raw", ["Infinity", "-Infinity", "NaN", "1e400", "34.9", "2.0", '"3"', "true", "-1", "9" * 400]
)
def test_integer_fields_must_be_integers_in_bounds(tmp_path, field, raw):
    p = _file(tmp_path, with_raw_value(encode_run(make_run()), FIELDS[field], raw))
    _refused(p)
    s = summarize(p)  # the cache listing never raises either
    assert s.error is None or "\n" not in s.error


@pytest.mark.parametrize("raw", ['"Infinity"', "1e400", '"2.0"', '"99999999999999999999"', "2.0", "true", "null"])
def test_the_schema_version_is_strict(tmp_path, raw):
    def f(header):
        header["__metadata__"]["schema"] = "@@s@@"

    data = rewrite_header(encode_run(make_run()), f)
    p = _file(tmp_path, data.replace(b'"@@s@@"', raw.encode().ljust(7)))
    _refused(p)
    assert summarize(p).error


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("where", ["run", "outer"])
def test_deep_nesting_is_refused_before_parsing(tmp_path, depth, where):
    deep = "[" * depth + "]" * depth
    data = encode_run(make_run())
    if where == "run":
        data = with_raw_value(data, lambda d, v: d["meta"].__setitem__("extra", v), deep)
    else:
        n = int.from_bytes(data[:8], "little")
        head = b'{"deep": ' + deep.encode() + b", " + data[9 : 8 + n]
        data = len(head).to_bytes(8, "little") + head + data[8 + n :]
    p = _file(tmp_path, data)
    _refused(p, "deeper than")
    assert "deeper than" in summarize(p).error


@pytest.mark.parametrize(
    "text, verdict",
    [
        ('{"a": {"b": 1', "is not valid JSON"),  # cut short two levels in: not JSON, not deep
        ('{"a": {"b": {"c": [1, [2', "is not valid JSON"),
        ("[" * 40, "is not valid JSON"),  # nothing closes
        ("[" * 33 + "]" * 33, "nests deeper than 32 levels"),
        ("[" * 32 + "]" * 32, None),  # as deep as allowed
        ('{"a": "' + "[" * 40 + '"}', None),  # brackets in a string do not count
    ],
)
def test_a_truncated_document_is_invalid_json_not_too_deep(tmp_path, text, verdict):
    """A manifest or header cut short was reported as nesting deeper than 32 levels (its unclosed
    opens passed for levels); the depth check counts only real levels, and json says the rest."""
    from tokentui.store.header import RunFileError, json_too_deep, loads_bounded

    assert json_too_deep(text.encode()) is (verdict is not None and "deeper" in verdict)
    if verdict is None:
        assert loads_bounded(tmp_path / "c.json", text, "the manifest") == json.loads(text)
    else:
        with pytest.raises(RunFileError, match=f"the manifest {verdict}"):
            loads_bounded(tmp_path / "c.json", text, "the manifest")


# --- 4. impossible numbers ----------------------------------------------------------------------
def _poke(segment, name, row, value):
    def f(run):
        cols = run.prompt if segment == "prompt" else run.branches[int(segment[1:])].steps
        cols._a[name][row] = value

    return f


@pytest.mark.parametrize(
    "poke, where",
    [
        (_poke("b0", "logprob", 1, 0.5), "b0/logprob at position 5: above 0"),
        (_poke("b0", "logprob", 2, -math.inf), "b0/logprob at position 6: infinite"),
        (_poke("b0", "logprob", 2, math.inf), "b0/logprob at position 6"),
        (_poke("b1", "logprob", 0, math.nan), "b1/logprob at position 6: missing"),
        (_poke("prompt", "entropy", 2, math.nan), "prompt/entropy at position 2: missing"),
        (_poke("prompt", "entropy", 1, -0.5), "prompt/entropy at position 1: below 0"),
        (_poke("b0", "entropy", 0, math.inf), "b0/entropy at position 4: infinite"),
        (_poke("b0", "rank", 3, 0), "b0/rank at position 7"),
        (_poke("b0", "rank", 3, -4), "b0/rank at position 7"),
        (_poke("b0", "topk_logprobs", 4, [0, 0, 0.5, 0]), "b0/topk_logprobs at position 8: above 0"),
        (_poke("b1", "topk_logprobs", 1, [0, -np.inf, 0, 0]), "b1/topk_logprobs at position 7: infinite"),
        (_poke("b0", "sampler_logprob", 0, 2.0), "b0/sampler_logprob at position 4: above 0"),
        (_poke("b0", "layer_entropy", 0, [1, -1, 1]), "b0/layer_entropy at position 4: below 0"),
        (_poke("b0", "layer_entropy", 0, [1, np.inf, 1]), "b0/layer_entropy at position 4: infinite"),
    ],
)
@pytest.mark.parametrize("one_row_blocks", [False, True])
def test_impossible_values_are_refused_naming_array_and_position(tmp_path, monkeypatch, poke, where, one_row_blocks):
    """(Also when the check goes a row at a time, as it does through a large run's lens columns:
    each block names its rows by their own positions.)"""
    if one_row_blocks:
        monkeypatch.setattr("tokentui.core.run.BLOCK_VALUES", 1)
    run = make_run()
    poke(run)
    p = save_run(run, tmp_path / "x.tokentui")
    _refused(p, where)


@pytest.mark.parametrize("one_row_blocks", [False, True])
@pytest.mark.parametrize(
    "column, value, why",
    [
        ("topk_ids", [1, 2, 10**6, 3], "topk_ids holds ids outside the vocabulary"),
        ("topk_ids", [1, 2, -2, 3], "topk_ids holds ids outside the vocabulary"),  # (-1 alone is "no id")
        ("token_id", -1, "token_id holds ids outside the vocabulary"),
        ("topk_ids", "absent", "token table lacks the bytes of id"),  # (an id of the vocabulary, not of the table)
    ],
)
def test_ids_outside_the_vocabulary_or_the_token_table_are_refused(tmp_path, monkeypatch, column, value, why,
                                                                   one_row_blocks):  # fmt: skip
    """Checked a block of rows at a time (a large run's lens ids made masks and copies of all of
    them at once): a bad id in the last row is found; -1 in a top-k list (no id) is allowed."""
    if one_row_blocks:
        monkeypatch.setattr("tokentui.core.run.BLOCK_VALUES", 1)
    run = make_run()
    steps = run.branches[1].steps
    steps._a["topk_ids"][0, 3] = -1
    load_run(save_run(run, tmp_path / "ok.tokentui"))
    if value == "absent":  # an id used nowhere else, put in the last row and taken out of the token table
        from tokentui.core.tokens import TokenTable

        segments = [run.prompt, *(b.steps for b in run.branches)]
        used = {int(i) for c in segments for m in run.layout.measures if m.is_token_id for i in c.col(m.name).ravel()}
        victim = next(int(i) for i in run.tokens.ids() if int(i) not in used)
        run.tokens = TokenTable({int(i): run.tokens.bytes_of(int(i)) for i in run.tokens.ids() if int(i) != victim})
        value, why = [1, 2, victim, 3], f"{why} {victim}$"
    steps._a[column][len(steps) - 1] = value
    with pytest.raises(RunError, match=why):
        run.validate()


def test_what_is_allowed_loads(tmp_path):
    run = make_run()
    run.branches[0].steps._a["logprob"][0] = 1e-4  # rounding
    run.branches[0].steps._a["entropy"][0] = -1e-5
    run.branches[0].steps._a["layer_entropy"][1] = np.nan  # the lens has not run yet
    run.branches[0].steps._a["topk_logprobs"][1] = np.nan
    assert np.isnan(run.prompt.col("logprob")[0]) and run.prompt.col("rank")[0] == 0  # position 0: unknown
    load_run(save_run(run, tmp_path / "x.tokentui"))


# --- 5. lone surrogates -------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["prompt", "model", "created", "tokenizer", "chat_template", "lens"])
def test_lone_surrogates_become_replacement_characters(tmp_path, key):
    data = with_raw_value(encode_run(make_run()), lambda d, v: d["meta"].__setitem__(key, v), '"a\\ud800b\\udfff"')
    p = _file(tmp_path, data)
    run = load_run(p)
    assert getattr(run.meta, key) == "a\ufffdb\ufffd"
    json.dumps(run.meta.to_dict(), ensure_ascii=False).encode("utf-8")  # what export does: no crash
    assert summarize(p).error is None


def test_lone_surrogates_in_keys_and_nested_sampling(tmp_path):
    data = with_raw_value(
        encode_run(make_run()), lambda d, v: d["branches"][1].__setitem__("sampling", v), '{"\\udc80": ["\\ud801"]}'
    )
    run = load_run(_file(tmp_path, data))
    assert run.branches[1].sampling == {"\ufffd": ["\ufffd"]}


# --- 6. sizes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, needle",
    [
        (_meta("prompt", "x" * (MAX_PROMPT_CHARS + 1)), "longer than 1000000 characters"),
        (_meta("model", "m" * 10_001), "longer than 10000 characters"),
        (_meta("k", 1001), "k is outside"),
        (_meta("n_layers", 4097), "layer count is outside"),
        (with_run_desc(lambda d: d["dims"].__setitem__("j", 4097)), "j is outside"),
    ],
)
def test_sizes_are_bounded(tmp_path, change, needle):
    _refused(_file(tmp_path, rewrite_header(encode_run(make_run()), change)), needle)


def test_a_long_prompt_within_the_limit_loads(tmp_path):
    p = _file(tmp_path, rewrite_header(encode_run(make_run()), _meta("prompt", "é" * MAX_PROMPT_CHARS)))
    assert len(load_run(p).meta.prompt) == MAX_PROMPT_CHARS


def test_empty_columns_allocate_nothing():
    big = Measure("wide", "nats", "float32", ("layer", "j"), "test", required=False)
    layout = Layout((*Layout.of(1000, 4096).measures, big), 1000, 4096, 256)
    assert sum(a.nbytes for a in Columns(layout)._a.values()) == 0
    empty = {m.name: np.zeros(m.shape_for(0, layout.dims), m.dtype) for m in layout.measures}
    assert sum(a.nbytes for a in Columns.from_arrays(layout, empty)._a.values()) == 0


# --- 7. one bad file in the cache ---------------------------------------------------------------
BAD_HEADERS = {
    "meta-list": with_run_desc(lambda d: d.__setitem__("meta", [1])),
    "branches-dict": with_run_desc(lambda d: d.__setitem__("branches", {"a": 1})),
    "branch-str": with_run_desc(lambda d: d["branches"].__setitem__(0, "x")),
    "steps-inf": with_run_desc(lambda d: d["branches"][0].__setitem__("steps", math.inf)),
    "prompt-steps-huge": with_run_desc(lambda d: d.__setitem__("prompt_steps", 10**300)),
    "prompt-steps-str": with_run_desc(lambda d: d.__setitem__("prompt_steps", "34")),
    "model-int": _meta("model", 5),
    "no-meta": with_run_desc(lambda d: d.pop("meta")),
    "run-id-path": _meta("run_id", "../x"),
    "k-huge": _meta("k", 10**9),  # sizes loading refuses: a trial saw this one listed as healthy
    "vocab-zero": _meta("vocab_size", 0),
    "layers-str": _meta("n_layers", "30"),
}


def test_a_bad_file_is_one_line_in_the_listing(tmp_path):
    good = make_run()
    save_run(good, run_path(good.id, tmp_path))
    data = encode_run(make_run())
    for name, change in BAD_HEADERS.items():
        (tmp_path / f"{name}.tokentui").write_bytes(rewrite_header(data, change))
    deep = "[" * 5000 + "]" * 5000
    (tmp_path / "deep.tokentui").write_bytes(rewrite_run_text(data, lambda t: t[:-1] + f', "x": {deep}}}'))
    (tmp_path / "garbage.tokentui").write_bytes(b"\xff" * 100)
    runs = list_runs(tmp_path)
    assert len(runs) == len(BAD_HEADERS) + 3
    ok = [r for r in runs if r.error is None]
    assert [r.run_id for r in ok] == [good.id] and ok[0].tokens == good.total_steps()
    for r in runs:
        assert r.error is None or (r.error and "\n" not in r.error), r
