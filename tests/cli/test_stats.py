"""`tokentui stats`: the JSON's and the CSV's numbers against the independent reference
(tests/stats_reference.py) on the reloaded run files, the plot files, the text output (hostile
token text sanitised), runs named like `export` names them, and one-line errors / skipped runs."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import textwrap

import pytest

from tests import stats_reference as ref
from tests.factories import HOSTILE_TEXTS, RAW_CONTROLS, make_run
from tokentui.core.display import decode_bytes
from tokentui.core.tokens import TokenTable
from tokentui.store.runfile import load_run, save_run

APPROX = dict(rel=1e-9, abs=1e-12)


@pytest.fixture
def run_files(tmp_path):
    """Two saved runs of different lengths (the second with more branch-1 tokens)."""
    a = make_run(n_branch_steps=(30, 12))
    b = make_run(n_branch_steps=(18, 25))
    b.meta.run_id = "20260102-000000-bbbbbb"
    return [save_run(a, tmp_path / "a.tokentui"), save_run(b, tmp_path / "b.tokentui")]


def close(got, want) -> bool:
    if want is None:
        return got is None
    return got == pytest.approx(want, **APPROX)


def check_summary(got: dict, tokens: list[dict]) -> None:
    want = ref.summary(tokens)
    assert got["tokens"] == want["tokens"]
    for what in ("entropy", "probability"):
        for key, value in want[what].items():
            assert close(got[what][key], value), (what, key)
    assert close(got["mean_loss"], want["mean_loss"]) and close(got["perplexity"], want["perplexity"])
    assert [r["count"] for r in got["ranks"]] == want["ranks"]
    assert [r["rank"] for r in got["ranks"]] == ["1", "2-10", "11-100", "101-1000", ">1000"]
    assert [r["fraction"] for r in got["ranks"]] == pytest.approx([c / len(tokens) for c in want["ranks"]])


def check_all(got: dict, tokens: list[dict], bins: int, top: int) -> None:
    check_summary(got["summary"], tokens)
    for d, want in zip(got["deciles"], ref.deciles(tokens), strict=True):
        assert close(d["entropy_low"], want["low"]) and close(d["entropy_high"], want["high"])
        assert d["count"] == want["count"]
        assert close(d["mean_entropy"], want["mean_entropy"]) and close(d["mean_probability"], want["mean_probability"])
        assert [(e["token"], e["count"]) for e in d["examples"]] == [(decode_bytes(t), c) for t, c in want["examples"]]
    assert len(got["positions"]) == bins
    for p, want in zip(got["positions"], ref.positions(tokens, bins), strict=True):
        assert p["count"] == want["count"]
        assert close(p["mean_entropy"], want["mean_entropy"])
        assert close(p["mean_probability"], want["mean_probability"])
    for name, indices in ref.extremes(tokens, top).items():
        shown = got["extremes"][name]
        assert [(t["branch"], t["position"]) for t in shown] == [
            (tokens[j]["branch"], tokens[j]["position"]) for j in indices
        ]
        for t, j in zip(shown, indices):
            assert close(t["entropy"], tokens[j]["entropy"]) and close(t["probability"], math.exp(tokens[j]["logprob"]))
            assert t["rank"] == tokens[j]["rank"]


def test_json_holds_every_number_of_one_run(cli, run_files):
    res = cli("stats", run_files[0], "--json", "--bins", 6, "--top", 3)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    run = load_run(run_files[0])
    tokens = ref.counted(run)
    check_all(doc["all"], tokens, 6, 3)
    (row,) = doc["runs"]
    assert (row["run_id"], row["model"], row["scope"], row["kinds"]) == (run.id, "m", "run", ["generated"])
    check_summary(row["summary"], tokens)
    # a branch, with the prompt's positions too
    res = cli("stats", run_files[0], "--json", "--branch", 1, "--include-prompt")
    doc = json.loads(res.stdout)
    assert doc["runs"][0]["kinds"] == ["prompt", "generated"] and doc["runs"][0]["scope"] == "branch 1"
    check_all(doc["all"], ref.counted(run, 1, ("prompt", "generated")), 10, 5)


def test_several_runs_json_and_csv(cli, run_files, tmp_path):
    out = tmp_path / "stats.csv"
    res = cli("stats", *run_files, "--json", "--tokens", "generated,forced", "--bins", 4, "--csv", out)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    runs = [load_run(p) for p in run_files]
    parts = [ref.counted(r, None, ("forced", "generated")) for r in runs]
    check_all(doc["all"], parts[0] + parts[1], 4, 5)
    for row, tokens in zip(doc["runs"], parts, strict=True):
        check_summary(row["summary"], tokens)
        assert [p["count"] for p in row["positions"]] == [p["count"] for p in ref.positions(tokens, 4)]
    assert [r["item"] for r in doc["runs"]] == [1, 2]  # the arguments' places, as numbers
    assert {t["item"] for ts in doc["all"]["extremes"].values() for t in ts} <= {1, 2}
    # the flat table: one row per run, then all
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    # (text and CSV: "arg N", a bare "2" was read as a collection's item 2)
    assert [r["item"] for r in rows] == ["arg 1", "arg 2", "all"] and rows[1]["run_id"] == "20260102-000000-bbbbbb"
    for row, tokens in zip(rows, [*parts, parts[0] + parts[1]], strict=True):
        want = ref.summary(tokens)
        assert int(row["tokens"]) == len(tokens) and row["kinds"] == "forced+generated"
        for what in ("entropy", "probability"):
            for key, value in want[what].items():
                assert float(row[f"{what}_{key}"]) == pytest.approx(value, **APPROX)
        assert float(row["perplexity"]) == pytest.approx(want["perplexity"], **APPROX)
        assert [int(row[k]) for k in ("rank_1", "rank_2-10", "rank_11-100", "rank_101-1000", "rank_>1000")] == want[
            "ranks"
        ]
        for k, p in enumerate(ref.positions(tokens, 4), start=1):
            cell = row[f"entropy_bin_{k}"]
            assert (cell == "") if p["mean_entropy"] is None else float(cell) == pytest.approx(p["mean_entropy"])
    assert "wrote" in res.stderr


def test_plot_dir_saves_each_plot_as_text_and_html(cli, run_files, tmp_path):
    d = tmp_path / "plots"
    res = cli("stats", *run_files, "--plot-dir", d, "--no-plots")
    assert res.exit_code == 0, res.stderr
    names = sorted(p.name for p in d.iterdir())
    stems = ("entropy_by_position", "probability_by_position", "rank_histogram")
    assert names == sorted(f"{s}.{e}" for s in stems for e in ("html", "txt"))
    for stem, title in zip(stems, ("mean entropy by relative position", "mean p(chosen)", "GLTR rank histogram")):
        text = (d / f"{stem}.txt").read_text(encoding="utf-8")
        assert title in text and "┌" in text and "\x1b" not in text and len(text.splitlines()) >= 20
        html = (d / f"{stem}.html").read_text(encoding="utf-8")
        assert html.startswith("<!DOCTYPE html>") and "<pre>" in html and "<span style=" in html
    # again: the files exist, so only --force replaces them (checked before any run is read)
    res = cli("stats", "no-such-run", "--plot-dir", d)
    assert res.exit_code == 2 and "already exists" in res.stderr and "--force" in res.stderr
    res = cli("stats", *run_files, "--plot-dir", d, "--force", "--no-plots")
    assert res.exit_code == 0


def test_plot_files_are_the_same_whatever_the_terminal(run_tokentui, run_files, tmp_path):
    """The files --plot-dir writes are 100 × 25 cells (README) on any terminal: the same command
    gives the same files (plotext would clamp them to the terminal's size)."""
    saved = []
    for columns, lines in (("80", "24"), ("120", "50")):
        d = tmp_path / f"plots-{columns}"
        res = run_tokentui("stats", *run_files, "--plot-dir", d, env={"COLUMNS": columns, "LINES": lines})
        assert res.returncode == 0, res.stderr
        saved.append({p.name: p.read_text(encoding="utf-8") for p in sorted(d.iterdir())})
    assert saved[0] == saved[1] and len(saved[0]) == 6
    for name, text in saved[0].items():
        if name.endswith(".txt"):
            rows = text.splitlines()
            assert len(rows) == 25 and max(len(r) for r in rows) == 100, name


def test_text_output(cli, run_files):
    res = cli("stats", run_files[0], "--top", 2)
    assert res.exit_code == 0, res.stderr
    text = res.stdout
    run = load_run(run_files[0])
    want = ref.summary(ref.counted(run))
    assert f"the run's tokens: {want['tokens']}" in text
    branch = cli("stats", run_files[0], "--branch", 1)  # (a trial read "the run's tokens" of a branch's)
    assert branch.exit_code == 0 and "the branch's tokens: " in branch.stdout and "the run's" not in branch.stdout
    assert f"perplexity {want['perplexity']:.3f}" in text and f"mean {want['entropy']['mean']:.3f}" in text
    for heading in ("GLTR rank histogram", "entropy deciles", "by relative position", "highest entropy"):
        assert heading in text
    assert "mean entropy by relative position (nats)" in text and "└" in text  # the plots
    assert "mean entropy by relative position" not in cli("stats", run_files[0], "--no-plots").stdout
    rows = cli("stats", *run_files, "--no-plots").stdout.splitlines()
    [head] = [i for i, line in enumerate(rows) if line.startswith("item ")]
    assert [line.split()[:2] for line in rows[head + 1 : head + 3]] == [["arg", "1"], ["arg", "2"]]


def test_hostile_token_text_is_shown_escaped(cli, tmp_path):
    run = make_run(n_branch_steps=(30, 12))
    hostile = [t.encode() for t in HOSTILE_TEXTS] + [b"\xc3", b"a\nb"]
    run.tokens = TokenTable({i: hostile[i % len(hostile)] for i in range(run.meta.vocab_size)})
    run.meta.run_id = "20260101-000000-hostil"
    path = save_run(run, tmp_path / "h.tokentui")
    res = cli("stats", path, "--top", 10)
    assert res.exit_code == 0, res.stderr
    assert not [c for c in RAW_CONTROLS if c in res.stdout], "raw control characters on the terminal"
    assert "␛" in res.stdout and "[/]" in res.stdout
    out = cli("stats", path, "--json", "--top", 10).stdout
    assert not [c for c in RAW_CONTROLS if c in out]  # escaped as \\uXXXX in the JSON text
    doc = json.loads(out)
    shown = {t["token"] for ts in doc["all"]["extremes"].values() for t in ts}
    assert shown & set(HOSTILE_TEXTS)  # the JSON gives the token's real text back


def test_runs_are_named_like_export_names_them(cli, cache_dir):
    save_run(make_run(), cache_dir / "20260101-000000-abcdef.tokentui")
    res = cli("stats", "abcdef", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["runs"][0]["run_id"] == "20260101-000000-abcdef"


@pytest.mark.parametrize(
    "args, expect",
    [
        (["no-such-run"], "no such run"),
        (["\x1b[31mrun"], "error: ␛[31mrun: no such run"),  # named once, escaped
        (["--collection", "{d}/missing"], "missing: no such folder"),
        (["{a}", "--branch", "9"], "no branch 9"),
        (["{a}", "--tokens", "sampled"], "--tokens takes auto, all or"),
        (["{a}", "--bins", "0"], "--bins must be"),
        ([], "give run ids or files to count, or --collection DIR"),
        (["{a}", "--collection", "{d}"], "give run ids or files, or --collection DIR, not both"),
    ],
)
def test_errors_are_one_line(cli, run_files, tmp_path, args, expect):
    res = cli("stats", *[x.format(a=run_files[0], d=tmp_path) for x in args])
    assert res.exit_code == 2 and res.stderr.startswith("tokentui: error:") and expect in res.stderr
    assert args or "both" not in res.stderr  # nothing given: the message does not speak of both
    assert len(res.stderr.strip().splitlines()) == 1 and res.stdout == ""


def test_with_several_runs_a_bad_one_is_skipped(cli, run_files, tmp_path):
    bad = tmp_path / "bad.tokentui"
    bad.write_bytes(b"not a run file")
    res = cli("stats", run_files[0], bad, "--json", "--branch", "1")
    assert res.exit_code == 0
    skipped = [line for line in res.stderr.splitlines() if line.startswith("tokentui: skipped:")]
    assert len(skipped) == 1 and "bad.tokentui" in skipped[0]
    assert [r["run_id"] for r in json.loads(res.stdout)["runs"]] == ["20260101-000000-abcdef"]
    res = cli("stats", bad, bad)
    assert res.exit_code == 2 and "none of the runs could be counted" in res.stderr


def test_stats_imports_neither_torch_nor_textual(run_files):
    code = textwrap.dedent(f"""
        import sys
        from tokentui.cli.app import app
        try:
            app(["stats", {str(run_files[0])!r}, "--plot-dir", {str(run_files[0].parent / "p")!r}])
        except SystemExit as e:
            assert not e.code, e.code
        print("heavy:" + ",".join(m for m in ("torch", "transformers", "textual") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "heavy:"


def test_a_batch_collection_counts_its_done_items(cli, model_dirs, tmp_path):
    """`--collection`: the runs a real `tokentui batch` made (two models), labelled by model and
    input line, counted together — the numbers of the reloaded run files themselves."""
    from tokentui.store.collection import load_collection

    src = tmp_path / "prompts.txt"
    src.write_text("def f(x):\n\nclass A:\n")  # line 2 is blank: not an item
    out = tmp_path / "coll"
    models = [str(model_dirs["gpt2"]), str(model_dirs["llama"])]
    res = cli("batch", "--prompts", src, "-m", models[0], "-m", models[1], "-n", 4, "--lens-chunk", 0, "--out", out)
    assert res.exit_code == 0, res.stderr
    res = cli("stats", "--collection", out, "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    done = list(load_collection(out).runs())
    assert len(done) == 4
    assert [r["item"] for r in doc["runs"]] == [item.index for item, _f in done]  # the input's line numbers
    assert [r["model"] for r in doc["runs"]] == [load_run(f).meta.model for _item, f in done]  # (tell the models apart)
    parts = [ref.counted(load_run(f), None, ("generated",)) for _item, f in done]
    check_summary(doc["all"]["summary"], [t for p in parts for t in p])
    for row, tokens in zip(doc["runs"], parts, strict=True):
        check_summary(row["summary"], tokens)
    # the text's rows tell the items apart: each shows its whole run id (a collection's ids differ
    # only at their end) and an item label cut in the middle, keeping the line number
    text = cli("stats", "--collection", out, "--no-plots").stdout.splitlines()
    rows = text[text.index("") + 2 :][: len(done)]  # (after the heading and the table's header)
    assert [line.split()[1] for line in rows] == [r["run_id"] for r in doc["runs"]]
    labels = [line.split()[0] for line in rows]
    assert len(set(labels)) == 4 and [x.rsplit(":", 1)[1] for x in labels] == ["1", "3", "1", "3"]
    # labelled by the model's name as its runs record it, not the path given to --model (which the
    # model column never showed: a trial saw "/tmp/…ol-tuned:1" beside "smol-tuned")
    assert [x.rsplit(":", 1)[0] for x in labels] == [r["model"] for r in doc["runs"]]
    assert str(tmp_path) not in "\n".join(text)
    bad = tmp_path / "not-a-collection"
    bad.mkdir()
    res = cli("stats", "--collection", bad)
    assert res.exit_code != 0 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_csv_dash_is_refused_not_a_file_named_dash(cli, run_files, tmp_path, monkeypatch):
    """`--csv -` wrote a file named "-" in the current folder, silently (- reads standard input
    elsewhere): refused in one line, before any run is read, nothing written."""
    monkeypatch.chdir(tmp_path)
    res = cli("stats", run_files[0], "--csv", "-")
    assert res.exit_code == 2 and "--csv -: give the table a file name" in res.stderr and not (tmp_path / "-").exists()


def test_raw_csv_writes_the_table_as_it_is(cli, run_files, tmp_path):
    """The flat table guards text a spreadsheet would run (a model named "=…" gets a ' before it);
    --raw-csv writes it as it is, as `export --raw-csv` does."""
    from tokentui.store.runfile import save_run

    run = load_run(run_files[0])
    run.meta.model = "=cmd|' /C calc'!A0"
    path = save_run(run, tmp_path / "r.tokentui")
    for extra, want in (([], "'=cmd|' /C calc'!A0"), (["--raw-csv"], "=cmd|' /C calc'!A0")):
        out = tmp_path / f"s{len(extra)}.csv"
        assert cli("stats", path, "--csv", out, *extra).exit_code == 0
        rows = list(csv.DictReader(out.open(encoding="utf-8")))
        assert rows[0]["model"] == want, rows
    res = cli("stats", path, "--raw-csv")  # (without a table to write it does nothing: said so)
    assert res.exit_code == 2 and "--raw-csv goes with --csv" in res.stderr


def test_runs_of_several_models_get_a_row_of_each_models_tokens(cli, tmp_path):
    """A collection batched under a base and its fine-tune: beside the pooled `all`, each model's
    tokens together (pooled, two models' tokens alone mean little), in the text, JSON and CSV."""
    runs = [make_run(n_branch_steps=n) for n in ((30, 12), (18, 25), (9, 4))]
    for i, (run, model) in enumerate(zip(runs, ("base", "tuned", "base"), strict=True)):
        run.meta.run_id = f"20260102-00000{i}-bbbbbb"
        run.meta.model = model
    files = [save_run(r, tmp_path / f"{i}.tokentui") for i, r in enumerate(runs)]
    out = tmp_path / "s.csv"
    res = cli("stats", *files, "--json", "--bins", 4, "--csv", out)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    parts = [ref.counted(r) for r in runs]
    want = {"base": parts[0] + parts[2], "tuned": parts[1]}
    assert [m["model"] for m in doc["models"]] == ["base", "tuned"]
    for row in doc["models"]:
        check_summary(row["summary"], want[row["model"]])
        assert [p["count"] for p in row["positions"]] == [p["count"] for p in ref.positions(want[row["model"]], 4)]
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["item"], r["model"]) for r in rows[3:]] == [("all", ""), ("all", "base"), ("all", "tuned")]
    assert int(rows[4]["tokens"]) == len(want["base"]) and int(rows[5]["tokens"]) == len(want["tuned"])
    text = cli("stats", *files, "--no-plots").stdout
    assert any(line.startswith("all") and " tuned " in f" {line} " for line in text.splitlines()), text
    # one model: no per-model rows
    one = json.loads(cli("stats", files[0], files[2], "--json").stdout)
    assert one["models"] == []


def _two_item_collection(folder):
    """A collection of two done items (runs made here, no model), as a batch leaves it."""
    from tokentui.store.collection import Collection, CollectionItem

    coll = Collection.new(folder)
    coll.models = ["m"]
    for index in (1, 2):
        run = make_run()
        run.meta.run_id = coll.run_id("m", index)
        coll.put(CollectionItem(index, "m", "done", save_run(run, coll.run_file_for("m", index)), None, "ab" * 32))
    coll.save()
    return coll


def test_a_collection_given_as_a_run_says_how_to_give_it(cli, tmp_path):
    """Its folder or its manifest where a run is expected: the error says --collection (a trial got
    "header over 16777216 bytes" for the manifest)."""
    coll = _two_item_collection(tmp_path / "c")
    for args in (("stats", coll.path), ("export", coll.manifest, "--format", "json")):
        res = cli(*args)
        assert res.exit_code == 2 and "--collection DIR" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert "batch collection's manifest" in cli("export", coll.manifest).stderr
    (tmp_path / "x.json").write_text('{"a": 1}')
    assert (
        "not a tokentui run file: a JSON text (an export cannot be opened again: the run is its .tokentui file)"
        in cli("export", tmp_path / "x.json").stderr
    )
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")  # (was "header over 16777216 bytes")
    (tmp_path / "notes").write_text("\ufeffhé€llo, a UTF-8 text with a BOM\n", encoding="utf-8")  # (é€ cut at byte 8)
    (tmp_path / "latin1").write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode("latin-1"))  # (not UTF-8)
    for text in ("passwd", "notes", "latin1"):
        assert cli("export", tmp_path / text).stderr.strip().endswith("not a tokentui run file: a text file")
    assert cli("stats", "--collection", coll.path).exit_code == 0


def test_a_collection_run_that_is_a_link_is_skipped_not_counted(cli, tmp_path):
    """stats --collection reads each item through the collection's reader: a run file replaced by
    a link to a run elsewhere is skipped with a line, never counted as the item."""
    coll = _two_item_collection(tmp_path / "c")
    elsewhere = save_run(make_run(), tmp_path / "elsewhere.tokentui")
    linked = coll.run_file_for("m", 2)
    linked.unlink()
    linked.symlink_to(elsewhere)
    res = cli("stats", "--collection", coll.path, "--json")
    assert res.exit_code == 0, res.output
    assert "skipped" in res.stderr and "symbolic link" in res.stderr
    assert [r["item"] for r in json.loads(res.stdout)["runs"]] == [1]


def test_collection_items_are_labelled_by_the_model_their_runs_record(cli, tmp_path):
    """The label's model is the run's own record, never the manifest's --model text resolved here
    (a manifest from elsewhere with '~nosuchuser/m' crashed stats; '.' named the folder stats ran
    in)."""
    from tokentui.store.collection import Collection, CollectionItem

    coll = Collection.new(tmp_path / "c")
    coll.models = ["~nosuchuser/m", "."]
    for given, recorded in zip(coll.models, ("m", "work"), strict=True):
        run = make_run()
        run.meta.run_id, run.meta.model = coll.run_id(given, 1), recorded
        coll.put(CollectionItem(1, given, "done", save_run(run, coll.run_file_for(given, 1)), None, "ab" * 32))
    coll.save()
    res = cli("stats", "--collection", coll.path, "--no-plots")
    assert res.exit_code == 0, res.output
    rows = res.stdout.splitlines()
    assert any(r.startswith("m:1 ") for r in rows) and any(r.startswith("work:1 ") for r in rows), res.stdout


def test_two_models_whose_folders_share_a_name_are_told_apart_not_pooled(cli, tmp_path):
    """Two checkpoints saved as runs-a/checkpoint and runs-b/checkpoint record one model name: a
    trial's stats pooled them as one model (no per-model rows, each item twice under one label).
    They are told apart by the --model text the batch was given, as its own tables do; a third
    model of its own name keeps it."""
    from tokentui.store.collection import Collection, CollectionItem

    coll = Collection.new(tmp_path / "c")
    coll.models = ["runs-a/checkpoint", "runs-b/checkpoint", "other"]
    recorded = ["checkpoint", "checkpoint", "other"]
    tokens = {}
    for given, name in zip(coll.models, recorded, strict=True):
        for item in (1, 2):
            run = make_run()
            run.meta.run_id, run.meta.model = coll.run_id(given, item), name
            coll.put(
                CollectionItem(item, given, "done", save_run(run, coll.run_file_for(given, item)), None, "ab" * 32)
            )
            tokens[given] = tokens.get(given, 0) + len(ref.counted(run, None, ("generated",)))
    coll.save()
    res = cli("stats", "--collection", coll.path, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["model"] for r in doc["runs"]] == ["runs-a/checkpoint"] * 2 + ["runs-b/checkpoint"] * 2 + ["other"] * 2
    assert {m["model"]: m["summary"]["tokens"] for m in doc["models"]} == tokens
    text = cli("stats", "--collection", coll.path, "--no-plots").stdout
    for label in ("runs-a/checkpoint:1 ", "runs-b/checkpoint:2 ", "other:1 "):
        assert any(line.startswith(label) for line in text.splitlines()), text


@pytest.mark.parametrize("ppl", [1.0, 4.6, 99999.994, 99999.996, 128134923.99, 6.3e30])
def test_a_perplexity_fits_its_column_and_reads_back(ppl):
    """The per-run table's ppl column is 8 cells: a random model's 128134923.99 stuck out past it."""
    from tokentui.cli.stats import _perplexity

    shown = _perplexity(ppl)
    assert len(shown) <= 8 and float(shown) == pytest.approx(ppl, rel=5e-3), shown


def test_extreme_token_lines_fit_the_terminal(cli, run_files, monkeypatch):
    """At 80 columns a trial's lists of extreme tokens were 83–100 cells and wrapped mid-word: each
    line's context is now cut to fit, the token itself whole."""
    from rich.cells import cell_len

    for columns, files in ((80, run_files), (60, run_files[:1])):  # (several runs: each line names its run)
        monkeypatch.setenv("COLUMNS", str(columns))
        res = cli("stats", *files, "--no-plots")
        assert res.exit_code == 0, res.stderr
        lines = res.stdout.splitlines()
        extremes = [line for line in lines[lines.index("highest entropy") :] if "⟦" in line]
        assert len(extremes) >= 4 and max(cell_len(line) for line in extremes) <= columns, extremes
        assert all("⟧" in line for line in extremes)


def test_a_wide_characters_context_is_cut_by_terminal_cells():
    """A CJK context was cut by characters, each two cells wide, and overran the line: the sides
    are cut to cells (`…` beside, the token whole)."""
    from rich.cells import cell_len

    from tokentui.core.stats import Token, shown_context

    t = Token(0, 0, 0, 40, "猫".encode(), ("漢字" * 20).encode(), ("かな" * 20).encode(), 1.0, -0.5, 1)
    for before, after in ((10, 7), (0, 0), (1, 1)):
        b, tok, a = shown_context(t, before, after)
        assert tok == "猫" and b.startswith("…") and a.endswith("…")
        assert cell_len(b) <= before + 1 and cell_len(a) <= after + 1, (b, a)
    assert shown_context(t, 200, 200)[0] == "漢字" * 20  # (all of it when it fits)


def test_help_gives_the_ranges_the_options_are_held_to(cli):
    """--bins and --top are refused outside their ranges; the help said none (a trial)."""
    from tokentui.core.stats import MAX_BINS, MAX_TOP, StatsError, check_options

    res = cli("stats", "--help")
    text = " ".join(res.stdout.split())
    assert f"Bins of relative position, 1…{MAX_BINS}." in text and f"extremes, 0…{MAX_TOP}." in text
    check_options(MAX_BINS, MAX_TOP)  # (the ends are allowed)
    for bins, top in ((MAX_BINS + 1, 1), (0, 1), (1, MAX_TOP + 1)):
        with pytest.raises(StatsError, match="must be"):
            check_options(bins, top)


def test_a_run_given_twice_is_counted_once_and_said(cli, run_files, tmp_path):
    """`stats A A B` (or a copy of A) counted A's tokens twice with no word: the second is skipped
    with a line naming the first, and the numbers are those of A and B."""
    import shutil

    copy = shutil.copy(run_files[0], tmp_path / "copy.tokentui")
    twice = cli("stats", run_files[0], run_files[0], copy, run_files[1], "--json")
    once = cli("stats", run_files[0], run_files[1], "--json")
    assert twice.exit_code == 0 and once.exit_code == 0, twice.output
    skipped = [line for line in twice.stderr.splitlines() if line.startswith("tokentui: skipped:")]
    assert len(skipped) == 2 and all("is arg 1 again: counted once" in line for line in skipped), twice.stderr
    a, b = json.loads(twice.stdout)["all"], json.loads(once.stdout)["all"]
    a.pop("extremes"), b.pop("extremes")  # (these name each token's run by its argument: arg 4, arg 2)
    assert a == b and a["summary"]["tokens"] > 0


def test_a_run_skipped_for_its_branch_is_not_said_to_be_counted_when_given_again(cli, run_files):
    """`stats R R --branch 9`: the first skipped (no branch 9), the second was "R again: counted
    once" though nothing of R was counted; each says why it is skipped."""
    res = cli("stats", run_files[0], run_files[0], run_files[1], "--branch", 9)
    skipped = [line for line in res.stderr.splitlines() if line.startswith("tokentui: skipped:")]
    assert len(skipped) == 3 and not any("again" in line for line in skipped), res.stderr
