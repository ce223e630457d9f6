"""The branch tree: fork position, length, mean log-prob, the text the branch was made to take
(once, whole) and its first words. The branch on show is marked and is always the highlighted
node. Labels are Text objects, so token text is never parsed as markup."""

from __future__ import annotations

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


def branch_label(run: Run, b: Branch, current: bool = False) -> Text:
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


class BranchTree(Tree[int]):
    BINDINGS = bindings(TREE)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(Text("run"), id=id, classes=classes)
        self.show_root = False
        self.guide_depth = 2
        self._shape: list[tuple[int | None, int]] = []  # (parent, fork) per branch: rebuild when it changes

    def show(self, run: Run | None, current: int) -> None:
        """Show `run`'s branches, `current` marked and highlighted (rebuilt only when the tree
        changed shape; otherwise only the labels change, so the highlight does not jump)."""
        shape = [(b.parent, b.fork_position) for b in run.branches] if run is not None else []
        if shape != self._shape:
            self._shape = shape
            self.clear()
            nodes: dict[int, TreeNode[int]] = {}
            if run is not None:
                for b in run.branches:
                    parent_node = self.root if b.parent is None else nodes[b.parent]
                    nodes[b.id] = parent_node.add(branch_label(run, b, b.id == current), data=b.id, expand=True)
            self.root.expand_all()
        if run is None:
            return
        target = None
        for node in self._nodes_in_order():
            bid = node.data
            assert bid is not None  # every node below the root holds its branch's id
            node.set_label(branch_label(run, run.branches[bid], bid == current))
            if bid == current:
                target = node
        if target is not None:
            _ = self.last_line  # lays the lines out, so the node knows its line
            self.move_cursor(target)

    def _nodes_in_order(self) -> Iterator[TreeNode[int]]:
        stack = list(reversed(self.root.children))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))
