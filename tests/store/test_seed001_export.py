"""The per-layer measures in exports: JSON/JSONL's `layer_*` lists and seed 001's CSV files
(`export --format seed001`), each checked against the run's columns after a save and load, with
perplexity and KL from uniform recomputed here from the stored entropy; older run files (without
the new columns) still load and export; hostile token text stays out of the terminal and out of
formulas; a folder that cannot take the files is refused in one line. One end-to-end test scores
with a tiny model through the CLI."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.factories import RAW_CONTROLS, synthetic_meta
from tokentui.cli.app import app
from tokentui.core.columns import Layout, nan_step
from tokentui.core.display import decode_bytes
from tokentui.core.measures import BASE
from tokentui.core.run import Run
from tokentui.core.step import Step
from tokentui.core.tokens import TokenTable
from tokentui.store.export import (
    SEED001_METRICS,
    SENTENCE_CHARS,
    ExportError,
    csv_cell,
    export,
    seed001_files,
    write_seed001,
)
from tokentui.store.runfile import load_run, save_run

K, L, J, V = 4, 3, 2, 300
LAYER_COLUMNS = ("layer_margin", "layer_kl_final", "layer_rank", "layer_surprisal", "layer_topk_ids")
NEW = (*LAYER_COLUMNS, "layer_topk_logprobs", "attention_entropy")
ROOT = Path(__file__).resolve().parents[2]
OLD_FILES = sorted(
    [*ROOT.glob("tests/fixtures/schema1/*.tokentui"), *ROOT.glob("tests/fixtures/demo_runs/*.tokentui")]
    + sorted(ROOT.glob("sample_runs/*.tokentui"))
)


def layered_run(hostile: bytes = b"=HYPERLINK(\x1b]52;c;x\x07)") -> Run:
    """A run recording every per-layer measure (seeded values in their ranges; layers 1…L−1 of one
    step left unknown, as with the lens off), a root and a child branch; token 7 is `hostile`."""
    rng = np.random.default_rng(1)
    meta = synthetic_meta(run_id="20260101-000000-layers", model="org/tiny model", prompt="p")
    table = {i: bytes([97 + i % 26]) * (1 + i % 3) for i in range(V)}
    table[7] = hostile
    layout = Layout.of(K, L, [*BASE, *NEW], j=J)
    run = Run(meta, TokenTable(table), layout=layout)

    def step(pos: int, kind: str, lensed: bool = True) -> Step:
        token = int(rng.integers(1, V)) if pos != 5 else 7
        values = {
            "logprob": float(-rng.random() * 4),
            "entropy": float(rng.random() * 5),
            "rank": int(rng.integers(1, V)),
            "topk_ids": np.array([7, *rng.integers(0, V, K - 1)], dtype=np.int32),
            "topk_logprobs": np.sort(-rng.random(K)).astype(np.float32)[::-1],
            "layer_entropy": (rng.random(L) * 5).astype(np.float32),
            "layer_margin": rng.random(L).astype(np.float32),
            "layer_kl_final": np.append(rng.random(L - 1) * 9, 0).astype(np.float32),
            "layer_rank": rng.integers(1, V, L).astype(np.int32),
            "layer_surprisal": (rng.random(L) * 12).astype(np.float32),
            "layer_topk_ids": np.column_stack([np.full(L, 7), rng.integers(0, V, L)]).astype(np.int32),
            "layer_topk_logprobs": -np.sort(rng.random((L, J)), axis=1).astype(np.float32),
            "attention_entropy": (rng.random(L) * 3).astype(np.float32),
        }
        if not lensed:  # layers 1…L−1 unknown
            for name in ("layer_entropy", "layer_margin", "layer_kl_final", "layer_surprisal"):
                values[name][:-1] = np.nan
            values["layer_rank"][:-1] = 0
            values["layer_topk_ids"][:-1] = -1
            values["layer_topk_logprobs"][:-1] = np.nan
        return Step(pos, token, values, kind)

    run.prompt.append(nan_step(0, 1))
    for p in (1, 2):
        run.prompt.append(step(p, "prompt"))
    root = run.add_branch(None, 3)
    for p in range(3, 8):
        root.steps.append(step(p, "generated", lensed=p != 6))
    root.status = "length"
    child = run.add_branch(0, 5, n_forced=1)
    for p in range(5, 7):
        child.steps.append(step(p, "forced" if p == 5 else "generated"))
    child.status = "eos"
    run.validate()
    return run


@pytest.fixture
def reloaded(tmp_path) -> Run:
    return load_run(save_run(layered_run(), tmp_path / "r.tokentui"))


def floats(values) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in np.asarray(values, dtype=np.float64).tolist()]


def test_json_and_jsonl_hold_every_per_layer_measure_of_the_reloaded_run(reloaded):
    run = reloaded
    buf = io.StringIO()
    export(run, "jsonl", buf)
    records = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert len(records) == run.total_steps()
    by_place = {}
    for b in run.branches:
        first = 0 if b.parent is None else b.fork_position
        for pos in range(first, run.length(b.id)):
            by_place[(b.id, pos)] = run.step(b.id, pos)
    for rec in records:
        st = by_place[(rec["branch"], rec["position"])]
        h = np.asarray(st.values["layer_entropy"], dtype=np.float64)
        assert rec["layer_entropy"] == floats(h)
        assert rec["layer_perplexity"] == pytest.approx(floats(np.exp(h)), rel=1e-12, nan_ok=True)
        assert rec["layer_kl_uniform"] == pytest.approx(floats(np.maximum(np.log(V) - h, 0)), rel=1e-12, nan_ok=True)
        for name in ("layer_margin", "layer_kl_final", "layer_surprisal", "attention_entropy"):
            assert rec[name] == floats(st.values[name]), name
        assert rec["layer_rank"] == [int(r) or None for r in st.values["layer_rank"]]
        want_top = [
            [
                [int(i), decode_bytes(run.tokens.bytes_of(int(i))), round(float(lp), 5)]
                for i, lp in zip(ids, lps)
                if i >= 0
            ]
            or None
            for ids, lps in zip(st.values["layer_topk_ids"], st.values["layer_topk_logprobs"])
        ]
        assert rec["layer_topk"] == want_top
        assert len(rec["layer_rank"]) == L and len(rec["layer_topk"]) == L
    unlensed = [r for r in records if r["branch"] == 0 and r["position"] == 6][0]
    assert unlensed["layer_margin"][:-1] == [None, None] and unlensed["layer_topk"][:-1] == [None, None]
    assert unlensed["layer_rank"][:-1] == [None, None] and unlensed["layer_rank"][-1] is not None
    # the whole-run JSON carries the same per-step records
    out = io.StringIO()
    export(run, "json", out)
    doc = json.loads(out.getvalue())
    assert [s["layer_kl_final"] for s in doc["branches"][1]["steps"]] == [
        r["layer_kl_final"] for r in records if r["branch"] == 1
    ]
    assert RAW_CONTROLS[0] not in buf.getvalue()


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def parse_list(cell: str) -> list[float]:
    assert cell.startswith("[") and cell.endswith("]")
    return [float(x) for x in cell[1:-1].split(",")]


def test_seed001_files_hold_the_reloaded_columns(reloaded, tmp_path):
    run = reloaded
    written = write_seed001(run, tmp_path / "out")
    model = "org_tiny_model"
    data = {f"{model}_{key}.csv" for key in SEED001_METRICS}
    assert {p.name for p in written} == data | {f"{model}_predictions.csv"}
    assert all(p.parent == tmp_path / "out/standard/data" for p in written if p.name in data)
    rows = [(0, p) for p in range(1, 8)] + [(1, 5), (1, 6)]  # every position that predicts a token
    sentences = [decode_bytes(run.tokens.text(run.sequence(b)[:p].tolist())) for b, p in rows]
    for key, name in SEED001_METRICS.items():
        table = read_csv((tmp_path / f"out/standard/data/{model}_{key}.csv").read_text())
        assert table[0] == ["sentence", "values"] and len(table) == 1 + len(rows)
        for (b, p), sentence, (cell_sentence, cell) in zip(rows, sentences, table[1:]):
            st = run.step(b, p)
            source = name if name not in ("layer_perplexity", "layer_kl_uniform") else "layer_entropy"
            stored = np.asarray(st.values[source], dtype=np.float64)
            want = {"layer_perplexity": np.exp(stored), "layer_kl_uniform": np.maximum(np.log(V) - stored, 0)}.get(
                name, stored
            )
            if name == "layer_rank":
                want = np.where(stored > 0, stored, np.nan)
            got = parse_list(cell)
            np.testing.assert_allclose(got, want, rtol=1e-5, equal_nan=True, err_msg=f"{key} {b}/{p}")
            assert len(got) == L
            if sentence.startswith(("=", "+", "-", "@")):
                assert cell_sentence == "'" + sentence
            elif sentence.isprintable():
                assert cell_sentence == sentence
    table = read_csv((tmp_path / f"out/standard/predictions/{model}_predictions.csv").read_text())
    assert table[0] == ["Sentence", "Token", "Probability", "Analysis"]
    assert len(table) == 1 + K * len(rows)
    first = run.step(0, 1)
    for i, (_s, token, prob, analysis) in enumerate(table[1 : 1 + K]):
        assert float(prob) == pytest.approx(math.exp(float(first.topk_logprobs[i])), rel=1e-6)
        assert analysis == "standard"
        assert token == csv_cell(decode_bytes(run.tokens.bytes_of(int(first.topk_ids[i]))))
    text = "".join(p.read_text() for p in written)
    assert not any(c in text for c in RAW_CONTROLS)
    assert "'=HYPERLINK" in text and "␛" in text  # the hostile token: no formula, visible escapes


def test_seed001_sentences_are_the_context_cut_to_its_end():
    run = layered_run()
    root = run.branches[0]
    for p in range(8, 8 + SENTENCE_CHARS):  # (each token is 1–3 characters)
        root.steps.append(Step(p, 26, {}, "generated"))  # "a" repeated
    files = seed001_files(run)
    table = read_csv(files["standard/data/org_tiny_model_layer_entropies.csv"])
    last = table[8][0]  # root, position 8 + … : row index = position for the root
    assert table[-1 - 2][0].startswith("…") and len(table[-1 - 2][0]) == SENTENCE_CHARS
    assert not last.startswith("…")
    assert table[-3][0].endswith("a" * 20)


def test_an_older_run_exports_what_it_has(tmp_path):
    """Runs recorded before the per-layer measures (only layer_entropy) load; their JSON has no
    new per-layer fields except the two derived from layer_entropy; seed 001's files are the
    measures it has."""
    assert len(OLD_FILES) >= 9
    for path in OLD_FILES:
        run = load_run(path)
        assert not set(NEW) & set(run.layout.names)
        buf = io.StringIO()
        export(run, "jsonl", buf)
        rec = json.loads(buf.getvalue().splitlines()[-1])
        assert {k for k in rec if k.startswith("layer_")} == {"layer_entropy", "layer_perplexity", "layer_kl_uniform"}
        files = seed001_files(run)
        keys = {f.rsplit("_layer_", 1)[-1] for f in files if "/data/" in f}
        assert keys == {"entropies.csv", "perplexities.csv", "kl_divs.csv"}, path
        assert sum("/predictions/" in f for f in files) == 1


def test_a_folder_that_cannot_take_the_files_is_refused(tmp_path):
    run = layered_run()
    out = tmp_path / "out"
    write_seed001(run, out)
    before = {p: p.read_text() for p in out.rglob("*.csv")}
    with pytest.raises(ExportError, match="already exists; add --force"):
        write_seed001(run, out)
    assert {p: p.read_text() for p in out.rglob("*.csv")} == before
    assert write_seed001(run, out, overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is not a folder"):
        write_seed001(run, tmp_path / "file")
    with pytest.raises(ExportError, match="no such folder"):
        write_seed001(run, tmp_path / "no" / "such")
    (tmp_path / "link").symlink_to(out)
    with pytest.raises(ExportError, match="is not a folder"):
        write_seed001(run, tmp_path / "link")
    with pytest.raises(ExportError, match="several files"):
        export(run, "seed001", io.StringIO())


def test_score_with_every_layer_measure_then_export_seed001_through_the_cli(model_dirs, tmp_path):
    """`score --lens-top 3 --attention-entropy --json` prints every per-layer measure; the saved
    run's `export --format seed001` writes its values."""
    runner = CliRunner()
    cache = tmp_path / "cache"
    res = runner.invoke(
        app,
        [
            "score",
            "-m",
            str(model_dirs["llama"]),
            "--text",
            "import os\nprint(os)\n",
            "--lens-top",
            "3",
            "--attention-entropy",
            "--json",
            "--cache-dir",
            str(cache),
        ],  # fmt: skip
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    last = records[-1]
    assert len(last["layer_topk"]) == 3 and all(len(top) == 3 for top in last["layer_topk"])
    assert len(last["attention_entropy"]) == 3 and None not in last["attention_entropy"]
    assert last["layer_rank"][-1] == last["rank"] and last["layer_kl_final"][-1] == 0
    (path,) = cache.glob("*.tokentui")
    res = runner.invoke(app, ["export", str(path), "--format", "seed001", "-o", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    run = load_run(path)
    (attn,) = (tmp_path / "s/standard/data").glob("*_layer_attn_entropies.csv")
    rows = read_csv(attn.read_text())[1:]
    assert len(rows) == len(run.prompt) - 1
    np.testing.assert_allclose(
        [parse_list(cell) for _s, cell in rows], run.prompt.col("attention_entropy")[1:].astype(np.float64), rtol=1e-5
    )
    res = runner.invoke(app, ["export", str(path), "--format", "seed001"])
    assert res.exit_code == 2 and "give a folder with --out" in res.stderr
    res = runner.invoke(app, ["score", "-m", str(model_dirs["llama"]), "--text", "x", "--lens-top", "-2"])
    assert res.exit_code == 2 and "--lens-top" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_a_collection_gets_one_set_of_files_per_model(tmp_path):
    """`export --collection DIR --format seed001`: each model's done items, in item order, in
    files named by its runs' model name; skipped items have no rows."""
    from tokentui.store.collection import Collection, CollectionItem

    coll = Collection.new(tmp_path / "c")
    coll.models = ["./a", "./b"]
    runs = {}
    for model, name in (("./a", "org/tiny model"), ("./b", "other")):
        for index in (1, 2, 3):
            run = layered_run()
            run.meta.model = name
            run.meta.run_id = coll.run_id(model, index)
            path = coll.run_file_for(model, index)
            status = "skipped" if (model, index) == ("./b", 2) else "done"
            if status == "done":
                save_run(run, path)
                runs[(model, index)] = load_run(path)
            coll.put(CollectionItem(index, model, status, path if status == "done" else None, None, "0" * 64))
    coll.save()
    res = CliRunner().invoke(
        app, ["export", "--collection", str(coll.path), "--format", "seed001", "-o", str(tmp_path / "s")]
    )
    assert res.exit_code == 0, res.output
    data = tmp_path / "s/standard/data"
    per_run = len(list(seed001_files(layered_run())["standard/data/org_tiny_model_layer_ranks.csv"].splitlines())) - 1
    for stem, model, n in (("org_tiny_model", "./a", 3), ("other", "./b", 2)):
        table = read_csv((data / f"{stem}_layer_margins.csv").read_text())
        assert len(table) == 1 + n * per_run
        done = [runs[(model, i)] for i in (1, 2, 3) if (model, i) in runs]
        want = np.concatenate([np.concatenate([r.column(b.id, "layer_margin")[max(1, 0 if b.parent is None else b.fork_position):] for b in r.branches]) for r in done])  # fmt: skip
        np.testing.assert_allclose([parse_list(c) for _s, c in table[1:]], want.astype(np.float64), rtol=1e-5)
    assert (tmp_path / "s/standard/predictions/other_predictions.csv").exists()
    res = CliRunner().invoke(app, ["export", "--collection", str(coll.path), "--format", "csv"])
    assert res.exit_code == 2 and "--collection goes with --format seed001" in res.stderr
    res = CliRunner().invoke(app, ["export", "--format", "seed001", "-o", str(tmp_path / "t")])
    assert res.exit_code == 2 and "give a run, or --collection" in res.stderr


def test_seed001_values_are_the_stored_numbers_exactly_as_in_the_comparative_files(reloaded):
    """Like the comparative files: each stored float32/float16 value written exactly (json reads
    every list back, NaN included), not rounded to 6 significant digits."""
    files = seed001_files(reloaded)
    table = read_csv(files["standard/data/org_tiny_model_layer_margins.csv"])[1:]
    rows = [(0, p) for p in range(1, 8)] + [(1, 5), (1, 6)]
    for (b, p), (_s, cell) in zip(rows, table, strict=True):
        got = json.loads(cell)
        want = reloaded.step(b, p).values["layer_margin"].astype(np.float64)
        np.testing.assert_array_equal(np.array(got, dtype=np.float64), want)
    ranks = read_csv(files["standard/data/org_tiny_model_layer_ranks.csv"])[7][1]  # root, position 7
    assert all(isinstance(r, int) or math.isnan(r) for r in json.loads(ranks))


def test_a_folder_export_that_fails_part_way_leaves_no_partial_set(tmp_path):
    """A full disk (here: the file-size limit, which makes a write fail as a full disk does) left
    the files written before the failure, and a rerun refused them as existing. The folder this
    export made is removed again; a rerun with room writes the whole set."""
    import resource

    from tests.factories import make_run

    files = seed001_files(make_run())
    sizes = sorted(len(text.encode()) for text in files.values())
    assert sizes[0] < sizes[-1]
    out = tmp_path / "s1"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (sizes[-1] - 1, hard))  # (the largest file does not fit)
    try:
        with pytest.raises(ExportError, match="File too large"):
            write_seed001(files, out)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert not out.exists()
    assert sorted(p.relative_to(out).as_posix() for p in write_seed001(files, out)) == sorted(files)
