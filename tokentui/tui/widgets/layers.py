"""The layer view: logit-lens entropy per layer of the token under the cursor (horizontal bars),
and a strip of the selected metric over the branch's positions with the cursor marked."""

from __future__ import annotations

import math

import numpy as np
from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from tokentui.core.metrics import METRICS
from tokentui.core.run import Run
from tokentui.tui.widgets.alternatives import bar

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: np.ndarray, width: int, cursor: int | None) -> Text:
    """Values (0..1, NaN allowed) squeezed into `width` cells by max-pooling; cursor cell reversed."""
    text = Text()
    n = len(values)
    if n == 0 or width <= 0:
        return text
    cells = min(width, n)
    edges = np.linspace(0, n, cells + 1).astype(int)
    cur_cell = None if cursor is None else min(cells - 1, int(cursor * cells / n))
    for c in range(cells):
        chunk = values[edges[c] : max(edges[c] + 1, edges[c + 1])]
        chunk = chunk[np.isfinite(chunk)]
        ch = " " if not chunk.size else SPARK[min(7, int(chunk.max() * 8))]
        text.append(ch, style="reverse bold" if c == cur_cell else "")
    return text


class LayersPane(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)

    def show(self, run: Run | None, branch_id: int, position: int, metric: str) -> None:
        if run is None or position < 0 or position >= run.length(branch_id):
            self.update(Text("no token under the cursor"))
            return
        step = run.step(branch_id, position)
        width = max(10, (self.size.width or 40) - 16)
        lines = [Text(f"lens entropy per layer · pos {position}", style="bold")]
        ent = step.layer_entropy
        top = max(1e-9, float(np.nanmax(ent))) if np.isfinite(ent).any() else 1.0
        for layer, h in enumerate(ent.tolist(), start=1):
            if math.isnan(h):
                lines.append(Text(f"L{layer:<3} {'…':>6}", style="dim"))
            else:
                lines.append(Text(f"L{layer:<3} {h:6.3f} ") + Text(bar(h / top, width), style="magenta"))
        m = METRICS[metric]
        values = m.normalized(m.compute(lambda name: run.column(branch_id, name)))
        lines.append(Text(f"{m.name} over the branch (tall = unsure)", style="bold"))
        lines.append(sparkline(values, max(10, (self.size.width or 40) - 2), position))
        self.update(Group(*lines))
