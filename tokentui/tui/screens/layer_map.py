"""The layer map screen (`Z`): one per-layer measure as a heat map of layers (rows, 1 … L; L is the
model's own distribution) × the branch's positions (columns), coloured on the theme's scale from
sure to unsure (tui/layer_data.py sets each measure's range), the cursor cell marked and its layer,
position, token and value on a line under the map.

Its cursor column is the tokens pane's cursor: moving it moves the stream's (so the layers pane
and the status bar follow, and closing leaves the cursor there), and the explorer calls `follow`
whenever the stream's cursor, branch or values change (tokens streaming in, the lens arriving).
The map covers the branch, at most WINDOW positions around the cursor, scrolled to it; the
HeatMap draws only its visible part. `Y` (the app's) switches the measure; escape, q or Z close."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from tokentui.tui.actions import MATRIX, bindings
from tokentui.tui.widgets.heat_map import SCREEN_ACTIONS, HeatMap
from tokentui.tui.widgets.token_text import lone_id

if TYPE_CHECKING:
    import numpy as np

    from tokentui.core.run import Run
    from tokentui.tui.theme import DivergingScale, MetricScale

WINDOW = 2048  # positions at most in the map: the cursor's neighbourhood of a very long branch
CORNER = "L╲pos"


class LayerMapScreen(Screen[None]):
    BINDINGS = [b for b in bindings(MATRIX) if isinstance(b, Binding) and b.action in SCREEN_ACTIONS]
    APP_ACTIONS = frozenset({"cycle_layer_measure", "layer_map"})  # Y switches the measure, Z closes
    AUTO_FOCUS = "#layer-map"

    def __init__(
        self,
        run: Run,
        branch: int,
        measure: str,
        position: int,
        look: tuple[MetricScale, DivergingScale, bool],
        on_move: Callable[[int], None],
    ) -> None:
        """`position`: the stream's cursor; `on_move(p)`: put the stream's cursor on position p."""
        super().__init__()
        self.run, self.branch, self.measure, self.position = run, branch, measure, position
        self.look, self.on_move = look, on_move
        self.lo = self.hi = 0  # the positions in the map: lo … hi − 1
        self.values: np.ndarray | None = None  # [L, hi − lo]
        self.layer_row = run.n_layers - 1  # the cursor's row (the model's own layer at first)

    def compose(self) -> ComposeResult:
        yield Static("", id="layer-map-title", markup=False)
        yield Static("", id="layer-map-definition", markup=False)
        yield HeatMap(id="layer-map")
        yield Static("", id="layer-map-cell", markup=False)
        yield Static("", id="layer-map-keys", markup=False)

    def on_mount(self) -> None:
        self.draw()

    @property
    def heat_map(self) -> HeatMap:
        return self.query_one(HeatMap)

    # --- fed by the explorer --------------------------------------------------------------------
    def follow(self, run: Run, branch: int, position: int) -> None:
        """The stream's run, branch and cursor now (values may have arrived too): draw again."""
        self.run, self.branch, self.position = run, branch, position
        if self.is_mounted:
            self.draw()

    def set_measure(self, measure: str) -> None:
        self.measure = measure
        if self.is_mounted:
            self.draw()

    # --- drawing --------------------------------------------------------------------------------
    def window(self) -> tuple[int, int]:
        """The positions the map shows: the whole branch, or WINDOW of them around the cursor
        (kept while the cursor stays inside, so the map does not jump at every step)."""
        n = self.run.length(self.branch)
        if n <= WINDOW:
            return 0, n
        if self.lo <= self.position < self.hi and self.hi - self.lo == WINDOW:
            return self.lo, self.hi
        lo = max(0, min(self.position - WINDOW // 2, n - WINDOW))
        return lo, lo + WINDOW

    def draw(self) -> None:
        from tokentui.tui import layer_data

        run, name = self.run, self.measure
        vocab = run.meta.vocab_size
        self.lo, self.hi = self.window()
        if name not in layer_data.available(run.layout.names):
            name = self.measure = "layer_entropy"
        column = run.column(self.branch, layer_data.source(name))[self.lo : self.hi]
        entropy = run.column(self.branch, "entropy")[self.lo : self.hi]
        self.values = layer_data.grid(column, name, vocab, entropy)
        levels = layer_data.levels(self.values, name, vocab)
        info, unit = layer_data.INFO[name], layer_data.unit(name)
        title = (
            f"layer map · {info.label}{f' ({unit})' if unit else ''} · branch #{self.branch} · layers 1–{run.n_layers} "
            f"(L = the model's own) × positions {self.lo}–{self.hi - 1}"
        )
        self.query_one("#layer-map-title", Static).update(Text(title))
        definition = f"{info.definition} · colour: {info.scale}"
        lacking = layer_data.missing(run.layout.names)
        if lacking:
            definition += " · not in this run: " + ", ".join(layer_data.INFO[m].label for m in lacking)
        self.query_one("#layer-map-definition", Static).update(Text(definition))
        self.query_one("#layer-map-keys", Static).update(self._keys())
        numbers = [f"L{layer:<4} " for layer in range(1, run.n_layers + 1)]
        labels = [Text("") for _ in numbers]
        cursor = (self.layer_row, self.position - self.lo)
        self.heat_map.set_grid(numbers, labels, self.values, levels, self.lo, CORNER, self.look, cursor)
        self._cell_line()

    def _keys(self) -> Text:
        from tokentui.tui.heat import SHADES

        scale, _diverging, no_color = self.look
        text = Text("←→ hl: token (the tokens' cursor) · ↑↓ kj: layer · PgUp PgDn home end · t: least sure · "
                    "Y: measure · esc q Z: close · sure ")  # fmt: skip
        if no_color:
            text.append(f"'{SHADES}'")
        else:
            n = len(scale.backgrounds)
            for i in range(n):
                text.append(" ", style=scale.style((i + 0.5) / n))
        text.append(" unsure · ")
        text.append("·", style="dim bold")
        text.append(" no value")
        return text

    def _cell_line(self) -> None:
        from tokentui.tui import layer_data

        cell, values = self.heat_map.cell, self.values
        if cell is None or values is None:
            return
        row, col, value = cell
        pos = self.lo + col
        line = Text(f"layer {row + 1} · pos {pos} ")
        line.append_text(lone_id(self.run, int(self.run.sequence(self.branch)[pos]), 16))
        name = self.measure
        line.append(f" · {layer_data.INFO[name].label} {layer_data.fmt(value, name)} {layer_data.unit(name)}".rstrip())
        self.query_one("#layer-map-cell", Static).update(line)

    def on_heat_map_cursor_moved(self) -> None:
        if not self.is_attached or self.values is None:  # (not once the screen has closed)
            return
        self.layer_row = self.heat_map.row
        pos = self.lo + self.heat_map.col
        if pos != self.position:
            self.position = pos
            self.on_move(pos)
        self._cell_line()

    # --- keys (escape and q: the action table's matrix rows; the map moves its own cursor) -------
    def action_escape(self) -> None:
        self.dismiss()

    def action_close(self) -> None:
        self.dismiss()
