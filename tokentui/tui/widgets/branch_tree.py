"""The branch tree: fork position, length, mean log-prob, the text the branch was made to take
(once, whole) and its first words. The branch on show is marked and is always the highlighted
node. Labels are Text objects, so token text is never parsed as markup."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Tree

from tokentui.core.display import decode_bytes, sanitize
from tokentui.tui.actions import TREE, bindings
from tokentui.tui.widgets.token_text import lone

if TYPE_CHECKING:  # the explorer's first frame is drawn before numpy (under Run) is imported
    from collections.abc import Iterator

    from textual.widgets.tree import TreeNode

    from tokentui.core.run import Branch, Run

CURRENT = "▶"  # marks the branch on show (a character: visible without colour)


FINISHED = "✓"  # a finished path of a tree search (end of sequence or its max depth)


def path_probability(run: Run, b: Branch, memo: dict[int, float]) -> float:
    """The cumulative p of a search node's path from the search's root: the product of the p of
    the search nodes whose token is on it. `memo` (branch id → that product) holds what earlier
    calls found, so labelling a whole tree costs one step per node, not its depth per node (a
    deep tree's labels climbed to the root each: 460,000 steps for 900 nodes)."""
    from tokentui.core import tree

    nodes = run.meta.tree["nodes"] if run.meta.tree is not None else {}
    # the branches b's search made: a search grown from another search's node stops at that node
    # (its own root), where the CLI's and the exports' cumulative p start
    own = next((r for s in tree.searches(run) if (r := tree.own_branches(s)) is not None and b.id in r), None)
    above: list[Branch] = []  # the path's nodes not in `memo`, from b up
    cum, limit = 1.0, b.end
    chain: Branch | None = b
    while chain is not None and len(chain.steps) == 1 and str(chain.id) in nodes and (own is None or chain.id in own):
        if chain.fork_position < limit:  # its token is on the path (a sibling's fork replaces it)
            if chain.id in memo:
                cum = memo[chain.id]
                break
            above.append(chain)
            limit = chain.fork_position
        chain = None if chain.parent is None else run.branches[chain.parent]
    for node in reversed(above):  # (from the top: each node's product is its parent's times its p)
        cum *= math.exp(float(node.steps.col("logprob")[0]))
        memo[node.id] = cum
    return cum


def node_label(run: Run, b: Branch, current: bool, finished: bool, memo: dict[int, float] | None = None) -> Text:
    """A tree-search node (a one-step branch): its id, its token, p, and the cumulative p of its path from
    the search's root (path_probability); ✓ when the path is finished."""
    cum = path_probability(run, b, {} if memo is None else memo)
    p = math.exp(float(b.steps.col("logprob")[0]))
    label = Text(f"{CURRENT if current else ' '}", style="bold" if current else "")
    label.append(f"#{b.id} ", style="dim")  # (first, as on every branch: deep in a narrow pane the end is cut)
    label.append_text(lone(decode_bytes(run.tokens.text(b.steps.col("token_id").tolist()))))
    label.append(f" {p:.3f}", style="dim")
    label.append(f" Σ{cum:.3g}", style="dim")
    if finished:
        label.append(f" {FINISHED}", style="bold")
    return label


def branch_label(run: Run, b: Branch, current: bool = False, memo: dict[int, float] | None = None) -> Text:
    """`memo`: path_probability's, for a search node."""
    facts = run.meta.tree["nodes"].get(str(b.id)) if run.meta.tree is not None else None
    if facts is not None and len(b.steps) == 1:
        return node_label(run, b, current, bool(facts["finished"]), memo)
    ids = b.steps.col("token_id").tolist()
    mean = b.steps.finite_mean("logprob")
    # the numbers first: in a narrow pane the words are what gets cut off
    label = Text(f"{CURRENT if current else ' '}#{b.id} ", style="bold" if current else "")
    if b.parent is not None:
        label.append(f"@{b.fork_position} ", style="dim")
    label.append(f"{len(ids)} tok", style="dim")
    if mean == mean:
        label.append(f" · {mean:.2f}", style="dim")
    if b.status == "running":
        label.append(" ⋯", style="bold")
    label.append("  ")
    forced = b.n_forced if b.parent is not None else 0
    if forced:  # what the user made it take, whole and once
        label.append_text(lone(decode_bytes(run.tokens.text(ids[:forced])), style="italic underline"))
        label.append(" ")
    words = sanitize(decode_bytes(run.tokens.text(ids[forced : forced + 12])), visible_whitespace=True)
    label.append(words[:28])
    return label


def _room_for(depth: int) -> None:
    """Textual's Tree lays out (and expands, folds) its nodes recursively, a call per level: a
    tree search's path of a thousand nodes passed Python's recursion limit and closed the explorer
    (RecursionError). The limit is raised to a node's depth with room to spare (the recursion is
    Python's own: no C stack per level on 3.11+)."""
    if 2 * depth + 1000 > sys.getrecursionlimit():
        sys.setrecursionlimit(2 * depth + 1000)


BRANCHES_TITLE = "branches: length · mean log p"
NODES_TITLE = "search nodes: p · Σ path's p"  # (a run of a search alone)
MIXED_TITLE = "nodes: p · Σ path's p; branches: length · mean log p"
LABEL_SEEN = 16  # columns of the highlighted branch's label the pane keeps in view (then it scrolls sideways)


class BranchTree(Tree[int]):
    BINDINGS = bindings(TREE)
    # fold marks unlike the mark of the branch on show (a folded branch on show read "▶ ▶#1")
    ICON_NODE = "▸ "
    ICON_NODE_EXPANDED = "▾ "

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(Text("run"), id=id, classes=classes)
        self.show_root = False
        self.border_title = BRANCHES_TITLE
        self.guide_depth = 2
        self.auto_expand = False  # enter shows the branch; space folds (Textual's enter did both)
        self._run_id: str | None = None
        self._shape: list[tuple[int | None, int]] = []  # (parent, fork) per branch, as the nodes hold them
        self._depth: list[int] = []  # per branch: its depth in the tree (the root branch's: 0)
        self._under: list[int | None] = []  # per branch: the branch it is drawn under (None: the top)
        self._counted = (0, 0)  # (branches, search nodes) when the title was set
        self._branch_nodes: dict[int, TreeNode[int]] = {}
        self._labels: dict[int, tuple] = {}  # what each node's label was drawn from
        self._path_p: dict[int, float] = {}  # path_probability's memo for this run's search nodes

    def show(self, run: Run | None, current: int) -> None:
        """Show `run`'s branches, `current` marked and highlighted. Branches added since the last
        call are appended as nodes (a tree search adds hundreds while the user watches: the tree is
        never rebuilt for that, and collapsed subtrees stay collapsed); only a run with another
        shape (another run, a deleted branch) is rebuilt. Only labels whose branch changed are
        redrawn."""
        from tokentui.core.tree import drawn_parent

        shape = [(b.parent, b.fork_position) for b in run.branches] if run is not None else []
        run_id = run.id if run is not None else None
        if run_id != self._run_id or shape[: len(self._shape)] != self._shape:
            self._run_id, self._shape, self._depth, self._under, self._counted = run_id, [], [], [], (0, 0)
            self.clear()
            self._branch_nodes.clear()
            self._labels.clear()
            self._path_p.clear()
        if run is None:
            return
        nodes = run.meta.tree["nodes"] if run.meta.tree is not None else {}
        if (len(run.branches), len(nodes)) != self._counted:  # (branches or nodes added: what their rows show)
            self._counted = (len(run.branches), len(nodes))
            # (what a row's numbers are: a newcomer could not tell what "· -1.23" was; a search's
            # nodes show p and the path's p instead)
            # (every branch a search's node: as many nodes as branches, the nodes being branches;
            # counted, not checked branch by branch on every frame of a 10,000-node search)
            alone = len(nodes) == len(run.branches)
            self.border_title = BRANCHES_TITLE if not nodes else NODES_TITLE if alone else MIXED_TITLE

        def key_of(b: Branch) -> tuple:
            facts = nodes.get(str(b.id))
            return (len(b.steps), b.status, b.id == current, None if facts is None else facts["finished"])

        for b in run.branches[len(self._shape) :]:  # (a parent always comes before its children)
            # (a search's node beside the branch whose first token it replaces: tree.drawn_parent)
            under = drawn_parent(run, b, self._under)
            self._under.append(under)
            self._depth.append(0 if under is None else self._depth[under] + 1)
            _room_for(self._depth[-1])
            parent_node = self.root if under is None else self._branch_nodes[under]
            label = branch_label(run, b, b.id == current, self._path_p)
            # (a leaf has no fold mark: every node was drawn ▼, as if it held branches)
            self._branch_nodes[b.id] = parent_node.add(label, data=b.id, expand=True, allow_expand=False)
            if parent_node is not self.root and not parent_node.allow_expand:
                parent_node.allow_expand = True
            self._labels[b.id] = key_of(b)  # (drawn once: it was labelled again at once below)
        if not self.root.is_expanded:
            self.root.expand()
        self._shape = shape
        for b in run.branches:
            key = key_of(b)
            if self._labels.get(b.id) != key:
                self._labels[b.id] = key
                self._branch_nodes[b.id].set_label(branch_label(run, b, b.id == current, self._path_p))
        target = self._branch_nodes.get(current)
        if target is not None:
            node: TreeNode[int] | None = target.parent
            while node is not None and node is not self.root:  # the branch on show is never hidden
                if not node.is_expanded:
                    node.expand()
                node = node.parent
            _ = self.last_line  # lays the lines out, so the node knows its line
            if self.cursor_node is not target:
                self.move_cursor(target)

    def scroll_to_line(self, line: int, animate: bool = True) -> None:
        """Textual's, plus sideways: the highlighted branch's label is kept in view. Below depth
        8 or so a deep tree search's labels lay past the pane's right edge at 80×24 (guides alone
        showed); the pane has no scrollbar for that, so it follows the cursor's depth."""
        super().scroll_to_line(line, animate=animate)
        region = self._get_label_region(line)
        width = self.scrollable_content_region.width
        if region is None or not width:
            return
        x = 0 if region.x + LABEL_SEEN <= width else region.x - width // 4  # (a few guides kept)
        if x != self.scroll_x:
            self.scroll_to(x=x, animate=False, force=True)

    def on_resize(self) -> None:
        """A new width (a resized terminal, `v` showing the pane): the sideways place is worked
        out again for it, not only at the next cursor move."""
        if self.cursor_line >= 0:
            self.call_after_refresh(self.scroll_to_line, self.cursor_line, False)

    def action_fold(self) -> None:
        """Collapse the highlighted branch's subtree, or expand all of it again."""
        node = self.cursor_node
        if node is None or not node.children:
            return
        if node.is_expanded:
            node.collapse_all()
        else:
            node.expand_all()

    def _nodes_in_order(self) -> Iterator[TreeNode[int]]:
        stack = list(reversed(self.root.children))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))
