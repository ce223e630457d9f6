"""The association matrix screen (`A`): what is attributed, a progress line while the engine
computes (escape cancels, keeping the rows done), then the heat map of output tokens × input
positions with its cursor cell's output token, input token and score on a line at the bottom.
Escape (once nothing runs) or q closes it. The explorer feeds it (tui/attribution.py): the
engine's progress, the record when it arrives, or a stored record at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from tokentui.tui.actions import MATRIX, bindings
from tokentui.tui.widgets.alternatives import bar
from tokentui.tui.widgets.heat_map import LABEL_TOKEN, SCREEN_ACTIONS, HeatMap
from tokentui.tui.widgets.token_text import lone_id

if TYPE_CHECKING:
    from tokentui.core.attribution import Attribution
    from tokentui.core.run import Run
    from tokentui.engine.events import AttributionProgress
    from tokentui.tui.theme import DivergingScale, MetricScale


class MatrixScreen(Screen[None]):
    BINDINGS = [b for b in bindings(MATRIX) if isinstance(b, Binding) and b.action in SCREEN_ACTIONS]
    AUTO_FOCUS = "#heatmap"

    def __init__(
        self,
        run: Run,
        branch: int,
        positions: list[int],
        method: str,
        look: tuple[MetricScale, DivergingScale, bool],
        on_cancel: Callable[[], None],
        cut: str = "",
        held: list[Attribution] | None = None,
    ) -> None:
        """`positions`: the output tokens asked for; `look`: (scale, diverging scale, no colour);
        `on_cancel`: stops the engine's job; `cut`: why fewer tokens than the range were taken;
        `held`: rows of `positions` the run holds already (records of them), shown with the rows
        computed (the engine computes the others)."""
        from tokentui.core.attribution import method as method_of

        super().__init__()
        self.run, self.branch, self.positions = run, branch, positions
        self.method = method_of(method)
        self.look = look
        self.on_cancel = on_cancel
        self.cut = cut
        self.computing = False
        self.record: Attribution | None = None
        self.held = held or []
        self.progress_line = ""

    def compose(self) -> ComposeResult:
        yield Static("", id="matrix-title", markup=False)
        yield Static("", id="matrix-progress", markup=False)
        yield HeatMap(id="heatmap")
        yield Static("", id="matrix-cell", markup=False)
        yield Static("", id="matrix-keys", markup=False)

    def on_mount(self) -> None:
        first, last = self.positions[0], self.positions[-1]
        title = (
            f"association matrix · {self.method.label} · branch #{self.branch} · output tokens {first}–{last} "
            f"({len(self.positions)}) × input positions 0–{last - 1}"
        )
        if self.cut:
            title += f" · {self.cut}"
        self.query_one("#matrix-title", Static).update(Text(title))
        self.query_one("#matrix-keys", Static).update(self._keys())
        self.query_one("#matrix-progress", Static).update(Text(self.progress_line))
        if self.record is not None:
            self._draw_record()

    def _keys(self) -> Text:
        scale, diverging, no_color = self.look
        text = Text("←→↑↓ hjkl PgUp PgDn home end: move · t: row's top · esc: cancel/close · q: close · ")
        if no_color:
            text.append("|score| ÷ row's max: ' ░▒▓█'")
        else:
            from tokentui.tui.heat import append_scale

            signed = self.method.signed
            append_scale(text, scale, diverging, signed, " (÷ row's max |score|)" if signed else " (÷ row's max)")
        return text

    @property
    def heat_map(self) -> HeatMap:
        return self.query_one(HeatMap)

    # --- fed by the explorer ------------------------------------------------------------------
    def started(self, rows: int) -> None:
        """The engine computes `rows` of them (the others are held)."""
        self.computing = True
        self._progress(f"computing {rows} rows{self._held_note()} … · escape cancels, keeping the rows done")

    def _held_note(self) -> str:
        n = sum(len(part.positions) for part in self.held)
        return f" ({n} stored)" if n else ""

    def progress(self, ev: AttributionProgress) -> None:
        self._progress(
            f"computing: {ev.done}/{ev.total} rows{self._held_note()} · {ev.fraction:.0%} {bar(ev.fraction, 20):<20} · "
            "escape cancels, keeping the rows done"
        )

    def finished(self, record: Attribution | None, cancelled: bool, seconds: float) -> None:
        """The engine's rows (None: cancelled before the first), shown with the rows held."""
        from tokentui.core.attribution import combined

        self.computing = False
        if record is None and not self.held:
            self._progress("cancelled before the first rows: nothing to show (escape closes)")
            return
        rows = 0 if record is None else len(record.positions)
        shown = combined([*self.held, *([] if record is None else [record])], self.branch)
        kept = f"{len(shown.positions)} of {len(self.positions)} rows"
        if cancelled:
            self._progress(f"cancelled: {kept} kept, stored with the run")
        else:
            self._progress(f"{rows} rows in {seconds:.1f}s{self._held_note()} · stored with the run")
        self.show_record(shown)

    def show_held(self, why: str) -> None:
        """Only the rows held: the others cannot be computed now (`why`: a replay, no model)."""
        from tokentui.core.attribution import combined

        shown = combined(self.held, self.branch)
        self._progress(f"{len(shown.positions)} of {len(self.positions)} rows, stored with the run · {why}")
        self.show_record(shown)

    def failed(self, message: str) -> None:
        self.computing = False
        self._progress(f"failed: {message}")

    def show_record(self, record: Attribution, stored: bool = False) -> None:
        self.record = record
        if stored:
            when = f" ({record.created[:19]})" if record.created else ""
            self._progress(f"stored with the run{when} · {len(record.positions)} rows")
        if self.is_mounted and self.is_attached:
            self._draw_record()

    def _progress(self, line: str) -> None:
        self.progress_line = line  # (drawn on mount when the screen is not up yet)
        if self.is_mounted and self.is_attached:
            self.query_one("#matrix-progress", Static).update(Text(line))

    def _draw_record(self) -> None:
        rec = self.record
        assert rec is not None
        scale, diverging, no_color = self.look
        labels = [lone_id(self.run, tid, LABEL_TOKEN) for tid in rec.token_ids]
        self.heat_map.set_data(rec.positions, labels, rec.scores, self.method.signed, scale, diverging, no_color)
        self._cell_line()

    def on_heat_map_cursor_moved(self) -> None:
        if self.is_attached:  # (not once the screen has closed)
            self._cell_line()

    def _cell_line(self) -> None:
        from tokentui.core.attribution import normalized
        from tokentui.tui.heat import fmt_score

        cell, rec = self.heat_map.cell, self.record
        if cell is None or rec is None:
            return
        out, inp, score = cell
        row = self.heat_map.row
        seq = self.run.sequence(rec.branch)
        share = float(normalized(rec.scores[row : row + 1, :out])[0, inp])
        line = Text(f"output {out} ")
        line.append_text(lone_id(self.run, rec.token_ids[row], 16))
        line.append(f" ← input {inp} ")
        line.append_text(lone_id(self.run, int(seq[inp]), 16))
        # (the share is of the row's Σ|score|, seed 004's normalisation; the colours are ÷ the row's
        # largest, as the legend says: "of the row" alone read as the colour's scale)
        line.append(f" · score {fmt_score(score)} · {share:.1%} of Σ|row|")  # (one line at 80 columns)
        self.query_one("#matrix-cell", Static).update(line)

    # --- keys (the action table's matrix rows; the heat map moves its own cursor) ---------------
    def action_escape(self) -> None:
        if self.computing:
            self.on_cancel()
            self._progress("cancelling …")
        else:
            self.dismiss()

    def action_close(self) -> None:
        if self.computing:
            self.on_cancel()
        self.dismiss()
