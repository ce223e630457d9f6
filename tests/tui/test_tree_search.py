"""The explorer's tree search, driven by keys: the form (prefilled, bad values named), progress in
the status bar, the tree pane growing node by node with p / cumulative p / finished marks, escape
stopping a search with a consistent tree, jumping to the most and least probable finished paths,
folding subtrees, and deleting a branch with its subtree (asked first; saved)."""

from __future__ import annotations

import math

import pytest
from textual.widgets import Input

from tests.factories import SMOLLM2, needs_smollm2, rendered, wait_for
from tokentui.core.params import GenerationSettings, SamplingParams, TreeParams
from tokentui.core.tree import build_trie, drawn_subtree, is_finished, own_branches
from tokentui.store.runfile import load_run
from tokentui.tui.start import explorer
from tokentui.tui.state import AppState
from tokentui.tui.widgets.branch_tree import FINISHED, BranchTree

PROMPT = "def wrap(text, width):\n    "


async def loaded_app(pilot, app):
    await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the model")


async def fill(pilot, app, values: dict[str, str]) -> None:
    for key, value in values.items():
        field = app.screen.query_one(f"#set-{key}", Input)
        field.value = value
    app.screen.query_one(Input).focus()
    await pilot.press("enter")


async def grow(pilot, app, values: dict[str, str]) -> None:
    await pilot.press("e")
    await pilot.pause(0.1)
    await fill(pilot, app, values)
    await wait_for(pilot, lambda: app.state is AppState.IDLE and not app.session.tree_search, what="the search")
    await pilot.pause(0.2)


async def test_a_tree_grown_from_the_prompt_shows_in_the_tree_pane(peaked_dirs, cache_dir):
    app = explorer(model=str(peaked_dirs["gpt2"]), prompt=PROMPT, settings=GenerationSettings(k=8))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded_app(pilot, app)
        await pilot.press("e")
        await pilot.pause(0.1)
        form = app.screen
        assert form.query_one("#set-min_branch_threshold", Input).value == "0.1"  # seed 002's defaults
        assert form.query_one("#set-max_nodes", Input).value == "500"
        await fill(pilot, app, {"min_branch_threshold": "0.9", "max_branch_threshold": "0.2"})
        assert "above" in rendered(form.query_one("#form-error"))  # min > max: named, nothing starts
        assert app.screen is form and app.run_obj is None
        await fill(pilot, app, {"min_branch_threshold": "0.05", "max_branch_threshold": "0.3", "max_nodes": "40"})
        await wait_for(pilot, lambda: app.state is AppState.IDLE and not app.session.tree_search, what="search")
        await pilot.pause(0.2)
        run = app.run_obj
        assert run is not None and run.meta.tree is not None and len(run.branches) == 40
        assert "tree search max_nodes: 40 nodes" in app.session.note
        tree = app.query_one(BranchTree)
        labels = {n.data: n.label.plain for n in tree._nodes_in_order()}
        assert len(labels) == 40
        trie = build_trie(run)
        cum = trie.cumulative()
        for node in trie.walk():  # every node: its p and its path's cumulative p, as the steps say
            b = node.ends[-1]
            assert f"{node.prob:.3f}" in labels[b] and f"Σ{cum[node]:.3g}" in labels[b], labels[b]
            assert labels[b][1:].startswith(f"#{b} "), labels[b]  # (after the mark of the branch on show)
            assert (FINISHED in labels[b]) == is_finished(run, node)
            # drawn under the node of the token before it: a sibling taking another token in its
            # parent branch's first place is beside it (a trial saw the root's second token nested
            # under the first, beside the first's children)
            above = tree._branch_nodes[b].parent
            assert (None if above is tree.root else above.data) == (
                None if node.parent is trie.root else node.parent.ends[-1]
            )
        assert sum(n.parent is trie.root for n in trie.walk()) >= 2  # (the case: more than one first token)
        assert tree.border_title == "search nodes: p · Σ path's p"
        # the saved file holds the same tree (the worker saves after the search's last event)
        await wait_for(pilot, lambda: not run.dirty, what="the autosave")
        saved = load_run(cache_dir / f"{run.id}.tokentui")
        assert [(b.parent, b.fork_position) for b in saved.branches] == [
            (b.parent, b.fork_position) for b in run.branches
        ]
        assert saved.meta.tree == run.meta.tree


@needs_smollm2
async def test_escape_stops_a_search_and_keeps_a_consistent_tree(loaded, cache_dir):
    """On the real model (a tiny random one grows its thousands of nodes before a key is read)."""
    loaded(SMOLLM2)  # converted into this session's models folder
    app = explorer(model=SMOLLM2, prompt="Name a colour.", settings=GenerationSettings(k=8, chat=True))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the model", timeout=120)
        await pilot.press("e")
        await pilot.pause(0.1)
        await fill(pilot, app, {"min_branch_threshold": "0.001", "max_branch_threshold": "0.002",
                                "max_nodes": "10000", "max_completed_paths": "100"})  # fmt: skip
        await wait_for(pilot, lambda: app.run_obj is not None and len(app.run_obj.branches) > 10, what="nodes")
        # progress in the status bar (its event may be handled a moment after the nodes it counts are added)
        await wait_for(pilot, lambda: app.session.note.startswith("tree: "), what="the progress note")
        assert " open · " in app.session.note
        await pilot.pause(0.05)
        assert "tree: " in rendered(app.query_one("#status"))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.state is AppState.IDLE and not app.session.tree_search, what="the stop")
        await pilot.pause(0.2)
        run = app.run_obj
        assert "cancelled" in app.session.note and run.meta.tree["searches"][-1]["stopped"] == "cancelled"
        assert 10 < len(run.branches) < 10000
        assert all(len(b.steps) == 1 for b in run.branches)
        assert set(run.meta.tree["nodes"]) == {str(b.id) for b in run.branches}
        await wait_for(pilot, lambda: not run.dirty, what="the autosave")
        saved = load_run(cache_dir / f"{run.id}.tokentui")
        assert len(saved.branches) == len(run.branches) and saved.meta.tree == run.meta.tree


async def test_finished_paths_folding_and_deleting(peaked_dirs, cache_dir):
    app = explorer(
        model=str(peaked_dirs["gpt2"]),
        prompt=PROMPT,
        settings=GenerationSettings(SamplingParams(max_new_tokens=6), k=8),
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded_app(pilot, app)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.state is AppState.IDLE and app.run_obj is not None, what="generation")
        await pilot.pause(0.2)
        app.stream.move_to(app.run_obj.branches[0].fork_position + 2)
        root_node = app.query_one(BranchTree)._branch_nodes[0]
        await grow(pilot, app, {"max_depth": "3", "max_completed_paths": "4", "max_nodes": "60"})
        run = app.run_obj
        assert app.query_one(BranchTree)._branch_nodes[0] is root_node  # nodes were added, the pane not rebuilt
        # (a generation's branch and a search's nodes: the title names what both kinds of row show)
        assert app.query_one(BranchTree).border_title == "nodes: p · Σ path's p; branches: length · mean log p"
        search = run.meta.tree["searches"][-1]
        assert search["root_branch"] == 0 and search["root_position"] == run.branches[0].fork_position + 3
        assert search["completed"] >= 2
        # P / U: the most and least probable finished paths of the search, their cumulative p
        # from its root — what the tree pane's Σ says of the same node
        trie = build_trie(run, search["root_branch"], search["root_position"], own_branches(search))
        cum = trie.cumulative()
        done = [n for n in trie.walk() if n.ends and is_finished(run, n)]
        best, worst = max(done, key=lambda n: cum[n]), min(done, key=lambda n: cum[n])
        notes: list[str] = []
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        tree = app.query_one(BranchTree)
        # the branch the search grew from, had it ended with an end-of-sequence token, is not one of
        # the search's paths: its p (from the prompt's end) is not ranked with theirs
        run.branches[0].status = "eos"
        for key, node in (("P", best), ("U", worst)):
            await pilot.press(key)
            assert app.branch_id == node.ends[-1] and app.stream.cursor == node.position
            assert f"probable of {len(done)} finished paths of the tree search: " in notes[-1], notes[-1]
            assert notes[-1].endswith(f"cumulative p = {cum[node]:.3g}"), notes[-1]
            label = tree._branch_nodes[node.ends[-1]].label.plain
            assert f"Σ{cum[node]:.3g}" in label, label
        assert not math.isclose(cum[best], cum[worst])
        del app.notify
        # folding a subtree in the tree pane hides its nodes, space again shows them
        tree = app.query_one(BranchTree)
        tree.focus()
        await pilot.pause(0.1)
        await pilot.press("down")  # moving in the tree pane shows the path under its cursor
        await pilot.pause(0.1)
        shown = tree.cursor_node.data
        assert app.branch_id == shown and app.stream.cursor == run.length(shown) - 1
        await pilot.press("j")  # j and k move as ↓ and ↑ do (as in the other side panes)
        await pilot.pause(0.1)
        assert tree.cursor_node.data != shown and app.branch_id == tree.cursor_node.data
        await pilot.press("k")
        await pilot.pause(0.1)
        assert tree.cursor_node.data == shown and app.branch_id == shown

        node = next(n for n in tree._nodes_in_order() if n.children and n.data != 0)
        tree.move_cursor(node)
        await pilot.pause(0.1)
        before = tree.last_line
        await pilot.press("space")
        await pilot.pause(0.1)
        assert tree.last_line < before and not node.is_expanded
        await pilot.press("space")
        await pilot.pause(0.1)
        assert tree.last_line == before
        await pilot.press("enter")  # shows the branch, folds nothing (the help says space folds)
        await pilot.pause(0.1)
        assert app.branch_id == node.data and node.is_expanded and tree.last_line == before
        from tokentui.tui.widgets.settings_line import SettingsLine  # a node was not sampled: it says so

        assert "a tree search's node" in rendered(app.query_one(SettingsLine)), rendered(app.query_one(SettingsLine))
        # delete the highlighted branch with its subtree: asked first (n keeps it), then gone and saved
        victim = node.data
        doomed = drawn_subtree(run, victim)  # (what the pane draws under it)
        assert len(doomed) == 1 + sum(1 for _ in _below(node))
        kept = {tuple(run.sequence(b).tolist()) for b in range(len(run.branches)) if b not in doomed}
        total = len(run.branches)
        await pilot.press("delete")
        await pilot.pause(0.1)
        await pilot.press("n")
        assert len(app.run_obj.branches) == total
        tree.focus()
        tree.move_cursor(node)
        await pilot.press("delete")
        await pilot.pause(0.1)
        await pilot.press("q")  # no, as on every pop-up (it quit the app)
        await pilot.pause(0.1)
        assert app.is_running and type(app.screen).__name__ != "Confirm" and len(app.run_obj.branches) == total
        tree.focus()
        tree.move_cursor(node)
        await pilot.press("delete")
        await pilot.pause(0.1)
        await pilot.press("y")
        await pilot.pause(0.3)
        assert len(app.run_obj.branches) == total - len(doomed)
        # every branch not drawn under it stays, with its tokens (the siblings beside it too)
        assert {tuple(app.run_obj.sequence(b).tolist()) for b in range(len(app.run_obj.branches))} == kept
        assert set(app.run_obj.meta.tree["nodes"]) <= {str(b.id) for b in app.run_obj.branches}
        saved = load_run(cache_dir / f"{run.id}.tokentui")
        assert len(saved.branches) == total - len(doomed)
        # the worker follows: a new branch grows on the run as it is now
        app.stream.focus()
        await pilot.press("c")
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="continue")
        assert len(app.run_obj.branches) == total - len(doomed)


def _below(node):
    """The pane's nodes under `node`, at any depth."""
    for child in node.children:
        yield child
        yield from _below(child)


async def test_the_tree_form_is_reachable_in_a_replay_only_with_a_model():
    from tests.factories import make_run

    app = explorer(run=make_run())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("e")
        await pilot.pause(0.1)
        assert "no model is loaded" in [n.message for n in app._notifications][-1]
        assert TreeParams() == app.session.tree_params


async def test_e_on_a_new_prompt_starts_with_the_settings_forced_prefix(peaked_dirs, cache_dir):
    """Guided generation in the explorer: with a forced prefix in the settings, `e` on a new
    prompt makes the root branch that text (forced) and grows the tree from its end; the
    explorer stays busy until the search ends."""
    settings = GenerationSettings(k=8, forced=" return")
    app = explorer(model=str(peaked_dirs["gpt2"]), prompt=PROMPT, settings=settings)
    states: list[tuple[AppState, bool]] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded_app(pilot, app)
        app.set_interval(0.01, lambda: states.append((app.state, app.session.tree_search)))
        await grow(pilot, app, {"max_depth": "2", "max_nodes": "8"})
        run = app.run_obj
        root = run.branches[0]
        assert root.n_forced == len(root.steps) > 0
        assert run.tokens.text(root.steps.col("token_id").tolist()).decode() == " return"
        s = run.meta.tree["searches"][-1]
        assert (s["root_branch"], s["root_position"]) == (0, root.end) and s["nodes"] > 0
        busy = [st for st in states if st != (AppState.IDLE, False)]
        assert busy and states[-1] == (AppState.IDLE, False)
        first_idle = states.index((AppState.IDLE, False), states.index(busy[0]))
        assert all(st == (AppState.IDLE, False) for st in states[first_idle:]), states  # not idle mid-search


def test_a_shared_memo_gives_each_node_s_path_probability_in_any_order():
    """path_probability's memo (one step per node for a whole tree, not its depth per node) gives
    every node the product a walk from scratch gives, children asked before their parents too."""
    from pathlib import Path

    from tokentui.tui.widgets.branch_tree import path_probability

    run = load_run(Path(__file__).resolve().parents[2] / "sample_runs/tree.tokentui")  # a real search's tree
    nodes = [b for b in run.branches if str(b.id) in run.meta.tree["nodes"] and len(b.steps) == 1]
    assert len(nodes) > 10 and max(b.fork_position for b in nodes) - min(b.fork_position for b in nodes) > 3
    alone = {b.id: path_probability(run, b, {}) for b in nodes}
    for order in (nodes, nodes[::-1]):
        memo: dict[int, float] = {}
        assert {b.id: path_probability(run, b, memo) for b in order} == alone


def test_path_probability_is_the_product_of_the_p_on_the_path():
    """Against an independent walk: from the node up, a search node's token is on the path when it
    was taken before the position the walk has reached (a sibling forking at the same position
    replaces its parent's token there); the product of those p."""
    from pathlib import Path

    from tokentui.tui.widgets.branch_tree import path_probability

    run = load_run(Path(__file__).resolve().parents[2] / "sample_runs/tree.tokentui")
    search = {b.id for b in run.branches if str(b.id) in run.meta.tree["nodes"] and len(b.steps) == 1}
    memo: dict[int, float] = {}
    for b in (run.branches[i] for i in sorted(search)):
        on_path, reached, x = [], b.end, b
        while x is not None and x.id in search:
            if x.fork_position < reached:
                on_path.append(math.exp(float(x.steps.col("logprob")[0])))
                reached = x.fork_position
            x = None if x.parent is None else run.branches[x.parent]
        assert math.isclose(path_probability(run, b, memo), math.prod(on_path), rel_tol=1e-12)


def test_a_search_grown_from_another_search_s_node_counts_its_path_from_its_own_root(peaked):
    """A trial grew a second tree from a node of the first: the tree pane's Σ multiplied in the
    first search's p of that node, where the CLI and the exports start the path at the second
    search's own root. Now every node's Σ is its own search's trie's cumulative p."""
    from tokentui.engine import jobs
    from tokentui.engine.hf.backend import HFBackend
    from tokentui.tui.widgets.branch_tree import path_probability

    backend = HFBackend(peaked("llama"), lens_chunk=0)
    params = TreeParams(0.05, 0.5, soft_queue_limit=4, max_depth=3, max_completed_paths=50, max_nodes=10)
    first = jobs.TreeSearch(backend, params, prompt="def f(x):", settings=GenerationSettings(k=8))
    list(first)
    run = first.run
    assert run is not None
    node = max(int(i) for i in run.meta.tree["nodes"])  # (a node of the first search, a step below its root)
    assert math.exp(float(run.branches[node].steps.col("logprob")[0])) < 0.999
    list(jobs.TreeSearch(backend, params, run=run, branch=node, position=run.branches[node].end))
    memo: dict[int, float] = {}
    for s in run.meta.tree["searches"]:
        trie = build_trie(run, s["root_branch"], s["root_position"], only=own_branches(s))
        cumulative = trie.cumulative()
        made = [(n, cumulative[n]) for n in trie.walk() if n.depth >= 1 and n.branch in own_branches(s)]
        assert len(made) > 2
        for n, p in made:
            assert path_probability(run, run.branches[n.branch], memo) == pytest.approx(p, rel=1e-9)


def test_deleting_a_node_keeps_the_siblings_a_search_made_its_children(peaked):
    """A search grown from the token before a node's own (the node's first place) makes its nodes
    the node's siblings, in the run (`Run.add_branch`) as in the token tree and the pane. A run
    saved before that made them the node's children: drawn beside it all the same, and deleting
    the node from the pane removes what is drawn under it, the siblings staying with their tokens."""
    from tokentui.core.tree import drawn_parents, keep_siblings
    from tokentui.engine import jobs
    from tokentui.engine.hf.backend import HFBackend

    backend = HFBackend(peaked("llama"), lens_chunk=0)
    params = TreeParams(0.05, 0.5, soft_queue_limit=4, max_depth=3, max_completed_paths=50, max_nodes=10)
    first = jobs.TreeSearch(backend, params, prompt="def f(x):", settings=GenerationSettings(k=8))
    list(first)
    run = first.run
    assert run is not None
    victim = next(b.id for b in run.branches if b.parent is not None and run.children(b.id))
    n = len(run.branches)
    at = run.branches[victim].fork_position
    list(jobs.TreeSearch(backend, params, run=run, branch=victim, position=at))
    made = list(range(n, len(run.branches)))
    siblings = [b for b in made if run.branches[b].fork_position == at]
    assert siblings and all(run.branches[b].parent == run.branches[victim].parent for b in siblings)
    for b in siblings:  # as a run saved before had them: the node's children
        run.branches[b].parent = victim
    run.validate()
    drawn = drawn_parents(run)
    assert all(drawn[b] == drawn[victim] for b in siblings)  # (beside it)
    doomed = drawn_subtree(run, victim)
    assert not set(siblings) & set(doomed) and set(run.subtree(victim)) - set(doomed) >= set(siblings)
    kept = {tuple(run.sequence(b).tolist()) for b in range(len(run.branches)) if b not in doomed}
    keep_siblings(run, victim)
    run.remove_subtree(victim)
    run.validate()
    assert len(run.branches) == n + len(made) - len(doomed)
    assert {tuple(run.sequence(b).tolist()) for b in range(len(run.branches))} == kept
