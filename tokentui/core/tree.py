"""A run's branches seen as a token tree, and the facts a tree search adds to it.

Two things live here, both without torch:

- **The search record** (`RunMeta.tree`): what a branch cannot hold. A tree search (seed 002's
  threshold search, `engine/hf/tree.py`) makes every node but its root a one-step branch, so each
  node's token has a full `Step`; what only the search knows — its parameters, its root, why it
  stopped, each node's `finished` flag and `candidates` — is kept in the run's metadata as JSON:

      {"version": 2,
       "searches": [{"parameters": {...TreeParams...}, "root_branch": 0 | null, "root_position": 17,
                     "root_candidates": [[id, p], ...] | null, "stopped": "running" | ..., "nodes": 37,
                     "completed": 2, "branches": [first, end] | null}],
       "nodes": {"<branch id>": {"finished": bool, "candidates": [[id, p], ...] | null}}}

  `root_branch` null means the prompt (a search on a fresh prompt); candidates are null until the
  node is expanded (the seed records them only for the nodes it expands). `branches` is the range
  of branch ids the search made (it makes them in a row): other branches pass through its root too
  (the one it was grown from goes on with its old tokens), and the search's own tree leaves them
  out (`own_branches`). Version 1 files lack it; they are read as `branches` null (unknown: every
  branch through the root). Every change goes through the functions below, on the engine's run and
  on a receiver's copy alike (`engine.events.apply_event`).

- **The token trie** (`build_trie`): every branch's full sequence after a root position, merged on
  common prefixes, children in branch-creation order. Exports (`tree-json`, `seed002-jsonl`), the
  CLI's tree rendering and the explorer's tree view read the tree through it, so a hand-grown run
  and a searched one look alike. It is built iteratively: seed trees are chains 1000 deep.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokentui.core.columns import Columns
from tokentui.core.params import RunError, TreeParams
from tokentui.core.run import Branch, Run

TREE_VERSION = 2
STOPPED = ("running", "completed", "exhausted", "max_nodes", "cancelled", "error")
MAX_CANDIDATES = 10  # the seed keeps at most 10 candidates per node

Candidates = list[tuple[int, float]]


# --- the search record ------------------------------------------------------------------------


def _record(run: Run) -> dict[str, Any]:
    if run.meta.tree is None:
        run.meta.tree = {"version": TREE_VERSION, "searches": [], "nodes": {}}
    return run.meta.tree


def new_search(params: TreeParams, root_branch: int | None, root_position: int, first: int) -> dict[str, Any]:
    """A search's record before it starts (appended by `add_search`); `first`: the id its first
    branch will have (the run's branch count now)."""
    return {
        "parameters": params.to_dict(),
        "root_branch": root_branch,
        "root_position": root_position,
        "root_candidates": None,
        "stopped": "running",
        "nodes": 0,
        "completed": 0,
        "branches": [first, first],
    }


def add_search(run: Run, search: dict[str, Any]) -> int:
    """Record a search that starts now; its index."""
    searches: list[dict[str, Any]] = _record(run)["searches"]
    searches.append(dict(search))
    return len(searches) - 1


def set_node(
    run: Run, search: int, branch_id: int | None, finished: bool, candidates: Candidates | None = None
) -> None:
    """What the search decided about a node: `branch_id` None is the search's root."""
    rec = _record(run)
    cands = None if candidates is None else [[int(t), float(p)] for t, p in candidates]
    if branch_id is None:
        rec["searches"][search]["root_candidates"] = cands
    else:
        rec["nodes"][str(branch_id)] = {"finished": bool(finished), "candidates": cands}
        span = rec["searches"][search]["branches"]
        if span is not None and branch_id >= span[1]:  # (a new list: a receiver's copy may share the old one)
            rec["searches"][search]["branches"] = [span[0], branch_id + 1]


def end_search(run: Run, search: int, stopped: str, nodes: int, completed: int) -> None:
    """Update a search's counts and state (`stopped` 'running' while it goes on)."""
    if stopped not in STOPPED:
        raise RunError(f"unknown search state {stopped!r}")
    s = _record(run)["searches"][search]
    s.update(stopped=stopped, nodes=int(nodes), completed=int(completed))


def claim_the_rest(run: Run, search: int) -> None:
    """A search that an error stopped halfway through a node: the branches it made after its last
    progress are its own too (none came after them)."""
    span = _record(run)["searches"][search]["branches"]
    if span is not None:
        _record(run)["searches"][search]["branches"] = [span[0], len(run.branches)]


def remap_branches(run: Run, mapping: dict[int, int]) -> None:
    """Follow `Run.remove_subtree`: node records of deleted branches go, the others take their
    branches' new ids; a search whose root branch was deleted goes with it (its nodes went too)."""
    rec = run.meta.tree
    if rec is None:
        return
    rec["nodes"] = {str(mapping[int(k)]): v for k, v in rec["nodes"].items() if int(k) in mapping}
    kept = []
    for s in rec["searches"]:
        if s["root_branch"] is None or s["root_branch"] in mapping:
            s["root_branch"] = None if s["root_branch"] is None else mapping[s["root_branch"]]
            if s["branches"] is not None:  # (ids keep their order: the survivors stay in a row)
                left = [mapping[i] for i in range(*s["branches"]) if i in mapping]
                at = left[0] if left else sum(1 for i in mapping if i < s["branches"][0])
                s["branches"] = [at, at + len(left)]
            kept.append(s)
    rec["searches"] = kept


def own_branches(search: dict[str, Any]) -> range | None:
    """The branches a search made (`build_trie`'s `only`); None where the record does not say
    (a version 1 file)."""
    span = search["branches"]
    return None if span is None else range(span[0], span[1])


def upgrade_record(tree: object) -> object:
    """A version 1 record (from an older file) as version 2: its searches' branches unknown. What
    is not a version 1 record is returned as it is, for `check_tree_record` to judge."""
    version = tree.get("version") if isinstance(tree, dict) else None
    if not (
        type(version) is int and version == 1 and isinstance(tree, dict) and isinstance(tree.get("searches"), list)
    ):
        return tree  # (True or 1.0 is not version 1)
    searches = [dict(s, branches=None) if isinstance(s, dict) else s for s in tree["searches"]]
    return dict(tree, version=TREE_VERSION, searches=searches)


@dataclass(frozen=True)
class NodeFacts:
    finished: bool
    candidates: Candidates | None  # None: not expanded by a search


def node_facts(run: Run, branch_id: int) -> NodeFacts | None:
    """The search's facts about the node that is branch `branch_id`'s last token, if any."""
    if run.meta.tree is None:
        return None
    d = run.meta.tree["nodes"].get(str(branch_id))
    if d is None:
        return None
    c = d["candidates"]
    return NodeFacts(d["finished"], None if c is None else [(int(t), float(p)) for t, p in c])


def searches(run: Run) -> list[dict[str, Any]]:
    return [] if run.meta.tree is None else list(run.meta.tree["searches"])


def check_tree_record(
    tree: object, n_branches: int, vocab_size: int, root_limit: Callable[[int | None], int] | None = None
) -> None:
    """Refuse (RunError, one line) a `tree` entry that is not exactly what this module writes:
    it comes from a run file, and the exports and the explorer index branches and ids with it.
    `root_limit(root_branch)`: the last position a search's root may take on that branch (None:
    the prompt) — a root past it stopped the explorer when a path was asked for."""
    if tree is None:
        return
    if not isinstance(tree, dict) or set(tree) != {"version", "searches", "nodes"}:
        raise RunError("tree record is malformed")
    if tree["version"] != TREE_VERSION or isinstance(tree["version"], bool):
        raise RunError(f"tree record has unknown version {tree['version']!r}")
    if not isinstance(tree["searches"], list) or not isinstance(tree["nodes"], dict):
        raise RunError("tree record is malformed")
    for s in tree["searches"]:
        _check_search(s, n_branches, vocab_size)
        if root_limit is not None and s["root_position"] > root_limit(s["root_branch"]):
            raise RunError(f"tree search root position {s['root_position']} is past the end of its root sequence")
    for key, d in tree["nodes"].items():
        if not (isinstance(key, str) and key.isdigit() and len(key) < 10 and int(key) < n_branches):
            raise RunError(f"tree record names branch {key!r}, which the run does not have")
        if not isinstance(d, dict) or set(d) != {"finished", "candidates"} or not isinstance(d["finished"], bool):
            raise RunError(f"tree record of branch {key} is malformed")
        _check_candidates(d["candidates"], vocab_size, f"branch {key}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_SEARCH_KEYS = frozenset(new_search(TreeParams(), None, 1, 0))  # (exactly what a search record holds)


def _check_search(s: object, n_branches: int, vocab_size: int) -> None:
    if not isinstance(s, dict) or set(s) != _SEARCH_KEYS:
        raise RunError("tree search record is malformed")
    if not isinstance(s["parameters"], dict):
        raise RunError("tree search parameters are malformed")
    # every parameter from here on (one left out takes its default: readers found it missing)
    s["parameters"] = TreeParams.from_dict(s["parameters"]).to_dict()
    rb, pos = s["root_branch"], s["root_position"]
    if rb is not None and not (_is_int(rb) and 0 <= rb < n_branches):
        raise RunError("tree search root names a branch the run does not have")
    if not (_is_int(pos) and 1 <= pos < 1 << 40):
        raise RunError("tree search root position is not a position")
    if s["stopped"] not in STOPPED:
        raise RunError("tree search state is unknown")
    for name in ("nodes", "completed"):
        if not (_is_int(s[name]) and 0 <= s[name] < 1 << 40):
            raise RunError(f"tree search {name} is not a count")
    span = s["branches"]
    if span is not None and not (
        isinstance(span, list) and len(span) == 2 and all(map(_is_int, span)) and 0 <= span[0] <= span[1] <= n_branches
    ):
        raise RunError("tree search branches are not a range of the run's branches")
    _check_candidates(s["root_candidates"], vocab_size, "the search root")


def _check_candidates(c: object, vocab_size: int, what: str) -> None:
    if c is None:
        return
    if not isinstance(c, list) or len(c) > MAX_CANDIDATES:
        raise RunError(f"tree candidates of {what} are malformed")
    for item in c:
        if not (isinstance(item, list) and len(item) == 2 and _is_int(item[0]) and 0 <= item[0] < vocab_size):
            raise RunError(f"tree candidates of {what} are malformed")
        p = item[1]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise RunError(f"tree candidates of {what} hold a probability outside [0, 1]")


# --- the token trie ---------------------------------------------------------------------------


@dataclass(eq=False)
class TrieNode:
    """One token of the tree (the root: the prefix before the first position)."""

    token_id: int | None
    position: int  # absolute position of the token (root: the first position after the prefix)
    depth: int
    parent: TrieNode | None
    cols: Columns | None = None  # where this token's step is stored (a branch's or the prompt's columns)
    index: int = 0  # … and its row there
    branch: int = -1  # the branch that made this node (its step is that branch's; -1: the prompt, the root)
    children: list[TrieNode] = field(default_factory=list)
    by_token: dict[int, TrieNode] = field(default_factory=dict)
    ends: list[int] = field(default_factory=list)  # branches whose sequence ends at this token

    @property
    def logprob(self) -> float:
        """log p of the token under the distribution it was chosen from (NaN: root, unknown)."""
        if self.cols is None:
            return math.nan
        return float(self.cols.col("logprob")[self.index])

    @property
    def prob(self) -> float:
        """The root's is 1 (seed 002); a node's is exp(its step's log-prob)."""
        if self.parent is None:
            return 1.0
        lp = self.logprob
        return math.exp(lp) if math.isfinite(lp) else math.nan

    def child(self, token_id: int) -> TrieNode | None:
        return self.by_token.get(token_id)


@dataclass
class Trie:
    root: TrieNode
    prefix: np.ndarray  # the root's token ids (positions 0 .. root.position-1)
    root_branch: int | None  # the search root's branch, when built for one
    size: int  # nodes below the root

    def walk(self) -> Iterator[TrieNode]:
        """Every node below the root, depth first, children in order (pre-order)."""
        stack = list(reversed(self.root.children))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def leaves(self) -> Iterator[TrieNode]:
        return (n for n in self.walk() if not n.children)

    def path(self, node: TrieNode) -> list[TrieNode]:
        """The nodes from the root's first child down to `node`."""
        out = []
        n: TrieNode | None = node
        while n is not None and n.parent is not None:
            out.append(n)
            n = n.parent
        out.reverse()
        return out

    def cumulative(self) -> dict[TrieNode, float]:
        """Each node's cumulative probability: the product of `prob` from the root (computed
        from the steps, never read from a file)."""
        out: dict[TrieNode, float] = {self.root: 1.0}
        for node in self.walk():
            assert node.parent is not None
            out[node] = out[node.parent] * node.prob
        return out


def drawn_parent(run: Run, b: Branch, drawn: list[int | None]) -> int | None:
    """The branch `b` sits under in the token tree (the explorer's tree pane): its parent, but a
    search node that takes another token in its parent's first place is that parent's sibling,
    under the parent's own (`drawn`: the answer for every branch before b). A search made such a
    node a child of the branch it replaces the token of (`Run.add_branch` now hangs it from that
    branch's parent; runs saved before keep it so); drawn so, the root's second token sat under
    the first, beside the first's children."""
    under = b.parent
    nodes = run.meta.tree["nodes"] if run.meta.tree is not None else {}
    if str(b.id) in nodes and len(b.steps) == 1:
        while under is not None and run.branches[under].fork_position == b.fork_position:
            under = drawn[under]
    return under


def drawn_parents(run: Run) -> list[int | None]:
    """`drawn_parent` of every branch, by id."""
    drawn: list[int | None] = []
    for b in run.branches:
        drawn.append(drawn_parent(run, b, drawn))
    return drawn


def drawn_subtree(run: Run, branch_id: int, drawn: list[int | None] | None = None) -> list[int]:
    """The branch and those drawn under it (`drawn_parent`), in id order: what deleting it from
    the tree pane removes (the siblings beside it stay, though the run made them its children)."""
    drawn = drawn_parents(run) if drawn is None else drawn
    inside = {branch_id}
    for b in run.branches[branch_id + 1 :]:  # (a branch is drawn under one made before it)
        if drawn[b.id] in inside:
            inside.add(b.id)
    return sorted(inside)


def keep_siblings(run: Run, branch_id: int) -> None:
    """Before deleting `branch_id` with what is drawn under it (`run.remove_subtree`): the
    branches the run grew from it that are drawn beside it (its siblings in the token tree) take
    their drawn parent as their own — the same sequence, since they part from it where it parts
    from its own parent — so that they stay."""
    drawn = drawn_parents(run)
    inside = set(drawn_subtree(run, branch_id, drawn))
    for b in run.branches[branch_id + 1 :]:
        if b.parent in inside and b.id not in inside:
            b.parent = drawn[b.id]


def default_root(run: Run) -> int:
    """The position where a run's branches first can differ: the end of the prompt, or an earlier
    fork inside it. The whole run's tree hangs below it."""
    forks = [b.fork_position for b in run.branches if b.parent is not None]
    return min([len(run.prompt), *forks])


def build_trie(
    run: Run, root_branch: int | None = None, root_position: int | None = None, only: range | None = None
) -> Trie:
    """The run's token tree below a root: the first `root_position` tokens of `root_branch` (None:
    the prompt), by default `default_root(run)`. Branches that do not start with that prefix are
    left out; children keep the order in which branches first made them. `only`: the branches to
    take (a search's own, which it made in a row), leaving out those that pass through its root
    from before (the branch it was grown from would carry its old tokens into the search's tree)."""
    if root_position is None:
        root_position = default_root(run)
    source = 0 if root_branch is None else root_branch
    if not run.branches:
        raise RunError("the run has no branches")
    if root_branch is None and root_position > len(run.prompt):
        raise RunError(f"position {root_position} is past the end of the prompt")
    if not 1 <= root_position <= run.length(source):
        raise RunError(f"position {root_position} is out of range 1..{run.length(source)} of branch {source}")
    prefix = run.sequence(source)[:root_position]
    root = TrieNode(None, root_position, 0, None)
    # Nodes of each included branch's own steps (None where a step lies inside the prefix), and of
    # the prompt's positions after the root (the root branch and every branch forking after the
    # prompt pass through them).
    own: dict[int, list[TrieNode | None]] = {}
    prompt_nodes: list[TrieNode] = []
    size = 0

    def attach(parent: TrieNode, token: int, position: int, cols: Columns, index: int, branch: int) -> TrieNode:
        nonlocal size
        node = parent.by_token.get(token)
        if node is None:
            node = TrieNode(token, position, parent.depth + 1, parent, cols, index, branch)
            parent.by_token[token] = node
            parent.children.append(node)
            size += 1
        return node

    def node_at(branch_id: int, position: int) -> TrieNode | None:
        """The node of `position` in the branch's full sequence (root: the prefix's last token)."""
        if position == root_position - 1:
            return root
        if position < root_position - 1:
            return None
        b: Branch | None = run.branches[branch_id]
        while b is not None:  # up the ancestry, lazily: search trees are chains of branches
            if position >= b.fork_position:
                nodes = own.get(b.id)
                return None if nodes is None else nodes[position - b.fork_position]
            b = None if b.parent is None else run.branches[b.parent]
        return prompt_nodes[position - root_position] if position - root_position < len(prompt_nodes) else None

    shares_prompt = len(run.prompt) >= root_position and bool(
        np.array_equal(run.prompt.col("token_id")[:root_position], prefix)
    )
    if shares_prompt:
        cur = root
        ids = run.prompt.col("token_id")
        for pos in range(root_position, len(run.prompt)):
            cur = attach(cur, int(ids[pos]), pos, run.prompt, pos, -1)
            prompt_nodes.append(cur)
    for b in run.branches:
        if only is not None and b.id not in only:
            continue
        start: TrieNode | None
        if b.parent is not None and b.fork_position >= root_position and b.parent in own:
            start = node_at(b.parent, b.fork_position - 1)
        elif b.parent is None and shares_prompt:
            start = node_at(b.id, b.fork_position - 1)
        elif b.fork_position <= root_position or b.parent is None:  # (at the root: from a branch left out)
            seq = run.sequence(b.id)
            start = root if len(seq) >= root_position and np.array_equal(seq[:root_position], prefix) else None
        else:
            start = None
        if start is None:
            continue
        nodes: list[TrieNode | None] = []
        cur = start
        ids = b.steps.col("token_id")
        for i in range(len(b.steps)):
            pos = b.fork_position + i
            if pos < root_position:
                nodes.append(None)
                continue
            cur = attach(cur, int(ids[i]), pos, b.steps, i, b.id)
            nodes.append(cur)
        own[b.id] = nodes
        if b.end > root_position:
            end = node_at(b.id, b.end - 1)
            if end is not None:
                end.ends.append(b.id)
    return Trie(root, prefix, root_branch, size)


def search_for_root(run: Run, trie: Trie) -> dict[str, Any] | None:
    """The latest search whose root is this trie's root (same prefix), if any."""
    s: dict[str, Any]
    for s in reversed(searches(run)):
        rb, pos = s["root_branch"], s["root_position"]
        if pos != trie.root.position:
            continue
        seq = run.sequence(0 if rb is None else rb)
        if len(seq) >= pos and np.array_equal(seq[:pos], trie.prefix):
            return s
    return None


def is_finished(run: Run, node: TrieNode) -> bool:
    """A search's flag for a node it made (set when the search took the node from its queue: at
    its max depth or an end-of-sequence token); for any other node, whether a branch ends there
    with status 'eos'."""
    for b in reversed(node.ends):  # the latest search's word
        facts = node_facts(run, b)
        if facts is not None:
            return facts.finished
    return any(run.branches[b].status == "eos" for b in node.ends)


def candidates(run: Run, trie: Trie, node: TrieNode, threshold: float) -> Candidates:
    """The tokens the node's own next-token distribution gave p > `threshold`, most probable
    first, at most 10: a search's record where it expanded the node; else the distribution the run
    recorded there (the top-k of the node's children's steps); else none."""
    if node.parent is None:
        s = search_for_root(run, trie)
        if s is not None and s["root_candidates"] is not None:
            return [(int(t), float(p)) for t, p in s["root_candidates"]]
    for b in reversed(node.ends):
        facts = node_facts(run, b)
        if facts is not None and facts.candidates is not None:
            return facts.candidates
    if not node.children:
        return []
    first = node.children[0]
    assert first.cols is not None
    ids = first.cols.col("topk_ids")[first.index]
    logps = first.cols.col("topk_logprobs")[first.index].astype(np.float64)
    out = [(int(t), math.exp(lp)) for t, lp in zip(ids, logps) if t >= 0 and math.isfinite(lp)]
    out = [(t, p) for t, p in out if p > threshold]
    out.sort(key=lambda c: -c[1])
    return out[:MAX_CANDIDATES]


def finished_paths(run: Run, trie: Trie) -> list[tuple[TrieNode, float]]:
    """The finished nodes (`is_finished`) with their cumulative probability, most probable first:
    where a front end jumps to the most or the least probable finished path (a node's `ends` or
    `branch` names a branch that holds the path)."""
    cumulative = trie.cumulative()
    out = [(n, cumulative[n]) for n in trie.walk() if is_finished(run, n)]
    out.sort(key=lambda c: -c[1])
    return out


def candidate_threshold(run: Run, trie: Trie) -> float:
    """The threshold for candidates the search did not record: the root's search's, else the
    run's latest search's, else the default."""
    s = search_for_root(run, trie)
    if s is None and searches(run):
        s = searches(run)[-1]
    if s is None:
        return TreeParams().candidate_threshold
    return float(s["parameters"]["candidate_threshold"])
