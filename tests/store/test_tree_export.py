"""Seed 002's files from a run: the tree JSON of its tree viewer and the lines of its logprobs
viewer, from a searched run and a hand-grown one; the tree record in run files (strictly checked,
optional); deep trees without recursion."""

from __future__ import annotations

import io
import json
import math
import sys
from contextlib import contextmanager

import numpy as np
import pytest

from tests.factories import RAW_CONTROLS, make_run, make_tree_run, rewrite_header, with_run_desc
from tokentui.core import tree
from tokentui.core.columns import nan_step
from tokentui.core.display import decode_bytes
from tokentui.core.step import Step
from tokentui.store.export import export, format_for
from tokentui.store.header import RunFileError
from tokentui.store.runfile import load_run, save_run


def exported(run, fmt: str) -> str:
    buf = io.StringIO()
    export(run, fmt, buf)
    return buf.getvalue()


@contextmanager
def deep_json():
    """json.loads recurses once per nesting level (the seed's own loader raises the limit too)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def nodes_of(doc: dict) -> list[tuple[list[int], dict]]:
    """(token path, node) of every node below the root, depth first, children in order."""
    out, stack = [], [([], c) for c in reversed(doc["tree"]["children"])]
    while stack:
        path, node = stack.pop()
        path = path + [node["token_id"]]
        out.append((path, node))
        stack.extend((path, c) for c in reversed(node["children"]))
    return out


def test_tree_json_of_a_searched_run_matches_its_branches():
    run = make_tree_run()
    doc = json.loads(exported(run, "tree-json"))
    prompt_len = len(run.prompt)
    assert doc["metadata"]["prompt"] == run.meta.prompt
    assert doc["metadata"]["parameters"] == tree.searches(run)[0]["parameters"]
    root = doc["tree"]
    assert (root["text"], root["prob"], root["cumulative_prob"], root["token_id"], root["depth"]) == (
        run.meta.prompt,
        1.0,
        1.0,
        None,
        0,
    )
    assert [c["token_id"] for c in root["candidates"]] == [11, 12, 99]
    assert root["candidates"][0] == {"text": decode_bytes(run.tokens.bytes_of(11)), "prob": 0.5, "token_id": 11}
    nodes = nodes_of(doc)
    by_path = {tuple(p): n for p, n in nodes}
    # one node per branch, and every branch's path is there
    assert len(nodes) == len(run.branches)
    for b in run.branches:
        path = tuple(run.sequence(b.id)[prompt_len:].tolist())
        node = by_path[path]
        p = math.exp(float(b.steps.col("logprob")[0]))
        assert node["prob"] == round(p, 6) and node["depth"] == len(path)
        cum = math.prod(math.exp(float(run.step(b.id, prompt_len + i).logprob)) for i in range(len(path)))
        assert node["cumulative_prob"] == pytest.approx(cum, abs=1e-8)
        facts = tree.node_facts(run, b.id)
        assert facts is not None and node["is_finished"] == facts.finished
        want = [] if facts.candidates is None else [t for t, _ in facts.candidates]
        assert [c["token_id"] for c in node["candidates"]] == want
        assert node["text"] == decode_bytes(run.tokens.bytes_of(path[-1]))
        assert node["full_text"] == run.meta.prompt + decode_bytes(run.tokens.text(path))
    # children in branch-creation order (the search's order: most probable first)
    assert [c["token_id"] for c in root["children"]] == [11, 12]
    assert [c["token_id"] for c in root["children"][0]["children"]] == [13, 14]
    assert list(nodes[0][1]) == [
        "text",
        "full_text",
        "prob",
        "cumulative_prob",
        "token_id",
        "depth",
        "is_finished",
        "candidates",
        "children",
    ]


def test_full_text_joins_a_character_split_between_tokens():
    """full_text is the text the model continued: a character whose bytes are spread over tokens
    (a CJK character in two byte tokens) is whole once its last byte arrives; before, its bytes
    show as ‹XX›, as do bytes that can never be part of a character."""
    run = make_tree_run()
    a, n = "ア".encode(), "ン".encode()
    for token_id, data in {11: a[:2], 13: a[2:] + n, 14: b"\xff", 12: a[:1], 15: a[1:2], 16: a[2:] + b"x"}.items():
        run.tokens.add(token_id, data)
    doc = json.loads(exported(run, "tree-json"))
    full = {tuple(p): node["full_text"][len(run.meta.prompt) :] for p, node in nodes_of(doc)}
    assert full == {
        (11,): "‹E3›‹82›",
        (11, 13): "アン",
        (11, 13, 0): "アン" + run.tokens.bytes_of(0).decode(),
        (11, 14): "‹E3›‹82›‹FF›",
        (12,): "‹E3›",
        (12, 15): "‹E3›‹82›",
        (12, 15, 16): "アx",
    }
    texts = {tuple(p): node["text"] for p, node in nodes_of(doc)}
    assert texts[(11, 13)] == "‹A2›ン"  # a token on its own: its bytes as they are


def test_a_root_ending_inside_a_character_is_completed_by_its_children():
    run = make_run()
    run.tokens.add(int(run.prompt.col("token_id")[1]), "é".encode()[:1])
    b = run.add_branch(0, 2, n_forced=1)
    run.tokens.add(7, "é".encode()[1:])
    b.steps.append(Step(2, 7, dict(run.step(0, 2).values), "forced"))
    doc = json.loads(exported(run, "tree-json"))
    head = run.tokens.text(run.prompt.col("token_id")[:2].tolist())
    assert doc["tree"]["full_text"].endswith("‹C3›")
    child = next(c for c in doc["tree"]["children"] if c["token_id"] == 7)
    assert child["full_text"] == (head + "é".encode()[1:]).decode("utf-8", errors="strict")


def test_seed002_gives_a_character_split_at_the_root_whole_to_the_responses():
    """The root (seed 002's prompt) ends with the first byte of "é" and one path's first token
    holds the second: that response is "é", the prompt has no byte shown as ‹C3›; the other
    paths continue with bytes that complete no character, so their responses show the byte."""
    run = make_run()
    run.tokens.add(int(run.prompt.col("token_id")[1]), "é".encode()[:1])
    b = run.add_branch(0, 2, n_forced=1)
    run.tokens.add(7, "é".encode()[1:])
    b.steps.append(Step(2, 7, dict(run.step(0, 2).values), "forced"))
    records = [json.loads(line) for line in exported(run, "seed002-jsonl").splitlines()]
    head = run.tokens.text(run.prompt.col("token_id")[:2].tolist())
    assert all(r["prompt"] == decode_bytes(head[:-1]) for r in records)
    assert [r["response"] for r in records if r["data"][0]["token"] == "‹A9›"] == ["é"]
    others = [r["response"] for r in records if r["data"][0]["token"] != "‹A9›"]
    assert others and all(r.startswith("‹C3›") for r in others)


def test_tree_json_round_trips_through_the_run_file(tmp_path):
    run = make_tree_run()
    loaded = load_run(save_run(run, tmp_path / "t.tokentui"))
    assert loaded.meta.tree == run.meta.tree
    assert exported(loaded, "tree-json") == exported(run, "tree-json")
    assert exported(loaded, "seed002-jsonl") == exported(run, "seed002-jsonl")


def test_a_hand_grown_run_is_a_tree_too():
    """No search record: the tree hangs from the prompt's end, candidates come from the
    distribution the run recorded (the top-k of a node's children's steps), finished = a branch
    that ended with 'eos'."""
    run = make_run()  # a root branch of 5 tokens and a branch forking it at position 6
    doc = json.loads(exported(run, "tree-json"))
    assert doc["metadata"]["parameters"] == {"candidate_threshold": 0.01}
    nodes = nodes_of(doc)
    assert len(nodes) == 5 + 3 - 0  # the root branch's 5 tokens, the child's 3 below position 5
    seq0, seq1 = run.sequence(0).tolist(), run.sequence(1).tolist()
    by_path = {tuple(p): n for p, n in nodes}
    fork_node = by_path[tuple(seq0[4:6])]  # the node at position 5: two children
    assert [c["token_id"] for c in fork_node["children"]] == [seq0[6], seq1[6]]
    step = run.step(0, 6)  # the first child's step holds the fork node's distribution
    want = [
        (int(t), math.exp(float(lp))) for t, lp in zip(step.topk_ids, step.topk_logprobs) if math.exp(float(lp)) > 0.01
    ]
    want.sort(key=lambda c: -c[1])
    assert [c["token_id"] for c in fork_node["candidates"]] == [t for t, _ in want]
    leaf0, leaf1 = by_path[tuple(seq0[4:])], by_path[tuple(seq1[4:])]
    assert not leaf0["is_finished"] and leaf1["is_finished"]  # branch 1 ended with "eos"
    assert leaf0["candidates"] == [] and leaf0["children"] == []


def test_seed002_jsonl_has_one_record_per_path():
    run = make_tree_run()
    records = [json.loads(line) for line in exported(run, "seed002-jsonl").splitlines()]
    trie = tree.build_trie(run)
    leaves = list(trie.leaves())
    assert len(records) == len(leaves) == 3
    for rec, leaf in zip(records, leaves):
        assert list(rec) == ["prompt", "response", "data"] and rec["prompt"] == run.meta.prompt
        path = trie.path(leaf)
        assert [d["token"] for d in rec["data"]] == [decode_bytes(run.tokens.bytes_of(n.token_id)) for n in path]
        eos = set(run.meta.eos_ids)
        assert rec["response"] == decode_bytes(run.tokens.text(n.token_id for n in path if n.token_id not in eos))
        for d, n in zip(rec["data"], path):
            assert list(d) == ["token", "logprob", "prob", "other_tokens"]
            assert d["logprob"] == pytest.approx(n.logprob) and d["prob"] == pytest.approx(math.exp(n.logprob) * 100)
            step = n.cols.get(n.index, n.position, "forced")
            assert [o["token"] for o in d["other_tokens"]] == [
                decode_bytes(run.tokens.bytes_of(int(t))) for t in step.topk_ids[:5]
            ]
            # (the chosen token's own entry: its float32 log-prob, not the float16 top-k copy)
            own = [
                n.logprob if t == n.token_id else float(v) for t, v in zip(step.topk_ids[:5], step.topk_logprobs[:5])
            ]
            assert [o["logprob"] for o in d["other_tokens"]] == own
            assert [o["prob"] for o in d["other_tokens"]] == pytest.approx([math.exp(v) * 100 for v in own])
    # the end-of-sequence token is data, not response text
    assert any(d["token"] == "\x00" for r in records for d in r["data"])


def test_hostile_token_text_is_escaped_and_lossless():
    bad = "\x1b]52;c;cHduZWQ=\x07\u202e\x9b".encode()
    run = make_tree_run(hostile=bad)
    for fmt in ("tree-json", "seed002-jsonl"):
        text = exported(run, fmt)
        assert not any(c in text for c in RAW_CONTROLS)
        assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(exported(run, "tree-json"))
    assert any(n["text"] == bad.decode() for _, n in nodes_of(doc))


def test_a_deep_chain_exports_without_recursion():
    """Seed trees are chains 1000 deep; the writers never recurse (json.dumps would)."""
    run = make_run(n_branch_steps=(3000, 2))
    text = exported(run, "tree-json")
    with deep_json():
        doc = json.loads(text)
    nodes = nodes_of(doc)
    assert len(nodes) == 3000 + 2 - 0 and max(n["depth"] for _, n in nodes) == 3000
    records = exported(run, "seed002-jsonl").splitlines()
    assert len(records) == 2 and len(json.loads(records[0])["data"]) == 3000


def test_a_fork_inside_the_prompt_moves_the_root():
    run = make_run()
    b = run.add_branch(0, 2, n_forced=1)
    b.steps.append(Step(2, 7, dict(run.step(0, 2).values), "forced"))
    doc = json.loads(exported(run, "tree-json"))
    assert doc["metadata"]["tokentui"]["root_position"] == 2
    assert doc["tree"]["text"] == decode_bytes(run.tokens.text(run.prompt.col("token_id")[:2].tolist()))
    assert [c["token_id"] for c in doc["tree"]["children"]] == [int(run.prompt.col("token_id")[2]), 7]


def test_finished_paths_most_probable_first():
    run = make_tree_run()
    trie = tree.build_trie(run)
    ranked = tree.finished_paths(run, trie)
    assert [n.token_id for n, _ in ranked] and all(tree.is_finished(run, n) for n, _ in ranked)
    assert [c for _, c in ranked] == sorted((c for _, c in ranked), reverse=True)
    assert {n.depth for n, _ in ranked} == {3}  # the depth-3 nodes (one of them the end token)
    for node, _ in ranked:
        assert node.branch in node.ends and run.branches[node.branch].steps.col("token_id")[0] == node.token_id


def test_a_subtree_from_any_position():
    run = make_tree_run()
    b0 = run.branches[0]
    trie = tree.build_trie(run, 0, b0.end)
    assert [c.token_id for c in trie.root.children] == [13, 14] and trie.size == 3
    with pytest.raises(tree.RunError, match="out of range"):
        tree.build_trie(run, 0, 99)


def test_the_formats_follow_the_file_name():
    from pathlib import Path

    assert format_for(Path("a.json"), "tree-json") == "tree-json"
    # the ending names a seed's format by itself (the explorer's export prompt has no --format)
    assert [format_for(Path(n)) for n in ("t.tree.json", "T.TREE.JSON", "p.seed002.jsonl", "a.seed004.json")] == [
        "tree-json",
        "tree-json",
        "seed002-jsonl",
        "seed004",
    ]
    assert format_for(Path("t.tree.json"), "tree-json") == "tree-json" and format_for(Path("plain.json")) == "json"
    with pytest.raises(ValueError, match="whose ending"):  # (a trial's t.tree.json held the run's JSON)
        format_for(Path("t.tree.json"), "json")
    assert format_for(Path("a.jsonl"), "seed002-jsonl") == "seed002-jsonl"
    assert format_for(Path("a.json")) == "json"
    with pytest.raises(ValueError, match="does not match"):
        format_for(Path("a.csv"), "tree-json")


# --- the tree record in run files ----------------------------------------------------------------


def _set_tree(change):
    def f(d):
        change(d["meta"]["tree"])

    return with_run_desc(f)


@pytest.mark.parametrize(
    "change, needle",
    [
        (with_run_desc(lambda d: d["meta"].__setitem__("tree", 5)), "'tree' has the wrong type"),
        (_set_tree(lambda t: t.__setitem__("version", 3)), "unknown version"),
        (_set_tree(lambda t: t.__setitem__("version", True)), "unknown version"),
        (_set_tree(lambda t: t.__setitem__("version", 1.0)), "unknown version"),
        (_set_tree(lambda t: t["searches"][0].__setitem__("branches", [0, 99])), "not a range"),
        (_set_tree(lambda t: t["searches"][0].__setitem__("branches", [3, 2])), "not a range"),
        (_set_tree(lambda t: t["searches"][0].__setitem__("branches", [0, True])), "not a range"),
        (_set_tree(lambda t: t.__setitem__("extra", 1)), "tree record is malformed"),
        (_set_tree(lambda t: t["nodes"].__setitem__("99", {"finished": True, "candidates": None})), "branch '99'"),
        (_set_tree(lambda t: t["nodes"].__setitem__("-1", {"finished": True, "candidates": None})), "branch '-1'"),
        (_set_tree(lambda t: t["nodes"]["0"].__setitem__("finished", 1)), "of branch 0 is malformed"),
        (_set_tree(lambda t: t["nodes"]["0"].__setitem__("candidates", [[1, 2.0]])), "outside"),
        (_set_tree(lambda t: t["nodes"]["0"].__setitem__("candidates", [[10**6, 0.5]])), "malformed"),
        (_set_tree(lambda t: t["nodes"]["0"].__setitem__("candidates", [[1, 0.1]] * 11)), "malformed"),
        (_set_tree(lambda t: t["searches"][0].__setitem__("root_branch", 42)), "root names a branch"),
        (_set_tree(lambda t: t["searches"][0].__setitem__("root_position", 0)), "not a position"),
        # (past its sequence: the explorer stopped when a finished path was asked for)
        (_set_tree(lambda t: t["searches"][0].__setitem__("root_position", 10**9)), "past the end"),
        (
            _set_tree(lambda t: t["searches"][0].__setitem__("root_position", t["searches"][0]["root_position"] + 1)),
            "past the end",
        ),  # (the prompt's end + 1: its root is the prompt)
        (
            _set_tree(
                lambda t: t["searches"][0].update(root_branch=0, root_position=t["searches"][0]["root_position"] + 2)
            ),
            "past the end",
        ),  # (branch 0 holds one token after the prompt)
        (_set_tree(lambda t: t["searches"][0].__setitem__("stopped", "\x1b[2J")), "state is unknown"),
        (_set_tree(lambda t: t["searches"][0]["parameters"].__setitem__("min_branch_threshold", 3)), r"\[0, 1\]"),
        (_set_tree(lambda t: t["searches"][0]["parameters"].__setitem__("max_nodes", "5")), "not a number"),
        (_set_tree(lambda t: t["searches"][0].pop("nodes")), "search record is malformed"),
    ],
)
def test_a_bad_tree_record_is_a_one_line_error(tmp_path, change, needle):
    path = save_run(make_tree_run(), tmp_path / "t.tokentui")
    path.write_bytes(rewrite_header(path.read_bytes(), change))
    with pytest.raises(RunFileError, match=needle) as e:
        load_run(path)
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)


def test_a_search_record_with_parameters_left_out_exports_with_their_defaults(tmp_path):
    """Parameters left out of a search record passed the check (it reads them with defaults) and
    then crashed the tree-json export (KeyError: 'candidate_threshold'): each takes its default."""
    from tokentui.core.params import TreeParams

    run = make_tree_run()
    path = save_run(run, tmp_path / "t.tokentui")
    path.write_bytes(
        rewrite_header(path.read_bytes(), _set_tree(lambda t: t["searches"][0].__setitem__("parameters", {})))
    )
    loaded = load_run(path)
    doc = json.loads(exported(loaded, "tree-json"))
    assert doc["metadata"]["parameters"] == TreeParams().to_dict()
    assert tree.candidate_threshold(loaded, tree.build_trie(loaded)) == TreeParams().candidate_threshold
    assert exported(loaded, "seed002-jsonl")


def test_a_run_without_a_tree_record_loads(tmp_path):
    """Files written before tree searches existed have no 'tree' key."""
    path = save_run(make_run(), tmp_path / "r.tokentui")
    path.write_bytes(rewrite_header(path.read_bytes(), with_run_desc(lambda d: d["meta"].pop("tree"))))
    run = load_run(path)
    assert run.meta.tree is None and tree.searches(run) == []
    assert json.loads(exported(run, "tree-json"))["tree"]["children"]


def test_a_prompt_only_first_step_is_not_a_number():
    """The prompt's first token has no distribution: a tree rooted at position 1 exports null."""
    run = make_run()
    run.add_branch(0, 1, n_forced=1).steps.append(Step(1, 9, dict(run.step(0, 1).values), "forced"))
    doc = json.loads(exported(run, "tree-json"))
    assert doc["metadata"]["tokentui"]["root_position"] == 1
    assert nan_step(0, 1).logprob != nan_step(0, 1).logprob  # NaN stays out of the files
    assert "NaN" not in exported(run, "seed002-jsonl")
    assert np.isnan(run.prompt.col("logprob")[0])


def test_a_search_root_the_run_does_not_hold_falls_back_to_the_whole_tree():
    """A file's search record may name a root past its branch's end (checked as a position
    only): the export is the whole run's tree then, never an error."""
    run = make_tree_run()
    search = run.meta.tree["searches"][0]
    search["root_branch"], search["root_position"] = 0, 99
    doc = json.loads(exported(run, "tree-json"))
    assert doc["metadata"]["tokentui"]["root_position"] == len(run.prompt)
    assert len(exported(run, "seed002-jsonl").splitlines()) == 3


def test_a_version_1_tree_record_loads_with_its_searches_branches_unknown(tmp_path):
    """Files written before searches recorded their branches: read as version 2 with `branches`
    null (the search's tree is then every branch through its root), saved again as version 2."""

    def as_version_1(d):
        d["meta"]["tree"]["version"] = 1
        for s in d["meta"]["tree"]["searches"]:
            del s["branches"]

    run = make_tree_run()
    path = save_run(run, tmp_path / "t.tokentui")
    path.write_bytes(rewrite_header(path.read_bytes(), with_run_desc(as_version_1)))
    old = load_run(path)
    assert old.meta.tree["version"] == tree.TREE_VERSION and tree.own_branches(tree.searches(old)[0]) is None
    assert exported(old, "tree-json") == exported(run, "tree-json")
    again = load_run(save_run(old, tmp_path / "again.tokentui"))
    assert again.meta.tree == old.meta.tree
    # what is still malformed stays refused
    path.write_bytes(rewrite_header(path.read_bytes(), _set_tree(lambda t: t["searches"][0].pop("nodes"))))
    with pytest.raises(RunFileError, match="search record is malformed"):
        load_run(path)


def test_a_searchs_branches_follow_deletions():
    """Deleting branches renumbers the others: a search's range of branches follows, holding the
    same surviving nodes (and an empty range where none survive)."""
    run = make_tree_run()  # one search from the prompt: branches 0..6
    assert tree.own_branches(tree.searches(run)[0]) == range(0, len(run.branches))
    # a hand-grown branch, then a second search grown from the end of branch 1
    hand = run.add_branch(0, run.branches[0].end)
    run.append_step(hand.id, nan_step(hand.end, 5))
    second = tree.add_search(run, tree.new_search(tree.TreeParams(), 1, run.length(1), len(run.branches)))
    made = []
    for token in (8, 9):
        b = run.add_branch(1, run.length(1))
        run.append_step(b.id, nan_step(b.fork_position, token))
        tree.set_node(run, second, b.id, True, None)
        made.append(b.id)
    assert tree.own_branches(tree.searches(run)[1]) == range(made[0], made[-1] + 1)
    tokens = lambda r, s: [int(r.branches[i].steps.col("token_id")[0]) for i in tree.own_branches(s)]  # noqa: E731
    before = [tokens(run, s) for s in tree.searches(run)]
    mapping = run.remove_subtree(hand.id)
    tree.remap_branches(run, mapping)
    assert [tokens(run, s) for s in tree.searches(run)] == before
    assert tree.own_branches(tree.searches(run)[1]) == range(made[0] - 1, made[-1])
    mapping = run.remove_subtree(made[0] - 1)  # (the search's first node, renumbered)
    tree.remap_branches(run, mapping)
    assert [tokens(run, s) for s in tree.searches(run)] == [before[0], before[1][1:]]
    mapping = run.remove_subtree(len(run.branches) - 1)
    tree.remap_branches(run, mapping)
    assert tree.own_branches(tree.searches(run)[1]) == range(len(run.branches), len(run.branches))
    tree.check_tree_record(run.meta.tree, len(run.branches), run.meta.vocab_size)


def test_a_search_stopped_by_an_error_claims_the_branches_it_made():
    """An error halfway through a node leaves branches the search made after its last progress:
    `claim_the_rest` (what `tree` does then) counts them as the search's own, so its tree shows them."""
    run = make_tree_run()
    [search] = tree.searches(run)
    made = run.add_branch(0, run.branches[0].end)  # (made by the search, its progress never sent)
    run.append_step(made.id, nan_step(made.end, 5))
    assert made.id not in tree.own_branches(search)
    tree.claim_the_rest(run, 0)
    assert tree.own_branches(tree.searches(run)[0]) == range(0, len(run.branches))


def test_a_deep_path_s_cumulative_prob_is_not_rounded_to_zero():
    """Rounded to the seed's 8 decimal places, a path three nodes of p≈3e-4 deep wrote
    cumulative_prob 0.0, as though it could not happen; below that rounding it keeps 8
    significant digits, and a shallow path keeps the seed's rounding."""
    run = make_tree_run(logprob=-8.0)
    nodes = nodes_of(json.loads(exported(run, "tree-json")))
    assert nodes
    for _path, node in nodes:
        cum = math.exp(-8.0) ** node["depth"]
        if round(cum, 8):
            assert node["cumulative_prob"] == round(cum, 8)
        else:
            assert node["cumulative_prob"] == pytest.approx(cum, rel=1e-7) and node["cumulative_prob"] > 0
    assert any(not round(math.exp(-8.0) ** n["depth"], 8) for _p, n in nodes)  # (the case is there)
