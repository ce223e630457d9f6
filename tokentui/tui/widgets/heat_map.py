"""The association matrix as a terminal heat map: one row per output token (labelled with its
position and token), one cell per input position, coloured by the score's share of the row's
largest |score| (tui/heat.py; without colour, shade glyphs " ░▒▓█"), a header of input positions,
and a cursor cell. A Line API ScrollView: only the visible part of a 256 × 512 matrix is drawn;
the row labels and the header stay in place while the cells scroll under them.

`set_grid` shows any full grid of levels instead (the layer map screen: layers × positions, its
levels set by the caller); the keys and the drawing are the same."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tokentui.tui.actions import MATRIX, bindings
from tokentui.tui.theme import DARK_DIVERGING, DEFAULT_SCALE, DivergingScale, MetricScale
from tokentui.tui.widgets.styles import part_style

if TYPE_CHECKING:
    import numpy as np
    from textual import events

LABEL_TOKEN = 12  # cells of a row label's token
TICK = 10  # the header numbers every TICK input positions
CURSOR = "◆"  # the cursor cell (its score is on the line under the map)
SCREEN_ACTIONS = ("escape", "close")  # the matrix keys the screen handles; the map moves its cursor


class HeatMap(ScrollView, can_focus=True):
    """Rows `positions` (output tokens), columns 0 … max(positions) − 1 (inputs). Its keys (the
    action table's matrix rows) move the cursor cell; the scroll follows."""

    BINDINGS = [b for b in bindings(MATRIX) if isinstance(b, Binding) and b.action not in SCREEN_ACTIONS]

    COMPONENT_CLASSES = {"heat-map--label", "heat-map--header", "heat-map--cursor"}

    class CursorMoved(Message):
        def __init__(self, heat_map: HeatMap) -> None:
            super().__init__()
            self.heat_map = heat_map

        @property
        def control(self) -> HeatMap:
            return self.heat_map

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.positions: list[int] = []
        self.labels: list[Text] = []
        self.scores: np.ndarray | None = None  # [rows, width]
        self.levels: np.ndarray | None = None
        self.signed = False
        self.scale: MetricScale = DEFAULT_SCALE
        self.diverging: DivergingScale = DARK_DIVERGING
        self.no_color = False
        self.row = 0
        self.col = 0
        self.label_width = 0
        self.limits: list[int] = []  # each row's number of cells (attribution: its output position)
        self.numbers: list[str] = []  # each row's first 6 cells ("   30 ")
        self.first = 0  # the number of the first column (the header counts from it)
        self.corner = "out ╲ in"
        self.grid = False  # set_grid's data: `t` goes to the row's highest level
        self._labels: dict[int, list[Segment]] = {}  # row → its label's segments, once drawn

    # --- data ---------------------------------------------------------------------------------
    def set_data(
        self,
        positions: list[int],
        labels: list[Text],
        scores: np.ndarray,
        signed: bool,
        scale: MetricScale,
        diverging: DivergingScale,
        no_color: bool,
    ) -> None:
        """Show `scores` ([len(positions), ≥ max(positions)]; row r: output `positions[r]`) with
        the cursor on the last row's largest contributor."""
        from tokentui.tui.heat import levels

        self.positions, self.labels = list(positions), labels
        self.limits, self.numbers = list(positions), [f"{p:>5} " for p in positions]
        self.first, self.corner, self.grid = 0, "out ╲ in", False
        self.scores = scores
        self.levels = levels(scores, signed)
        self.signed, self.scale, self.diverging, self.no_color = signed, scale, diverging, no_color
        self._laid_out()
        self.row = len(positions) - 1
        self.to_top()
        self.call_after_refresh(self._scroll_to_cursor)  # once the new virtual size is laid out

    def set_grid(
        self,
        numbers: list[str],
        labels: list[Text],
        values: np.ndarray,
        levels: np.ndarray,
        first: int,
        corner: str,
        look: tuple[MetricScale, DivergingScale, bool],
        cursor: tuple[int, int],
    ) -> None:
        """Show a full grid: row r is `numbers[r]` (6 cells) and `labels[r]`, its cells
        `levels[r]` (0 … 1 on the theme's sequential scale, NaN dim) for columns `first`,
        `first` + 1, …; `values`: what `cell` reports; the cursor at (row, column index)."""
        rows, cols = levels.shape
        self.positions = list(range(rows))
        self.labels, self.numbers, self.limits = labels, numbers, [cols] * rows
        self.first, self.corner, self.grid = first, corner, True
        self.scores, self.levels, self.signed = values, levels, False
        self.scale, self.diverging, self.no_color = look
        self._laid_out()
        self.row = max(0, min(rows - 1, cursor[0]))
        self.col = max(0, min(cols - 1, cursor[1]))
        # scrolled now (the new virtual size is set: a map following streamed tokens drew its frame
        # before the scroll, with the cursor past the right edge) and again once it is laid out
        self._scroll_to_cursor(announce=False)
        self.call_after_refresh(self._scroll_to_cursor)

    def _laid_out(self) -> None:
        self._labels.clear()
        self.label_width = 6 + max((t.cell_len for t in self.labels), default=0) + 1
        self.virtual_size = Size(self.label_width + self.width_in_cells, len(self.positions) + 1)

    @property
    def width_in_cells(self) -> int:
        return max(self.limits) if self.limits else 0

    @property
    def cell(self) -> tuple[int, int, float] | None:
        """(output position, input position, score) under the cursor."""
        if self.scores is None or not self.positions:
            return None
        return self.positions[self.row], self.col, float(self.scores[self.row, self.col])

    # --- drawing ------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if self.scores is None or self.levels is None:
            return Strip.blank(width, base)
        scroll_x, scroll_y = int(self.scroll_offset.x), int(self.scroll_offset.y)
        cells = max(0, width - self.label_width)
        first, last = scroll_x, min(self.width_in_cells, scroll_x + cells)
        if y == 0:
            return self._header(first, last, width, base)
        r = scroll_y + y - 1
        if r >= len(self.positions):
            return Strip.blank(width, base)
        label_style = base + part_style(self, "heat-map--label")
        if r == self.row:
            label_style += Style(reverse=True)
        label = self.labels[r]
        segs = [Segment(self.numbers[r], label_style)]
        segs += [Segment(s.text, label_style + s.style if s.style else label_style) for s in self._label(r)]
        segs.append(Segment(" " * (self.label_width - 6 - label.cell_len), label_style))
        t = self.limits[r]
        row_levels = self.levels[r]
        cursor = part_style(self, "heat-map--cursor")
        for j in range(first, last):
            if j >= t:  # at and after the output token: nothing to attribute
                segs.append(Segment(" ", base))
                continue
            segs.append(self._cell(float(row_levels[j]), base, cursor if (r, j) == (self.row, self.col) else None))
        return Strip(segs).crop_extend(0, width, base)

    def _label(self, r: int) -> list[Segment]:
        if r not in self._labels:
            self._labels[r] = list(self.labels[r].render(self.app.console, end=""))
        return self._labels[r]

    def _cell(self, level: float, base: Style, cursor: Style | None) -> Segment:
        from tokentui.tui.heat import cell_style, shade

        if level != level:  # NaN (a grid's unknown value): a dim dot
            return Segment(CURSOR if cursor is not None else "·", base + Style(dim=cursor is None, bold=True))
        if self.no_color:
            return Segment(CURSOR, base + cursor) if cursor is not None else Segment(shade(level), base)
        style = base + cell_style(level, self.signed, self.scale, self.diverging)
        if cursor is not None:  # a mark in the scale's text colour: visible on every cell colour
            return Segment(CURSOR, style + Style(bold=True))
        return Segment(" ", style)

    def _header(self, first: int, last: int, width: int, base: Style) -> Strip:
        style = base + part_style(self, "heat-map--header")
        ticks = [" "] * (last - first)
        j = first + (-(first + self.first) % TICK)
        while j < last:
            label = str(j + self.first)
            at = j - first
            if at + len(label) <= len(ticks) and all(c == " " for c in ticks[max(0, at - 1) : at + len(label)]):
                ticks[at : at + len(label)] = label
            j += TICK
        segs = [Segment(f"{self.corner:<{self.label_width}}", style)]
        text = "".join(ticks)
        c = self.col - first
        if 0 <= c < len(text):
            segs += [
                Segment(text[:c], style),
                Segment(text[c] if text[c] != " " else "▼", style + Style(reverse=True)),
                Segment(text[c + 1 :], style),
            ]
        else:
            segs.append(Segment(text, style))
        return Strip(segs).crop_extend(0, width, base)

    # --- cursor -------------------------------------------------------------------------------
    def action_move(self, rows: int, cols: int) -> None:
        self.move(rows, cols)

    def action_page(self, direction: int) -> None:
        self.page(direction)

    def action_edge(self, direction: int) -> None:
        self.edge(direction)

    def action_top(self) -> None:
        self.to_top()

    def move(self, rows: int, cols: int) -> None:
        if not self.positions:
            return
        self.row = max(0, min(len(self.positions) - 1, self.row + rows))
        self.col = max(0, min(self.limits[self.row] - 1, self.col + cols))
        self._scroll_to_cursor()

    def page(self, direction: int) -> None:
        self.move(direction * max(1, self.scrollable_content_region.height - 2), 0)

    def edge(self, direction: int) -> None:
        """The row's first input (-1) or its last, the token just before the output (1)."""
        if self.positions:
            self.col = 0 if direction < 0 else self.limits[self.row] - 1
            self._scroll_to_cursor()

    def to_top(self) -> None:
        """The cursor on the row's largest contributor."""
        from tokentui.core.attribution import top_contributors

        if self.scores is None or not self.positions:
            return
        if self.grid:  # the row's highest level (the least sure cell)
            import numpy as np

            assert self.levels is not None
            row = self.levels[self.row]
            if np.isfinite(row).any():
                self.col = int(np.nanargmax(row))
                self._scroll_to_cursor()
            return
        t = self.positions[self.row]
        self.col = top_contributors(self.scores[self.row, :t], 1)[0]
        self._scroll_to_cursor()

    def _scroll_to_cursor(self, announce: bool = True) -> None:
        """Scroll the cursor cell into view; `announce`: post CursorMoved."""
        rows = max(1, self.scrollable_content_region.height - 1)
        cols = max(1, self.scrollable_content_region.width - self.label_width)
        x, y = int(self.scroll_offset.x), int(self.scroll_offset.y)
        if self.row < y:
            y = self.row
        elif self.row >= y + rows:
            y = self.row - rows + 1
        if self.col < x:
            x = self.col
        elif self.col >= x + cols:
            x = self.col - cols + 1
        self.scroll_to(x=x, y=y, animate=False, immediate=True)
        self.refresh()
        if announce:
            self.post_message(self.CursorMoved(self))

    def on_resize(self) -> None:
        if self.positions:
            self._scroll_to_cursor()

    def on_click(self, event: events.Click) -> None:
        """Put the cursor on the clicked cell."""
        offset = event.get_content_offset(self)
        if offset is None or not self.positions or offset.y < 1 or offset.x < self.label_width:
            return
        r = int(self.scroll_offset.y) + offset.y - 1
        j = int(self.scroll_offset.x) + offset.x - self.label_width
        if r < len(self.positions) and j < self.limits[r]:
            self.move(r - self.row, j - self.col)
