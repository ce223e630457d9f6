"""Seed 004's attribution JSON (`export --format seed004`) and the per-position objects of
`attribute --json`, from runs holding hand-made attribution records: the seed's shape with the
record's numbers, which record is written, the same text after a save and load, hostile token text
and non-finite target values kept out of the terminal and out of the JSON, and poisoned records in
a run file refused in one line. No model, no torch."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.factories import RAW_CONTROLS, make_run, rewrite_header, with_run_desc
from tokentui.core.attribution import Attribution
from tokentui.core.display import decode_bytes
from tokentui.store.export import FORMATS, ExportError, attribution_rows, export, format_for, json_text, write_file
from tokentui.store.header import RunFileError
from tokentui.store.runfile import load_run, save_run


def record(run, branch: int, positions: list[int], method: str = "input-x-gradient", **kw) -> Attribution:
    """A record with seeded scores over positions 0…t−1 of each row (zeros after), as the engine
    makes them."""
    rng = np.random.default_rng(len(positions) + branch)
    width = max(positions)
    scores = np.zeros((len(positions), width), dtype=np.float32)
    for r, t in enumerate(positions):
        scores[r, :t] = rng.normal(size=t).astype(np.float32)
    seq = run.sequence(branch)
    rec = Attribution(
        method=method,
        branch=branch,
        positions=positions,
        token_ids=[int(seq[t]) for t in positions],
        scores=scores,
        target_values=(-rng.random(len(positions))).astype(np.float32),
        created="2026-02-03T04:05:06+00:00",
        **kw,
    )
    run.attributions.append(rec)
    return rec


def exported(run, fmt: str = "seed004", attribution: int | None = None) -> str:
    buf = io.StringIO()
    export(run, fmt, buf, attribution=attribution)
    return buf.getvalue()


def test_seed004_holds_the_record_in_the_seeds_shape():
    run = make_run()
    rec = record(run, 1, [2, 5, 7], alternative=9)
    doc = json.loads(exported(run))
    assert list(doc) == ["metadata", "data", "tokentui"]
    meta, data = doc["metadata"], doc["data"]
    assert list(meta) == ["timestamp", "llm_id", "llm_version", "prompt", "generation_params", "version",
                          "attribution_method"]  # fmt: skip
    assert meta["timestamp"] == rec.created and meta["llm_id"] == run.meta.model == "m"
    assert meta["llm_version"] == (run.meta.revision or "") and meta["version"] == "1.0.0"
    assert meta["prompt"] == run.meta.prompt  # as written, not the generated text
    assert meta["attribution_method"] == "input-x-gradient"
    # seed 004's generation_params hold strings and numbers only: an unset seed, a stop list stay out
    sampler = {**run.meta.sampling, "k": run.meta.k}
    assert meta["generation_params"] == {k: v for k, v in sampler.items() if v is not None and not isinstance(v, list)}
    assert doc["tokentui"]["sampling"] == run.meta.sampling
    assert list(data) == ["input_tokens", "output_tokens", "association_matrix", "normalized_association"]
    seq = run.sequence(1)

    def token(i) -> dict:
        text = decode_bytes(run.tokens.bytes_of(int(i)))
        return {"token": text, "token_id": int(i), "clean_token": text.strip()}

    assert data["input_tokens"] == [token(i) for i in seq[:7]]
    assert data["output_tokens"] == [token(seq[t]) for t in (2, 5, 7)]
    matrix = np.array(data["association_matrix"])
    assert matrix.shape == (3, 7) and matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix.astype(np.float32), rec.scores)  # every float32 exactly
    norm = np.array(data["normalized_association"])
    assert norm.shape == (3, 7)
    for r, t in enumerate((2, 5, 7)):
        want = np.abs(rec.scores[r, :t].astype(np.float64))
        np.testing.assert_allclose(norm[r, :t], want / want.sum(), rtol=1e-12)
        assert norm[r, :t].sum() == pytest.approx(1.0, abs=1e-12) and (norm[r, t:] == 0).all()
    t = doc["tokentui"]
    assert t["run_id"] == run.id and t["attribution"] == 0 and t["branch"] == 1
    assert t["positions"] == [2, 5, 7] and t["token_ids"] == rec.token_ids
    assert t["target"] == "logprob_contrast" and t["alternative"] == 9
    assert t["alternative_token"] == decode_bytes(run.tokens.bytes_of(9))
    assert t["steps"] is None and t["completeness"] is None
    np.testing.assert_array_equal(np.float32(t["target_values"]), rec.target_values)


def test_a_text_scored_teacher_forced_claims_no_sampler():
    """A dataset item's run (its response forced after the prompt) generated nothing: its seed 004
    JSON said max_new_tokens 64, temperature 0 all the same. It gives k alone, and no sampler."""
    run = make_run()
    root = run.branches[0]
    root.n_forced = len(root.steps)
    assert "generated" not in run.kinds(0) and "generated" in run.kinds(1)
    record(run, 0, [2, 5])
    doc = json.loads(exported(run))
    assert doc["metadata"]["generation_params"] == {"k": run.meta.k} and doc["tokentui"]["sampling"] is None
    record(run, 1, [2, 5])  # (a generated branch of the same run: its sampler, as before)
    doc = json.loads(exported(run))
    assert doc["metadata"]["generation_params"]["max_new_tokens"] == run.meta.sampling["max_new_tokens"]


def test_the_record_written_is_the_newest_or_the_one_asked_for():
    run = make_run()
    record(run, 0, [3, 4], method="gradient-norm")
    record(run, 1, [6], method="integrated-gradients", steps=8, completeness=np.float32([0.25]))
    assert json.loads(exported(run))["metadata"]["attribution_method"] == "integrated-gradients"
    assert json.loads(exported(run, attribution=-1)) == json.loads(exported(run))
    first = json.loads(exported(run, attribution=0))
    assert first["metadata"]["attribution_method"] == "gradient-norm" and first["tokentui"]["attribution"] == 0
    second = json.loads(exported(run, attribution=1))["tokentui"]
    assert second["steps"] == 8 and second["completeness"] == [0.25] and second["target"] == "logprob"
    for bad in (2, -3):
        with pytest.raises(ExportError, match=r"holds 2 attributions: --attribution must be 0…1"):
            exported(run, attribution=bad)


def test_a_run_without_records_is_one_line_and_no_file(tmp_path):
    run = make_run()
    with pytest.raises(ExportError, match="holds no attributions") as e:
        exported(run)
    assert "\n" not in str(e.value)
    with pytest.raises(ExportError, match="holds no attributions"):
        write_file(run, "seed004", tmp_path / "a.json")
    assert list(tmp_path.iterdir()) == []  # not even a temporary file


def test_the_same_text_after_a_save_and_load_and_in_a_file(tmp_path):
    run = make_run()
    record(run, 1, [1, 2, 6, 7], method="integrated-gradients", steps=4, completeness=np.float32([0, 1, 2, 3]))
    back = load_run(save_run(run, tmp_path / "r.tokentui"))
    assert exported(back) == exported(run)
    out = write_file(back, format_for(tmp_path / "s.json", "seed004"), tmp_path / "s.json")
    assert out.read_text() == exported(run)
    with pytest.raises(ExportError, match="already exists"):
        write_file(back, "seed004", out)
    os.symlink(tmp_path / "elsewhere", tmp_path / "link.json")
    with pytest.raises(ExportError, match="symbolic link"):
        write_file(back, "seed004", tmp_path / "link.json", overwrite=True)
    assert not (tmp_path / "elsewhere").exists()
    with pytest.raises(ExportError, match="does not match the extension"):
        format_for(tmp_path / "s.csv", "seed004")
    assert "seed004" in FORMATS


def test_per_position_rows_are_the_records_rows():
    run = make_run()
    rec = record(run, 0, [4, 2], method="integrated-gradients", steps=3, completeness=np.float32([0.5, -0.5]))
    rows = list(attribution_rows(run, rec))
    assert [r["position"] for r in rows] == [4, 2]
    for r, row in zip(range(2), rows):
        t = rec.positions[r]
        assert row["token_id"] == rec.token_ids[r] and row["method"] == "integrated-gradients"
        assert row["token"] == decode_bytes(run.tokens.bytes_of(rec.token_ids[r]))
        assert len(row["scores"]) == t and np.array_equal(np.float32(row["scores"]), rec.scores[r, :t])
        assert row["target"] == "logprob" and row["alternative"] is None
        assert row["target_value"] == float(rec.target_values[r])
        assert row["steps"] == 3 and row["completeness_error"] == float(rec.completeness[r])
    plain = record(run, 0, [3], method="saliency")
    [row] = attribution_rows(run, plain)
    assert "completeness_error" not in row and "steps" not in row


def test_hostile_token_text_and_non_finite_targets_stay_out_of_the_terminal():
    run = make_run()
    run.tokens.add(int(run.sequence(0)[1]), b"\x1b]52;c;cHduZWQ=\x07\xe2\x80\xae[/]")
    rec = record(run, 0, [2, 3])
    rec.target_values = np.float32([-np.inf, np.nan])  # log p of an impossible token: JSON has no -inf
    rec.created = "\x1b[2J\u202e"
    text = exported(run)
    assert raw_control(text) is None
    doc = json.loads(text, parse_constant=_no_constants)
    assert doc["data"]["input_tokens"][1]["token"] == "\x1b]52;c;cHduZWQ=\x07\u202e[/]"  # escaped, not lost
    assert doc["tokentui"]["target_values"] == [None, None] and doc["metadata"]["timestamp"] == "\x1b[2J\u202e"
    lines = [json_text(r) for r in attribution_rows(run, rec)]
    assert all(raw_control(x) is None for x in lines)
    assert [json.loads(x, parse_constant=_no_constants)["target_value"] for x in lines] == [None, None]


def raw_control(text: str):
    return next((c for c in RAW_CONTROLS if c in text), None)


def _no_constants(name: str) -> None:
    raise AssertionError(f"not strict JSON: {name}")


def _poisoned(tmp_path: Path, change) -> Path:
    run = make_run()
    record(run, 1, [2, 7], alternative=3)
    data = save_run(run, tmp_path / "ok.tokentui").read_bytes()
    bad = tmp_path / "bad.tokentui"
    bad.write_bytes(rewrite_header(data, with_run_desc(lambda d: change(d["attributions"][0]))))
    return bad


@pytest.mark.parametrize(
    "change, expect",
    [
        (lambda h: h.__setitem__("method", "lime"), "unknown"),
        (lambda h: h.__setitem__("branch", 5), "names a branch the run lacks"),
        (lambda h: h.__setitem__("positions", [2, 70]), "malformed|wrong shape|past the end"),
        (lambda h: h.__setitem__("positions", [0, 7]), "malformed"),
        (lambda h: h.__setitem__("token_ids", [1, 10**9]), "out of range"),
        (lambda h: h.__setitem__("alternative", -1), "out of range"),
        (lambda h: h.__setitem__("token_ids", [1, 2]), "not those of branch|out of range"),
    ],
)
def test_poisoned_records_are_refused_in_one_line(tmp_path, change, expect):
    bad = _poisoned(tmp_path, change)
    with pytest.raises(RunFileError, match=expect) as e:
        load_run(bad)
    assert "\n" not in str(e.value)


def test_a_hostile_created_text_in_a_file_loads_and_exports_escaped(tmp_path):
    bad = _poisoned(tmp_path, lambda h: h.__setitem__("created", "\x1b]0;owned\x07\u202e"))
    text = exported(load_run(bad))
    assert raw_control(text) is None
    assert json.loads(text)["metadata"]["timestamp"] == "\x1b]0;owned\x07\u202e"
