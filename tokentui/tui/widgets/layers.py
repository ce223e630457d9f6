"""The layer view: logit-lens entropy per layer of the token under the cursor as bars on one scale
for every token (0 … ln V nats, the most a distribution over V tokens can have), with its axis,
and a strip of the selected metric over the branch's positions with the cursor marked."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from tokentui.core.display import sanitize
from tokentui.tui.widgets.alternatives import bar

if TYPE_CHECKING:  # the explorer's first frame is drawn before numpy (under these) is imported
    from tokentui.core.run import Run
    from tokentui.tui.view import BranchView

SPARK = "▁▂▃▄▅▆▇█"
LABEL = 12  # "L12  3.456 " before each bar


def sparkline(cells: list[float], n_values: int, cursor: int | None) -> Text:
    """Pooled cells → sparkline text, the cell holding the cursor position reversed."""
    text = Text()
    if not len(cells) or not n_values:
        return text
    cur = None if cursor is None else min(len(cells) - 1, int(cursor * len(cells) / n_values))
    chars = "".join(" " if v != v else SPARK[min(7, int(v * 8))] for v in cells)
    text.append(chars)
    if cur is not None:
        text.stylize("reverse bold", cur, cur + 1)
    return text


def axis(top: float, width: int) -> Text:
    """Tick labels under bars of `width` cells spanning 0 … `top` nats: 0, the middle, the end."""
    cells = [" "] * width
    for frac in (0.0, 0.5, 1.0):
        label = f"{top * frac:.3g}"
        at = min(width - len(label), max(0, round(frac * width) - (len(label) if frac == 1.0 else len(label) // 2)))
        cells[at : at + len(label)] = label
    return Text(" " * LABEL + "".join(cells) + " nats")


class LayersPane(Static):
    COMPONENT_CLASSES = {"layers--bar", "layers--title", "layers--muted"}

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes, markup=False)
        self._args: tuple[Run | None, int, int, str, BranchView | None, str | None] | None = None

    def on_resize(self) -> None:
        """Bars and the strip are sized to the pane: draw them again at its new width."""
        if self._args is not None:
            self.show(*self._args)

    def show(
        self,
        run: Run | None,
        branch_id: int,
        position: int,
        metric: str,
        view: BranchView | None,
        unavailable: str | None = None,
    ) -> None:
        """`view`: the token stream's view of the branch, whose metric levels the strip pools.
        `unavailable`: why there are no lens values (the intermediate layers are then greyed out
        with that reason instead of looking pending)."""
        self._args = (run, branch_id, position, metric, view, unavailable)
        if run is None or position < 0 or position >= run.length(branch_id):
            self.update(Text("no token under the cursor"), layout=False)
            return
        title = self.get_component_rich_style("layers--title", partial=True)
        muted = self.get_component_rich_style("layers--muted", partial=True)
        bar_style = self.get_component_rich_style("layers--bar", partial=True)
        step = run.step(branch_id, position)
        inner = self.content_region.width or 40
        width = max(4, inner - LABEL - 5)
        top = math.log(max(2, run.meta.vocab_size))  # the most entropy V tokens allow
        lines = [Text(f"lens entropy per layer · pos {position}", style=title)]
        if unavailable:
            lines.append(Text(sanitize(unavailable), style=muted))
        for layer, h in enumerate(step.layer_entropy.tolist(), start=1):
            if math.isnan(h) and unavailable:
                lines.append(Text(f"L{layer:<3} {'–':>6}", style=muted))
            elif math.isnan(h):
                lines.append(Text(f"L{layer:<3} {'…':>6}", style=muted))
            else:
                lines.append(Text(f"L{layer:<3} {h:6.3f} ") + Text(bar(h / top, width), style=bar_style))
        lines.append(axis(top, width))
        lines.append(Text(f"one scale: 0 … ln V, V = {run.meta.vocab_size:,}", style=muted))
        if view is not None:
            lines.append(Text(f"{metric} along the branch", style=title))
            lines.append(sparkline(view.pooled_levels(max(10, inner)), len(view.levels), position))
        self.update(Group(*lines), layout=False)
