"""`runs`, `runs rm` and run references: any unique part of an id names a run."""

from __future__ import annotations

import json

from tests.factories import make_run
from tokentui.store.cache import list_runs, run_path
from tokentui.store.runfile import save_run


def _cache_with(cache_dir, *ids):
    cache_dir.mkdir(parents=True, exist_ok=True)
    for i in ids:
        run = make_run()
        run.meta.run_id = i
        save_run(run, run_path(i, cache_dir))


def test_runs_lists_and_rm_removes_by_a_part_of_the_id(cli, cache_dir):
    _cache_with(cache_dir, "20260101-000000-aaa111", "20260102-000000-bbb222")
    listing = cli("runs")
    assert listing.exit_code == 0 and "aaa111" in listing.stdout and "bbb222" in listing.stdout
    assert "hi ✓ ␛[31m" in listing.stdout  # the prompt's escape shown, not sent
    res = cli("runs", "rm", "bb22")  # a part from the middle, not a prefix
    assert res.exit_code == 0 and "removed 20260102-000000-bbb222" in res.stdout
    assert [r.run_id for r in list_runs(cache_dir)] == ["20260101-000000-aaa111"]


def test_an_ambiguous_reference_names_the_runs_it_matches(cli, cache_dir):
    _cache_with(cache_dir, *(f"2026010{d}-000000-abc00{d}" for d in range(1, 8)))
    res = cli("export", "abc00")
    assert res.exit_code == 2
    [line] = res.stderr.strip().splitlines()
    assert "ambiguous: 7 runs match" in line and "20260107-000000-abc007" in line and "and 2 more" in line
    assert cli("export", "c004", "--format", "json").exit_code == 0


def test_runs_on_an_empty_cache(cli, cache_dir):
    res = cli("runs")
    assert res.exit_code == 0 and "no runs in" in res.stdout
    res = cli("runs", "rm", "nonexistent")
    assert res.exit_code == 2 and "no such run" in res.stderr


def test_rm_removes_from_the_cache_given_before_or_after_it(cli, cache_dir, tmp_path):
    """`runs --cache-dir D rm RUN` removes D's run, never the default cache's copy of it."""
    other = tmp_path / "other"
    _cache_with(cache_dir, "20260101-000000-aaa111")
    _cache_with(other, "20260101-000000-aaa111", "20260102-000000-bbb222")
    res = cli("runs", "--cache-dir", other, "rm", "aaa111")
    assert res.exit_code == 0 and "removed 20260101-000000-aaa111" in res.stdout
    assert [r.run_id for r in list_runs(other)] == ["20260102-000000-bbb222"]
    assert [r.run_id for r in list_runs(cache_dir)] == ["20260101-000000-aaa111"]  # untouched
    res = cli("runs", "rm", "--cache-dir", other, "bbb222")
    assert res.exit_code == 0 and not list_runs(other)
    res = cli("runs", "--cache-dir", other, "rm", "--cache-dir", cache_dir, "aaa111")
    assert res.exit_code == 2 and "give --cache-dir once" in res.stderr
    assert [r.run_id for r in list_runs(cache_dir)] == ["20260101-000000-aaa111"]


def test_a_run_copied_in_under_another_name_is_listed_by_the_name_commands_take(cli, cache_dir):
    """A received file copied into the cache keeps its own name: `runs` shows that name (what
    replay, export and rm take) and the id inside it (a trial got "no such run" for the id)."""
    _cache_with(cache_dir, "20260101-000000-aaa111")
    (cache_dir / "20260101-000000-aaa111.tokentui").rename(cache_dir / "from-alice.tokentui")
    listing = cli("runs")
    [line] = [x for x in listing.stdout.splitlines() if "alice" in x]
    assert line.startswith("from-alice ") and "(holds run 20260101-000000-aaa111)" in line, line
    assert cli("export", line.split()[0], "--format", "json").exit_code == 0
    res = cli("runs", "rm", line.split()[0])
    assert res.exit_code == 0 and not list_runs(cache_dir)


def test_runs_says_how_each_run_ended_or_what_kind_it_is(cli, cache_dir):
    """A run cut short (Ctrl-C, a killed process) looked like any other in the list: the 'what'
    column gives a generation's end (length, eos, cancelled …), other runs' kind (tree, score …)
    unless they ended badly."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    cases = {"aaa111": ("generate", "length"), "bbb222": ("generate", "cancelled"), "ccc333": ("tree", "length"),
             "ddd444": ("score", "error")}  # fmt: skip
    for i, (mode, status) in cases.items():
        run = make_run()
        run.meta.run_id, run.meta.mode = f"20260101-000000-{i}", mode
        run.branches[0].status = status
        save_run(run, run_path(run.id, cache_dir))
    listing = cli("runs")
    assert listing.exit_code == 0
    assert listing.stdout.splitlines()[0].split()[:2] == ["id", "what"]
    shown = {line.split()[0][-6:]: line.split()[1] for line in listing.stdout.splitlines()[1:]}
    assert shown == {"aaa111": "length", "bbb222": "cancelled", "ccc333": "tree", "ddd444": "error"}


def test_a_long_id_widens_the_id_column_and_the_columns_stay_in_line(cli, cache_dir):
    """A batch item's run (33 characters, cached by `attribute`) overflowed the 23-wide id column
    and pushed its row's other columns out of line."""
    long_id = "20260101-000000-abcdef-0123abcd-12"
    _cache_with(cache_dir, "20260101-000000-aaa111", long_id)
    lines = cli("runs").stdout.splitlines()
    header, rows = lines[0], lines[1:]
    assert len(rows) == 2 and any(r.startswith(long_id + " ") for r in rows)
    where = header.index("what")
    assert all(r[where - 1] == " " and r[where:].split()[0] == "length" for r in rows), lines


def test_runs_names_the_batch_collections_whose_runs_it_does_not_list(cli, cache_dir, model_dirs, tmp_path):
    """A trial found `runs` saying "no runs in …" beside a batch of 200 runs: a collection's runs
    are not the cache's list, yet they open by id. `runs` names each collection the cache knows
    (kept in it, or made with --out) with its number of runs, and under it what it was made with
    (two batches of one prompts file differing in `-n` were told apart by a hash alone)."""
    src = tmp_path / "p.txt"
    src.write_text("import os\nclass A:\n", encoding="utf-8")
    out = tmp_path / "elsewhere"
    common = ["--prompts", src, "-m", str(model_dirs["gpt2"]), "-n", 2, "--lens-chunk", 0]
    assert cli("batch", *common).exit_code == 0  # (into the cache's collections folder)
    assert cli("batch", *common, "-n", 1, "--out", out).exit_code == 0
    res = cli("runs")
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0] == f"no runs in {cache_dir}"
    at = lines.index("batch collections (their runs open by id; stats --collection DIR, export --collection DIR):")
    [inside] = [p for p in (cache_dir / "collections").iterdir()]
    assert lines[at + 1 :] == [
        f"  2 runs  {inside}",
        f"          {model_dirs['gpt2']} · prompts · greedy · max 2 tokens · k=20 · 2 done",
        f"  2 runs  {out}",
        f"          {model_dirs['gpt2']} · prompts · greedy · max 1 token · k=20 · 2 done",
    ]
    # a dataset's k sits at the top of its settings (a review found it left out)
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "import os", "response": " and sys"}\n', encoding="utf-8")
    scored = tmp_path / "scored"
    assert cli("batch", "--dataset", data, "-m", str(model_dirs["gpt2"]), "-k", 5, "--out", scored).exit_code == 0
    lines = cli("runs").stdout.splitlines()
    at = lines.index(f"   1 run  {scored}")
    assert lines[at + 1] == f"          {model_dirs['gpt2']} · dataset, loss over response · k=5 · 1 done"
    # damaged manifests: said in one line each, the others still listed (a 400-digit top-p made
    # SamplingParams.from_dict raise OverflowError, and `runs` stopped)
    manifest = json.loads((inside / "collection.json").read_text(encoding="utf-8"))
    manifest["settings"]["generation"]["sampling"]["top_p"] = 10**400
    (inside / "collection.json").write_text(json.dumps(manifest), encoding="utf-8")
    (out / "collection.json").write_text("{", encoding="utf-8")
    res = cli("runs")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[lines.index(f"  2 runs  {out}") + 1] == "          (its manifest: not valid JSON)"
    assert lines[lines.index(f"  2 runs  {inside}") + 1].endswith("· prompts · greedy · max 2 tokens · k=20 · 2 done")
    run_id = next((out / "runs").iterdir()).stem
    assert cli("export", run_id, "--format", "json").exit_code == 0  # (opens by id, as it says)
