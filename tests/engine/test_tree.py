"""Seed 002's tree search against an independent reference written here: the seed's algorithm with
every node's distribution recomputed from scratch (a plain forward of prompt + path, no cache,
torch.softmax). Same paths in the same order, candidates, finished flags and stop reason; p and
cumulative p within 1e-4; lens values against a per-layer reference; cancel keeps a tree that
saves and loads."""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
from collections import deque

import numpy as np
import pytest
import torch

from tests.conftest import PEAKED
from tests.factories import assert_same
from tokentui.core import tree
from tokentui.core.params import GenerationSettings, RunError, SamplingParams, TreeParams
from tokentui.engine import jobs
from tokentui.engine.errors import EngineError
from tokentui.engine.events import Progress, TreeProgress, TreeStarted, apply_event
from tokentui.engine.hf.backend import HFBackend
from tokentui.engine.hf.tree import TreeSearch, tree_attention_problem
from tokentui.store.runfile import load_run, save_run

PROMPT = "def wrap(text, width):\n    "


def reference(model, prefix: list[int], p: TreeParams, eos: set[int]) -> dict:
    """Seed 002's search, each distribution from a full forward of prefix + path (no cache).
    Returns the nodes in creation order (the root first), the thresholds used per node taken from
    the queue, and why it stopped. Equal probabilities: lower token id first."""

    def dist(path: list[int]) -> list[tuple[float, int]]:
        with torch.no_grad():
            probs = torch.softmax(model(torch.tensor([prefix + path])).logits[0, -1].float(), -1)
        return sorted(((float(v), i) for i, v in enumerate(probs.tolist())), key=lambda c: (-c[0], c[1]))

    root = {"path": [], "p": 1.0, "cum": 1.0, "depth": 0, "finished": False, "cands": None}
    nodes, queue, thresholds = [root], deque([root]), []
    completed, stopped = 0, "exhausted"
    while queue:
        if completed >= p.max_completed_paths:
            stopped = "completed"
            break
        t = p.min_branch_threshold + min(1.0, len(queue) / p.soft_queue_limit) * (
            p.max_branch_threshold - p.min_branch_threshold
        )
        thresholds.append(t)
        node = queue.popleft()
        if node["depth"] >= p.max_depth or (node["path"] and node["path"][-1] in eos):
            node["finished"] = True
            completed += 1
            continue
        order = dist(node["path"])
        node["cands"] = [(i, v) for v, i in order[:10] if v > np.float32(p.candidate_threshold)]
        branches = [(v, i) for v, i in order if v > np.float32(t)] or order[:1]
        for v, i in branches:
            child = {"path": node["path"] + [i], "p": v, "cum": node["cum"] * v, "depth": node["depth"] + 1}
            child.update(finished=False, cands=None)
            nodes.append(child)
            queue.append(child)
            if len(nodes) - 1 >= p.max_nodes:
                break
        if len(nodes) - 1 >= p.max_nodes:
            stopped = "max_nodes"
            break
    if stopped == "exhausted" and completed >= p.max_completed_paths:
        stopped = "completed"  # the last path the search asked for ended as the queue emptied
    return {"nodes": nodes, "thresholds": thresholds, "stopped": stopped}


def search(lm, params, prompt=PROMPT, k=8, shared=True, batch=32, cancel_after=None):
    """(run, events, TreeSearch) of a search from `prompt` through the engine."""
    backend = HFBackend(lm, lens_chunk=1, lens_precision="float32")
    ids, _ = backend.encode_prompt(prompt)
    run = backend.new_run(prompt, GenerationSettings(k=k), None, mode="tree")
    cancel = threading.Event()
    s = TreeSearch(backend, run, params, cancel, batch=batch, shared=shared)
    events = []
    for ev in s.events(ids):
        events.append(ev)
        if cancel_after is not None and isinstance(ev, TreeProgress) and len(events) >= cancel_after:
            cancel.set()
    return run, events, s


def assert_matches(run, events, ref, prefix_len: int) -> None:
    """The run's tree equals the reference's: paths in creation order, p, cumulative p, candidates,
    finished flags, thresholds and stop reason."""
    nodes = ref["nodes"][1:]
    assert [run.sequence(b.id)[prefix_len:].tolist() for b in run.branches] == [n["path"] for n in nodes]
    trie = tree.build_trie(run)
    cum = trie.cumulative()
    for b, n in zip(run.branches, nodes):
        assert b.n_forced == 1 and len(b.steps) == 1
        assert math.exp(float(b.steps.col("logprob")[0])) == pytest.approx(n["p"], abs=1e-4)
        node = trie.root
        for t in n["path"]:
            node = node.child(t)
        assert cum[node] == pytest.approx(n["cum"], abs=1e-4)
        facts = tree.node_facts(run, b.id)
        assert facts is not None and facts.finished == n["finished"], n["path"]
        assert tree.is_finished(run, node) == n["finished"]
        if n["cands"] is None:
            assert facts.candidates is None
        else:
            assert facts.candidates is not None
            assert [t for t, _ in facts.candidates] == [t for t, _ in n["cands"]]
            np.testing.assert_allclose([p for _, p in facts.candidates], [p for _, p in n["cands"]], atol=1e-4)
    s = tree.searches(run)[-1]
    root_cands = ref["nodes"][0]["cands"]
    assert [t for t, _ in s["root_candidates"]] == [t for t, _ in root_cands]
    assert s["stopped"] == ref["stopped"] and s["nodes"] == len(nodes)
    assert s["completed"] == sum(n["finished"] for n in nodes)
    decided = [e for e in events if isinstance(e, TreeProgress) and e.decided]
    np.testing.assert_allclose([e.threshold for e in decided], ref["thresholds"][: len(decided)])
    assert len(decided) == len(ref["thresholds"])
    run.validate()


CASES = {
    # the queue fills: thresholds rise between levels (and fall as it empties)
    "queue": TreeParams(0.02, 0.4, soft_queue_limit=4, max_depth=5, max_completed_paths=100, max_nodes=200),
    "completed": TreeParams(max_depth=4, max_completed_paths=2),
    "depth": TreeParams(0.08, 0.3, soft_queue_limit=8, max_depth=3, max_completed_paths=1000, max_nodes=200),
    "nodes": TreeParams(0.05, 0.2, max_depth=50, max_completed_paths=50, max_nodes=13),
    # one child (T above every p), finished at depth 1: the queue empties as the one path asked for
    # ends — "completed", which a trial saw reported as "exhausted"
    "both": TreeParams(0.999, 0.999, max_depth=1, max_completed_paths=1),
}


# every family grows the queue case; the stop cases go round the families
RUNS = [("queue", f) for f in PEAKED] + [
    (case, PEAKED[(i + 1) % len(PEAKED)]) for i, case in enumerate(["completed", "depth", "nodes", "both"])
]


@pytest.mark.parametrize("case, family", RUNS)
def test_search_equals_the_reference(peaked, family, case):
    lm, params = peaked(family), CASES[case]
    run, events, _ = search(lm, params)
    prefix = len(run.prompt)
    ref = reference(lm.model, run.prompt.col("token_id").tolist(), params, set(lm.eos_ids))
    assert_matches(run, events, ref, prefix)
    assert ref["stopped"] == {
        "queue": "exhausted",
        "depth": "exhausted",
        "nodes": "max_nodes",
        "both": "completed",
    }.get(case, case)
    if case == "queue":
        assert len({round(t, 6) for t in ref["thresholds"]}) >= 3  # the queue moved the threshold
        assert max(len(run.children(b.id)) for b in run.branches) >= 2  # and the tree branched
    if case == "depth":
        finished = [b for b in run.branches if tree.node_facts(run, b.id).finished]
        assert finished and all(len(run.sequence(b.id)) - prefix == 3 for b in finished)


def test_end_of_sequence_finishes_a_path(peaked):
    """A token made an end-of-sequence token ends its path (before max_depth) and its branch has
    status 'eos'."""
    lm = peaked("gpt2")
    params = TreeParams(max_depth=6, max_completed_paths=3, max_nodes=60)
    first, _, _ = search(lm, params)
    depth2 = next(b for b in first.branches if b.fork_position == len(first.prompt) + 1)
    eos = int(depth2.steps.col("token_id")[0])  # a token the tree takes at depth 2
    lm = dataclasses.replace(lm, eos_ids=[eos])
    run, events, _ = search(lm, params)
    ref = reference(lm.model, run.prompt.col("token_id").tolist(), params, {eos})
    assert_matches(run, events, ref, len(run.prompt))
    ended = [b for b in run.branches if b.steps.col("token_id")[0] == eos]
    assert ended and all(b.status == "eos" for b in ended)
    assert any(tree.node_facts(run, b.id).finished and len(run.sequence(b.id)) - len(run.prompt) < 6 for b in ended)


@pytest.mark.parametrize("batch", [1, 3])
def test_small_batches_and_the_fallback_give_the_same_tree(peaked, batch):
    lm, params = peaked("llama"), CASES["queue"]
    a, _, _ = search(lm, params)
    b, _, _ = search(lm, params, batch=batch)
    c, events, s = search(lm, params, shared=False)
    assert s.cache is None and any(isinstance(e, Progress) and "one forward per node" in e.message for e in events)
    for other in (b, c):
        assert [x.steps.col("token_id").tolist() for x in other.branches] == [
            x.steps.col("token_id").tolist() for x in a.branches
        ]
        assert [(x.parent, x.fork_position) for x in other.branches] == [
            (x.parent, x.fork_position) for x in a.branches
        ]
        np.testing.assert_allclose(
            [x.steps.col("logprob")[0] for x in other.branches],
            [x.steps.col("logprob")[0] for x in a.branches],
            atol=1e-5,
        )


def test_sliding_window_models_fall_back_and_match(tokenizer_dir):
    """A Mistral with a sliding window shorter than the prefix: its cache cannot be one shared
    buffer, so the search forwards node by node over copied caches — and still equals the
    reference (whose full forwards apply the window too)."""
    from tests.factories import tiny_loaded

    lm = tiny_loaded(tokenizer_dir, "mistral", head_scale=3.0, sliding_window=6)
    params = TreeParams(0.05, 0.5, soft_queue_limit=4, max_depth=4, max_completed_paths=20, max_nodes=40)
    run, events, s = search(lm, params)
    assert s.cache is None and any(isinstance(e, Progress) and "sliding" in e.message for e in events)
    ref = reference(lm.model, run.prompt.col("token_id").tolist(), params, set())
    assert_matches(run, events, ref, len(run.prompt))


def test_alibi_models_fall_back_and_match(tokenizer_dir):
    """Bloom builds its ALiBi bias from the 2-D padding mask, which the shared buffer's 4-D tree
    mask is not (a trial's `tree` crashed in build_alibi_tensor): it falls back, and matches."""
    from tests.factories import tiny_loaded

    lm = tiny_loaded(tokenizer_dir, "bloom", head_scale=3.0)
    params = TreeParams(0.05, 0.5, soft_queue_limit=4, max_depth=4, max_completed_paths=20, max_nodes=40)
    run, events, s = search(lm, params)
    assert s.cache is None and any(isinstance(e, Progress) and "ALiBi" in e.message for e in events)
    ref = reference(lm.model, run.prompt.col("token_id").tolist(), params, set())
    assert_matches(run, events, ref, len(run.prompt))


def test_gpt_neos_local_layers_fall_back_and_match(tokenizer_dir):
    """GPT-Neo declares its local-window layers in `attention_layers`, not `layer_types`, and keeps
    a plain cache: on the shared buffer its window counted buffer slots, not a node's path (a
    trial's nodes had p 0.123 for 0.027). It falls back, and matches."""
    from tests.factories import tiny_loaded

    lm = tiny_loaded(tokenizer_dir, "gpt_neo", head_scale=3.0)
    params = TreeParams(0.05, 0.5, soft_queue_limit=4, max_depth=6, max_completed_paths=40, max_nodes=60)
    run, events, s = search(lm, params, prompt="def f")  # (short: a path is in its window, its slots are not)
    assert s.cache is None and any(isinstance(e, Progress) and "local window" in e.message for e in events)
    ref = reference(lm.model, run.prompt.col("token_id").tolist(), params, set())
    assert_matches(run, events, ref, len(run.prompt))


def test_a_state_space_model_grows_a_tree_over_copied_states(tokenizer_dir):
    """Mamba's cache is a state (no positions to share or crop): every node forwards over a copy of
    its parent's state, and the tree equals the reference (a trial's `tree` crashed asking the
    state its length)."""
    from tests.factories import tiny_loaded

    lm = tiny_loaded(tokenizer_dir, "mamba", head_scale=3.0)
    params = TreeParams(0.05, 0.5, soft_queue_limit=4, max_depth=3, max_completed_paths=20, max_nodes=25)
    run, events, s = search(lm, params)
    assert s.cache is None
    ref = reference(lm.model, run.prompt.col("token_id").tolist(), params, set())
    assert_matches(run, events, ref, len(run.prompt))


def test_eager_attention_takes_the_float_mask(peaked):
    lm = peaked("gpt_neox")
    model = copy.deepcopy(lm.model)
    model.set_attn_implementation("eager")
    lm = dataclasses.replace(lm, model=model)
    params = CASES["queue"]
    run, events, s = search(lm, params)
    assert tree_attention_problem(model, _dynamic_cache()) is None
    assert_matches(run, events, reference(model, run.prompt.col("token_id").tolist(), params, set()), len(run.prompt))


def _dynamic_cache():
    from transformers.cache_utils import DynamicCache

    return DynamicCache()


def test_lens_values_of_nodes_match_a_per_layer_reference(peaked):
    """A node's layer values come from the hidden states of the position before its token (its
    parent's forward), like any step's."""
    lm = peaked("gpt2")
    run, _, _ = search(lm, TreeParams(max_depth=4, max_completed_paths=4, max_nodes=20))
    parts = lm.lens
    checked = 0
    for b in run.branches:
        seq = run.sequence(b.id)
        step = b.step(0)
        with torch.inference_mode():
            out = lm.model(torch.tensor([seq[:-1].tolist()]), output_hidden_states=True)
            for layer in range(1, lm.n_layers):
                h = parts.norm(out.hidden_states[layer][0, -1])
                logp = torch.log_softmax(torch.nn.functional.linear(h, parts.weight, parts.bias).float(), -1)
                want = float(-(logp.exp() * logp).sum())
                assert step.layer_entropy[layer - 1] == pytest.approx(want, abs=5e-3)  # float16 storage
            final = torch.log_softmax(out.logits[0, -1].float(), -1)
        assert step.layer_entropy[-1] == pytest.approx(float(-(final.exp() * final).sum()), abs=5e-3)
        assert step.entropy == pytest.approx(float(-(final.exp() * final).sum()), abs=1e-4)
        assert step.rank == int((final > final[step.token_id]).sum()) + 1
        assert step.topk_ids.tolist() == final.topk(8).indices.tolist()
        checked += 1
    assert checked >= 5


def test_cancel_keeps_a_consistent_tree_that_saves_and_loads(peaked, tmp_path):
    lm = peaked("gpt2")
    params = TreeParams(0.05, 0.5, soft_queue_limit=5, max_depth=8, max_completed_paths=100, max_nodes=200)
    run, events, _ = search(lm, params, cancel_after=6)
    s = tree.searches(run)[-1]
    assert s["stopped"] == "cancelled" and 0 < s["nodes"] == len(run.branches) < 200
    assert isinstance(events[-1], TreeProgress) and events[-1].stopped == "cancelled"
    assert all(len(b.steps) == 1 and b.status in ("length", "eos") for b in run.branches)
    assert set(run.meta.tree["nodes"]) == {str(b.id) for b in run.branches}
    # the receiver's copy, grown from the events alone, is the same run
    copy_ = None
    for ev in events:
        copy_ = apply_event(copy_, ev)
    assert copy_ is not None
    assert_same(copy_, run)
    loaded = load_run(save_run(run, tmp_path / "t.tokentui"))
    assert_same(loaded, run)
    # and the reference agrees on the nodes it got to
    ref = reference(lm.model, run.prompt.col("token_id").tolist(), params, set())
    assert [run.sequence(b.id)[len(run.prompt) :].tolist() for b in run.branches] == [
        n["path"] for n in ref["nodes"][1 : len(run.branches) + 1]
    ]


def test_a_tree_from_a_position_of_an_existing_run(peaked):
    """Forks of the branch at the position (its first N tokens), then the search below them; the
    run's other branches stay as they were."""
    lm = peaked("llama")
    backend = HFBackend(lm, lens_chunk=1, lens_precision="float32")
    gen = jobs.Generate(backend, PROMPT, GenerationSettings(SamplingParams(max_new_tokens=6), k=8))
    list(gen)
    run = gen.run
    assert run is not None
    at = len(run.prompt) + 3
    params = TreeParams(0.05, 0.5, soft_queue_limit=4, max_depth=3, max_completed_paths=50, max_nodes=40)
    job = jobs.TreeSearch(backend, params, run=run, branch=0, position=at)
    events = list(job)
    assert isinstance(events[0], TreeStarted) and events[0].search["root_branch"] == 0
    grown = run.branches[1:]
    roots = [b for b in grown if b.fork_position == at]
    assert roots and all(b.parent == 0 for b in roots)
    ref = reference(lm.model, run.sequence(0)[:at].tolist(), params, set(lm.eos_ids))
    assert [run.sequence(b.id)[at:].tolist() for b in grown] == [n["path"] for n in ref["nodes"][1:]]
    assert len(run.branches[0].steps) == 6  # untouched
    trie = tree.build_trie(run, 0, at)
    assert trie.size >= len(grown)
    with pytest.raises(EngineError, match="out of range"):
        list(jobs.TreeSearch(backend, params, run=run, branch=0, position=999))
    with pytest.raises(RunError, match="no branch"):
        list(jobs.TreeSearch(backend, params, run=run, branch=99))


def test_bad_parameters_are_one_line_errors():
    for bad, match in [
        (TreeParams(min_branch_threshold=-0.1), r"min-branch-threshold must be in \[0, 1\]"),
        (TreeParams(max_branch_threshold=1.5), r"max-branch-threshold must be in \[0, 1\]"),
        (TreeParams(candidate_threshold=2), r"candidate-threshold must be in \[0, 1\]"),
        (TreeParams(0.6, 0.5), "is above max-branch-threshold"),
        (TreeParams(soft_queue_limit=0), "soft-queue-limit must be a whole number ≥ 1"),
        (TreeParams(max_depth=0), "max-depth"),
        (TreeParams(max_completed_paths=-1), "max-completed-paths"),
        (TreeParams(max_nodes=0), "max-nodes"),
        (TreeParams(max_nodes=10**9), "max-nodes must be at most"),
    ]:
        with pytest.raises(RunError, match=match) as e:
            bad.check()
        assert "\n" not in str(e.value)
    assert TreeParams().threshold(0) == pytest.approx(0.1) and TreeParams().threshold(45) == pytest.approx(0.5)
    assert TreeParams().threshold(15) == pytest.approx(0.3)


def test_the_worker_grows_a_tree_and_saves_it(peaked, tmp_path):
    from tokentui.engine.worker import Tree, Worker

    lm = peaked("gpt_neox")
    events: list = []
    done = threading.Event()

    def callback(ev):
        events.append(ev)
        if isinstance(ev, TreeProgress) and ev.stopped != "running":
            done.set()

    w = Worker(callback, save_dir=tmp_path, backend=HFBackend(lm)).start()
    w.submit(Tree(TreeParams(max_depth=4, max_completed_paths=3), prompt=PROMPT, settings=GenerationSettings(k=5)))
    assert done.wait(60)
    w.shutdown()
    run = w.run
    assert run is not None and tree.searches(run)[-1]["stopped"] == "completed"
    saved = load_run(tmp_path / f"{run.id}.tokentui")
    assert_same(saved, run)


def test_models_numbering_their_own_positions_fall_back_and_match(tokenizer_dir):
    """RoBERTa-likes count positions from after the padding id, not from the position ids a tree
    passes: a trial's tree probabilities were wrong after every fork. Such families fall back to
    one forward per node, and match the reference."""
    from tests.factories import tiny_loaded

    lm = tiny_loaded(tokenizer_dir, "roberta", head_scale=3.0)
    params = TreeParams(0.05, 0.5, soft_queue_limit=4, max_depth=4, max_completed_paths=20, max_nodes=40)
    run, events, s = search(lm, params)
    assert s.cache is None and any(isinstance(e, Progress) and "numbers positions" in e.message for e in events)
    ref = reference(lm.model, run.prompt.col("token_id").tolist(), params, set())
    assert_matches(run, events, ref, len(run.prompt))
