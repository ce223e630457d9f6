"""The branch tree: fork position, length, mean log-prob, forced token and first words of each
branch. Labels are Text objects, so token text is never parsed as markup."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Tree

from tokentui.core.display import decode_bytes, sanitize

if TYPE_CHECKING:  # the explorer's first frame is drawn before numpy (under Run) is imported
    from tokentui.core.run import Branch, Run


def branch_label(run: Run, b: Branch) -> Text:
    n = len(b.steps)
    mean = b.steps.finite_mean("logprob")
    words = sanitize(decode_bytes(run.tokens.text(b.steps.col("token_id")[:12].tolist())), visible_whitespace=True)
    # the numbers first: in a narrow pane the words are what gets cut off
    label = Text(f"#{b.id} ", style="bold")
    if b.parent is not None:
        label.append(f"@{b.fork_position} ", style="dim")
    label.append(f"{n} tok", style="dim")
    if mean == mean:
        label.append(f" · {mean:.2f}", style="dim")
    if b.status == "running":
        label.append(" ⋯", style="bold")
    label.append("  ")
    if b.parent is not None and b.n_forced:
        label.append(run.tokens.display(int(b.steps.col("token_id")[0])), style="italic underline")
        label.append(" ")
    label.append(words[:28])
    return label


class BranchTree(Tree[int]):
    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(Text("run"), id=id, classes=classes)
        self.show_root = False
        self.guide_depth = 2

    def rebuild(self, run: Run | None, current: int) -> None:
        self.clear()
        if run is None or not run.branches:
            return
        nodes = {}
        for b in run.branches:
            parent_node = self.root if b.parent is None else nodes[b.parent]
            nodes[b.id] = parent_node.add(branch_label(run, b), data=b.id, expand=True)
        self.root.expand_all()
        node = nodes.get(current)
        if node is not None:
            self.move_cursor(node)
