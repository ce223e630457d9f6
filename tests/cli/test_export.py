"""`export`: formats from the file name, overwriting only on request, errors that name the user's
file, and a reader that closes the pipe early."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.factories import make_run
from tests.terminal import tokentui_command
from tokentui.store.runfile import save_run


@pytest.fixture
def run_file(tmp_path):
    return save_run(make_run(), tmp_path / "r.tokentui")


@pytest.mark.parametrize("name, first", [("x.json", "{"), ("x.JSONL", '{"run_id"'), ("x.csv", "prompt_id,")])
def test_the_extension_picks_the_format(cli, run_file, tmp_path, name, first):
    out = tmp_path / name
    res = cli("export", run_file, "-o", out)
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith(first)
    if name == "x.json":
        assert json.loads(out.read_text())["meta"]["run_id"] == "20260101-000000-abcdef"


@pytest.mark.parametrize(
    "args, expect",
    [
        (["-o", "{d}/x.json", "--format", "csv"], "does not match the extension of x.json"),
        # (an ending that names a format: a trial's t.tree.json held the run's JSON)
        (["-o", "{d}/t.tree.json", "--format", "json"], "does not match t.tree.json, whose ending (.tree.json)"),
        (["-o", "{d}/y.seed004.json", "--format", "tree-json"], "(.seed004.json) is seed004's"),
        (["-o", "{d}/y.seed002.jsonl", "--format", "jsonl"], "(.seed002.jsonl) is seed002-jsonl's"),
        (["-o", "{d}/x.txt"], "cannot tell the format from the name x.txt"),
        # (every ending that names a format, and the folder formats, a trial found left out)
        (["-o", "{d}/x.txt"], ".tree.json, .seed002.jsonl, .seed004.json, or give --format"),
        (["-o", "{d}/x.txt"], "seed001 and seed001-comparative write a folder"),
        (["-o", "{d}/x"], "csv, jsonl, json"),
        (["-o", "{d}/no/such/folder/x.csv"], "no such folder"),
        (["-o", "{d}/a-file/more/x.csv"], "a-file is a file, not a folder"),  # (it said "no such folder")
        (["-o", "{d}", "--format", "csv"], "is a folder"),
        (["-o", "{d}"], "is a folder; give a file name"),  # (without --format it said "the name :")
        (["--format", "xml"], "unknown format"),
    ],
)
def test_bad_outputs_are_one_line_naming_the_users_file(cli, run_file, tmp_path, args, expect):
    (tmp_path / "a-file").write_text("a file where a folder is named")
    res = cli("export", run_file, *[a.format(d=tmp_path) for a in args])
    assert res.exit_code == 2 and res.stderr.startswith("tokentui: error:") and expect in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and ".tmp" not in res.stderr
    if "no/such" in args[1]:
        assert "no/such/folder/x.csv" in res.stderr


def test_an_explicit_format_writes_any_other_name(cli, run_file, tmp_path):
    res = cli("export", run_file, "-o", tmp_path / "x.txt", "--format", "jsonl")
    assert res.exit_code == 0 and (tmp_path / "x.txt").read_text().startswith('{"run_id"')


def test_an_existing_file_is_overwritten_only_with_force(cli, run_file, tmp_path):
    out = tmp_path / "x.csv"
    out.write_text("keep me")
    res = cli("export", run_file, "-o", out)
    assert res.exit_code == 2 and "add --force" in res.stderr and out.read_text() == "keep me"
    res = cli("export", run_file, "-o", out, "--force")
    assert res.exit_code == 0 and out.read_text().startswith("prompt_id,")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_export_into_a_closed_pipe_is_quiet(tmp_path):
    path = save_run(make_run(n_branch_steps=(3000, 3)), tmp_path / "r.tokentui")
    cmd = [*tokentui_command(), "export", str(path), "--format", "jsonl"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        rc = proc.wait(timeout=60)
    assert first.startswith(b"{") and rc == 0 and err == ""


def test_csv_is_spreadsheet_safe_unless_raw_csv(cli, tmp_path):
    from tokentui.core.tokens import TokenTable

    run = make_run()
    run.tokens = TokenTable({i: b'=HYPERLINK("x")\x1b[2J' for i in range(run.meta.vocab_size)})
    path = save_run(run, tmp_path / "f.tokentui")
    safe = cli("export", path).stdout
    assert "'=HYPERLINK" in safe and "\x1b" not in safe and "␛[2J" in safe
    raw = cli("export", path, "--raw-csv").stdout
    assert '\n"=HYPERLINK' in raw or ',"=HYPERLINK' in raw or ",=HYPERLINK" in raw
    assert "\x1b[2J" in raw


def test_out_refuses_a_symlink_in_one_line(cli, run_file, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "l.csv").symlink_to(victim)
    r = cli("export", run_file, "--out", tmp_path / "l.csv", "--force")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "symbolic link" in r.stderr
    assert victim.read_text() == "keep" and (tmp_path / "l.csv").is_symlink()


def test_seed002_jsonl_gives_the_chosen_token_one_logprob(cli, model_dirs, cache_dir, tmp_path):
    """The chosen token among `other_tokens` has the token's own (float32) log-prob, not the
    float16 top-k copy: one token, one value per line."""
    from tokentui.store.cache import list_runs

    res = cli("generate", "-m", model_dirs["gpt2"], "-p", "def wrap(text, width):", "-n", 6, "-k", 5)
    assert res.exit_code == 0, res.output
    [saved] = list_runs(cache_dir)
    res = cli("export", saved.run_id, "--format", "seed002-jsonl")
    assert res.exit_code == 0, res.output
    seen = 0
    for line in res.stdout.splitlines():
        for d in json.loads(line)["data"]:
            same = [o for o in d["other_tokens"] if o["token"] == d["token"]]
            seen += len(same)
            assert [(o["logprob"], o["prob"]) for o in same] == [(d["logprob"], d["prob"])] * len(same)
    assert seen >= 3


def test_tree_json_of_a_search_grown_from_a_branch_is_rooted_at_the_search(cli, model_dirs, cache_dir):
    """`tree --run RUN --position P` on a generation: the export's parameters are the search's,
    its root is the search's (position P), and a finished node has no children or candidates (the
    generation's tokens below it are left out and counted)."""
    from tokentui.core import tree
    from tokentui.store.cache import list_runs
    from tokentui.store.runfile import load_run

    model = model_dirs["gpt2"]
    res = cli("generate", "-m", model, "-p", "def wrap(text, width):", "-n", 8)
    assert res.exit_code == 0, res.output
    [saved] = list_runs(cache_dir)
    root = len(load_run(saved.path).prompt) + 4
    res = cli("tree", "-m", model, "--run", saved.run_id, "--position", root, "--max-depth", 2)
    assert res.exit_code == 0, res.output
    run = load_run(list_runs(cache_dir)[0].path)
    [search] = tree.searches(run)
    res = cli("export", saved.run_id, "--format", "tree-json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["metadata"]["parameters"] == search["parameters"] and search["parameters"]["max_depth"] == 2
    assert doc["metadata"]["tokentui"]["root_position"] == root
    assert doc["metadata"]["tokentui"]["root_branch"] == 0
    assert doc["tree"]["candidates"] == [
        {"text": c["text"], "prob": c["prob"], "token_id": c["token_id"]} for c in doc["tree"]["candidates"]
    ] and [c["token_id"] for c in doc["tree"]["candidates"]] == [t for t, _ in search["root_candidates"]]
    stack, finished = [doc["tree"]], 0
    while stack:
        node = stack.pop()
        assert node["depth"] <= 2
        if node["is_finished"]:
            finished += 1
            assert node["children"] == [] and node["candidates"] == []
        stack.extend(node["children"])
    assert finished >= 1
    # only the search's own nodes: not the generation's 8 − 4 tokens after the root, which pass
    # through it too (they went under the finished node on their path, or beside the search's)
    count, stack = 0, list(doc["tree"]["children"])
    while stack:
        count += 1
        stack.extend(stack.pop()["children"])
    assert count == search["nodes"] and doc["metadata"]["tokentui"]["left_out_below_finished"] == 0


@pytest.mark.parametrize("name", ["a.seed002.jsonl", "a.tree.json"])
def test_seed002_files_of_a_run_without_generated_tokens_are_refused(cli, tmp_path, name):
    """A scored text has no path to write: one line and no file (a trial got an empty file, exit 0;
    another a tree JSON of a bare root while the lines were refused)."""
    from pathlib import Path

    from tokentui.store.runfile import load_run

    path = Path(__file__).parents[2] / "sample_runs" / "score-prose.tokentui"
    run = load_run(path)
    assert len(run.branches) == 1 and run.length(0) == len(run.prompt)  # a scored text
    res = cli("export", path, "-o", tmp_path / name)
    assert res.exit_code == 2 and "has no generated tokens" in res.stderr, res.output
    assert not (tmp_path / name).exists() and not list(tmp_path.glob(".*tmp"))
    assert cli("export", path, "-o", tmp_path / "a.jsonl").exit_code == 0
