"""`tree` end to end on tiny real models: it saves the run, prints the tree (text or seed 002's
JSON, which equals the saved run's export), grows a saved run further, exports seed 002's files,
refuses bad input in one line before the model loads, and Ctrl-C keeps the partial tree."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from tests.terminal import finish, read_until, tokentui_command
from tokentui.core import tree
from tokentui.store.cache import list_runs
from tokentui.store.runfile import load_run

PROMPT = "def wrap(text, width):\n    "


def test_tree_saves_the_run_and_prints_the_tree(cli, peaked_dirs, cache_dir):
    res = cli("tree", "-m", peaked_dirs["gpt2"], "-p", PROMPT, "--max-depth", 4, "--max-completed-paths", 3, "-k", 6)
    assert res.exit_code == 0, res.output
    [saved] = list_runs(cache_dir)
    run = load_run(saved.path)
    s = tree.searches(run)[0]
    assert s["stopped"] == "completed" and s["completed"] == 3 and s["nodes"] == len(run.branches) > 3
    assert run.meta.mode == "tree" and run.meta.k == 6
    lines = res.stdout.splitlines()
    assert lines[0].startswith("▸ def") and f"({len(run.branches)} nodes)" in lines[0]
    assert "width):↵    " in lines[0]  # (the root's indent as it is: whitespace runs were collapsed to one)
    assert sum("✓" in x for x in lines) == 3  # the finished paths
    assert f"run {run.id} ({s['nodes']} nodes, 3 completed paths, stopped: completed) saved to" in lines[-1]
    assert "… tree:" in res.stderr and "completed, threshold" in res.stderr


def test_tree_json_is_the_export_of_the_saved_run(cli, peaked_dirs, cache_dir, tmp_path):
    res = cli("tree", "-m", peaked_dirs["llama"], "-p", PROMPT, "--max-depth", 3, "--max-nodes", 12, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["metadata"]["prompt"] == PROMPT and doc["metadata"]["parameters"]["max_nodes"] == 12
    [saved] = list_runs(cache_dir)
    assert f"run {saved.run_id}" in res.stderr
    exported = cli("export", saved.run_id, "--format", "tree-json")
    assert exported.exit_code == 0 and exported.stdout == res.stdout  # reloaded from the file: identical
    out = tmp_path / "t.json"
    assert cli("export", saved.run_id, "--format", "tree-json", "-o", out).exit_code == 0
    assert out.read_text() == res.stdout
    lines = cli("export", saved.run_id, "--format", "seed002-jsonl").stdout.splitlines()
    run = load_run(saved.path)
    assert len(lines) == len(list(tree.build_trie(run).leaves()))
    assert all(set(json.loads(x)) == {"prompt", "response", "data"} for x in lines)
    bad = cli("export", saved.run_id, "--format", "tree-json", "-o", tmp_path / "t.csv")
    assert bad.exit_code == 2 and "does not match the extension" in bad.stderr


def test_with_a_chat_template_every_full_text_is_the_text_the_model_continued(cli, peaked_dirs, peaked, cache_dir):
    """Seed 002's full_text is the string the model continued: with --chat the root is the
    template's text (a trial saw a child's full_text as the bare prompt plus its token, a text the
    model never saw), as after --force. Checked by tokenizing each node's full_text."""
    res = cli("tree", "-m", peaked_dirs["gpt2"], "-p", "def f(x):", "--chat", "--max-depth", 2, "--max-nodes", 6,
              "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    tok = peaked("gpt2").tokenizer
    text = tok.apply_chat_template([{"role": "user", "content": "def f(x):"}], add_generation_prompt=True,
                                   tokenize=False)  # fmt: skip
    root = doc["tree"]
    assert doc["metadata"]["prompt"] == root["full_text"] == text != "def f(x):"
    [child, *_] = root["children"]
    assert child["full_text"] == text + child["text"]
    assert tok(child["full_text"], add_special_tokens=False)["input_ids"][-1] == child["token_id"]


def test_tree_grows_a_saved_run_from_a_position(cli, peaked_dirs, cache_dir, monkeypatch):
    m = peaked_dirs["gpt_neox"]
    assert cli("generate", "-m", m, "-p", PROMPT, "-n", 5).exit_code == 0
    [saved] = list_runs(cache_dir)
    before = load_run(saved.path)
    at = len(before.prompt) + 2
    res = cli("tree", "-m", m, "--run", saved.run_id, "--branch", 0, "--position", at, "--max-depth", 3)
    assert res.exit_code == 0, res.output
    run = load_run(saved.path)
    s = tree.searches(run)[0]
    assert (s["root_branch"], s["root_position"]) == (0, at)
    new = run.branches[len(before.branches) :]
    assert len(new) == s["nodes"] > 0 and run.branches[0].steps.equals(before.branches[0].steps)
    assert all(b.fork_position == at for b in new if b.parent == 0)
    assert res.stdout.splitlines()[0].startswith("▸ ")
    # from the end of the branch when no position is given
    res = cli("tree", "-m", m, "--run", saved.run_id, "--max-depth", 2, "--max-nodes", 3)
    assert res.exit_code == 0, res.output
    assert tree.searches(load_run(saved.path))[1]["root_position"] == run.length(0)
    # without --model: the run knows its model's folder name only, and says so
    hint = cli("tree", "--run", saved.run_id, "--max-depth", 2)
    assert hint.exit_code == 2 and "give its folder with --model" in hint.stderr.splitlines()[-1]
    # ... unless a folder of that name is here: it is taken, and that is said (a trial saw it silent)
    monkeypatch.chdir(m.parent)
    res = cli("tree", "--run", saved.run_id, "--max-depth", 2, "--max-nodes", 3)
    assert res.exit_code == 0, res.output
    assert f"the run names the model {m.name}: taking the folder {m.resolve()} (--model for another)" in res.stderr


@pytest.mark.parametrize("forged", ["{abs}", "../{name}", "~/{name}", "./{name}", "a/b/c"])
def test_a_run_naming_its_model_by_a_path_is_refused_without_model(cli, model_dirs, cache_dir, tmp_path, forged):
    """tokentui records a model's name, never its path; a received run naming a path (a trial's
    named /elsewhere/model and ../../x) decided which folder was read. Without --model such a run
    is refused in one line, before anything loads."""
    from tests.factories import make_run
    from tokentui.store.runfile import save_run

    m = model_dirs["gpt2"]
    run = make_run()
    run.meta.model = forged.format(abs=m, name=m.name)
    path = save_run(run, tmp_path / "forged.tokentui")
    res = cli("tree", "--run", path, "--max-depth", 2, "--max-nodes", 3)
    assert res.exit_code == 2 and "not a name tokentui records" in res.stderr and "loading" not in res.stderr
    assert "give the model with --model" in res.stderr.splitlines()[-1]


def test_a_forced_prefix_guides_the_tree(cli, peaked_dirs, cache_dir, peaked):
    """Seed 002's guided generation: with --force the answer starts with that text (the root
    branch, its tokens forced, scored as the model sees them) and the tree grows from its end."""
    import numpy as np

    m = peaked_dirs["gpt2"]
    force = "return text"
    res = cli("tree", "-m", m, "-p", PROMPT * 8, "--force", force, "--max-depth", 2, "--max-nodes", 6)
    assert res.exit_code == 0, res.output
    [saved] = list_runs(cache_dir)
    run = load_run(saved.path)
    tok = peaked("gpt2").tokenizer
    forced = tok(force, add_special_tokens=False)["input_ids"]
    root = run.branches[0]
    assert root.n_forced == len(root.steps) == len(forced) and root.steps.col("token_id").tolist() == forced
    s = tree.searches(run)[0]
    assert (s["root_branch"], s["root_position"]) == (0, len(run.prompt) + len(forced)) and s["nodes"] > 0
    assert all(b.parent == 0 and b.fork_position == s["root_position"] for b in run.branches[1:] if b.parent == 0)
    # the forced tokens' numbers are the model's (a plain forward over prompt + forced text)
    import torch

    ids = tok(PROMPT * 8)["input_ids"] + forced
    with torch.inference_mode():
        logp = torch.log_softmax(peaked("gpt2").model(torch.tensor([ids])).logits[0].float(), -1)
    want = [float(logp[len(run.prompt) + i - 1, t]) for i, t in enumerate(forced)]
    np.testing.assert_allclose(root.steps.col("logprob"), want, atol=1e-5)
    head = res.stdout.splitlines()[0]  # a long root shows its end, where the tree goes on
    assert head.startswith("▸ …") and head.split("  (")[0].endswith("return text"), head
    bad = cli("tree", "-m", m, "--run", saved.run_id, "--force", "x")
    assert bad.exit_code == 2 and "--force goes with --prompt" in bad.stderr
    # a forced text that leaves no room for a tree: one line, at once (a trial waited 70 s for a
    # false "interrupted … nothing saved", exit 130, and a run with no tree in the cache)
    context = peaked("gpt2").model.config.n_positions
    long = cli("tree", "-m", m, "-p", PROMPT, "--force", " x" * context)
    assert long.exit_code == 2, long.output
    assert f"the model's context ({context} positions) leaves no room for a tree" in long.stderr
    assert [r.run_id for r in list_runs(cache_dir)] == [saved.run_id]


def test_a_tree_grown_inside_a_branch_prints_only_the_searchs_own_nodes(cli, peaked_dirs, cache_dir):
    """Grown from inside a branch, the printed tree is the search's: its nodes (depth 1 here: one
    token a line, each finished), not the branch's old continuation merged into it (which showed
    paths deeper than --max-depth and cumulative p of tokens the search never made)."""
    m = peaked_dirs["gpt2"]
    assert cli("generate", "-m", m, "-p", PROMPT, "-n", 8).exit_code == 0
    [saved] = list_runs(cache_dir)
    at = len(load_run(saved.path).prompt) + 1
    res = cli("tree", "-m", m, "--run", saved.run_id, "--position", at, "--max-depth", 1)
    assert res.exit_code == 0, res.output
    run = load_run(saved.path)
    s = tree.searches(run)[0]
    lines = res.stdout.splitlines()[:-1]  # (the last: "run … saved to …")
    assert f"({s['nodes']} nodes)" in lines[0] and len(lines) == 1 + s["nodes"], lines
    for line in lines[1:]:  # "tok p   cum p  ✓": one node, its cumulative p its own p
        assert " · " not in line and line.rstrip().endswith("✓"), line
        p, cum = line.split("   cum ")[0].rsplit(" ", 1)[1], line.split("   cum ")[1].split()[0]
        assert abs(float(p) - float(cum)) <= 1e-3, line


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--min-branch-threshold", "1.5"], r"min-branch-threshold must be in [0, 1] (got 1.5)"),
        (["--max-branch-threshold", "-0.1"], "max-branch-threshold must be in [0, 1]"),
        (["--candidate-threshold", "2"], "candidate-threshold must be in [0, 1]"),
        (["--min-branch-threshold", "0.6", "--max-branch-threshold", "0.5"], "is above max-branch-threshold"),
        (["--soft-queue-limit", "0"], "soft-queue-limit must be a whole number ≥ 1 (got 0)"),
        (["--max-depth", "-3"], "max-depth must be a whole number ≥ 1"),
        (["--max-completed-paths", "0"], "max-completed-paths must be a whole number ≥ 1"),
        (["--max-nodes", "0"], "max-nodes must be a whole number ≥ 1"),
        (["-k", "0"], "k, the alternatives recorded (-k), must be at least 1"),
        (["--lens-chunk", "-1"], "--lens-chunk must be ≥ 0"),
    ],
)
def test_bad_parameters_fail_in_one_line_before_the_model_loads(cli, weightless_model, args, expect):
    res = cli("tree", "-m", weightless_model, "-p", "x", *args)
    assert res.exit_code == 2
    assert res.stderr == f"tokentui: error: {expect}\n" or (res.stderr.count("\n") == 1 and expect in res.stderr)


@pytest.mark.parametrize(
    "args, expect",
    [
        ([], "give either --prompt or --run"),
        (["-p", "x", "--run", "y"], "give either --prompt or --run"),
        (["-p", "x", "--position", "3"], "--branch and --position go with --run"),
        (["-p", "  "], "the prompt is empty"),
        (["--run", "no-such-run"], "no-such-run"),
        (["--run", "{run}", "--branch", "5"], "no branch 5"),
        (["--run", "{run}", "--position", "999"], "position 999 is out of range"),
        (["--run", "{run}", "--position", "0"], "position 0 is out of range"),
        (["--run", "{run}", "--chat"], "--chat goes with --prompt"),
    ],
)
def test_bad_starts_fail_in_one_line_before_the_model_loads(cli, weightless_model, cache_dir, args, expect):
    from tests.factories import make_run
    from tokentui.store.cache import run_path
    from tokentui.store.runfile import save_run

    run = make_run()
    save_run(run, run_path(run.id, cache_dir))
    res = cli("tree", "-m", weightless_model, *[a.format(run=run.id) for a in args])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("tokentui: error: ") and res.stderr.count("\n") == 1 and expect in res.stderr
    assert "Traceback" not in res.output


def test_a_run_of_another_model_is_refused(cli, peaked_dirs, cache_dir):
    from tests.factories import make_run
    from tokentui.store.cache import run_path
    from tokentui.store.runfile import save_run

    run = make_run()  # a vocabulary of 300
    save_run(run, run_path(run.id, cache_dir))
    res = cli("tree", "-m", peaked_dirs["gpt2"], "--run", run.id)
    last = res.stderr.splitlines()[-1]  # (after the loading lines)
    assert res.exit_code == 2 and last.startswith(f"tokentui: error: run {run.id}: the run was made by m and ")
    assert last.endswith("(open it with --model m)")


def test_ctrl_c_keeps_the_partial_tree(peaked_dirs, cache_dir):
    cmd = [*tokentui_command(), "tree", "-m", str(peaked_dirs["gpt2"]), "-p", PROMPT, "--max-depth", "1000",
           "--max-completed-paths", "1000", "--max-nodes", "10000", "--min-branch-threshold", "0.02",
           "--cache-dir", str(cache_dir)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    read_until(proc.stderr, b"tree: ")  # the search has started
    proc.send_signal(signal.SIGINT)
    rc, err = finish(proc)
    assert rc == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    [saved] = list_runs(cache_dir)
    assert saved.what == "cancelled"  # (`runs` lists it so, not as a plain tree)
    run = load_run(saved.path)
    s = tree.searches(run)[0]
    assert s["stopped"] == "cancelled" and 0 < s["nodes"] == len(run.branches) < 10000
    assert set(run.meta.tree["nodes"]) == {str(b.id) for b in run.branches}
    # the last line says so, as every command stopped by Ctrl-C ends (a trial found none)
    nodes = f"{s['nodes']} node" + ("s" if s["nodes"] != 1 else "")
    assert err.strip().splitlines()[-1] == f"tokentui: interrupted: the tree of {nodes} grown so far is saved", err
