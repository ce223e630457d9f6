"""The status bar: what the explorer is doing, on which run and branch, saved or not, where the
cursor is. One line; when it does not fit, the least important parts go first (the model's
details before the run id, branch, saved state and position); a part that may be cut (the note:
the last job's outcome) is cut with … before it is dropped."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

from tokentui.core.display import sanitize
from tokentui.tui.widgets.styles import part_style


@dataclass(frozen=True)
class Part:
    text: str  # raw: sanitised here
    importance: int  # higher stays longer when the line is short
    component: str = ""  # a status-bar--* class styling it
    shrink: int = 0  # >0: when it is the least important left, cut it down to this many cells before dropping it


def fit(state: str, parts: list[Part], width: int) -> list[Part]:
    """The `parts` that fit `width` cells next to `state`, dropping the least important first
    (of equal ones, the first); a part that may shrink is cut with … instead, while it keeps
    its `shrink` cells (the last survivor is cut with … if it alone is too long)."""
    parts = list(parts)
    budget = width - cell_len(state) - 2

    def need(ps: list[Part]) -> int:
        return sum(cell_len(sanitize(p.text)) + 3 for p in ps)

    while parts and need(parts) > budget:
        if len(parts) == 1:
            break
        least = min(parts, key=lambda p: p.importance)
        room = cell_len(sanitize(least.text)) - (need(parts) - budget)
        if least.shrink and room >= least.shrink:
            cut = Text(sanitize(least.text))
            cut.truncate(room, overflow="ellipsis")
            # (a text ending in "…" of its own, cut there, read "……")
            parts[parts.index(least)] = replace(least, text=re.sub(r"[\s·…]+…$", "…", cut.plain))
            break
        parts.remove(least)
    return parts


class StatusBar(Static):
    COMPONENT_CLASSES = {"status-bar--state", "status-bar--dim", "status-bar--note"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self._state = ""
        self._parts: list[Part] = []

    def show(self, state: str, parts: list[Part]) -> None:
        self._state, self._parts = state, parts
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def fitted(self, width: int) -> list[Part]:
        return fit(self._state, self._parts, width)

    @property
    def whole(self) -> str:
        """Everything the bar holds, however narrow the terminal (the messages screen shows it)."""
        return " · ".join(sanitize(text) for text in [self._state, *(p.text for p in self._parts)])

    def _draw(self) -> None:
        width = self.content_region.width or 120
        t = Text()
        t.append(f" {self._state} ", style=part_style(self, "status-bar--state"))
        for i, p in enumerate(self.fitted(width)):
            style = part_style(self, p.component) if p.component else ""
            t.append("  " if i == 0 else " · ")
            t.append(sanitize(p.text), style=style)
        t.truncate(width, overflow="ellipsis")
        self.update(t, layout=False)
