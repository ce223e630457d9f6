"""The layer view: one per-layer measure of the token under the cursor (entropy at first; `Y`
cycles through every measure the run has, stored or derived) as bars with its unit, one-line
definition and axis — on one scale for every token where the measure has a fixed range (entropy:
0 … ln V nats, the most a distribution over V tokens can have) — then each layer's top tokens with
their probabilities (the token taken highlighted), and a strip of the selected metric over the
branch's positions with the cursor marked. Token text only through the display sanitisers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tokentui.core.display import sanitize
from tokentui.tui.actions import LAYERS, bindings
from tokentui.tui.widgets.alternatives import bar
from tokentui.tui.widgets.styles import part_style

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


def axis(labels: tuple[str, str, str], width: int, unit: str) -> Text:
    """Tick labels under bars of `width` cells: the range's start, end and (where it fits with a
    gap on both sides) middle."""
    cells = [" "] * width
    start, middle, end = labels
    cells[: len(start)] = start[:width]
    at_end = max(len(start) + 1, width - len(end))
    cells[at_end : at_end + len(end)] = end
    at = round(width / 2) - len(middle) // 2
    if at > len(start) and at + len(middle) < at_end:
        cells[at : at + len(middle)] = middle
    return Text(" " * LABEL + "".join(cells) + f" {unit}")


TOKEN = 7  # cells of a token in the top-tokens table
ENTRY = TOKEN + 6  # "token 0.31 "


class LayersScroll(VerticalScroll, can_focus=True, inherit_bindings=False):
    """The side pane holding the layers pane: it scrolls (a model's 30 layers, the axis, the top
    tokens per layer and the metric strip are taller than the pane). Focus it (tab or click) to
    scroll it with ↑↓ / kj, PgUp PgDn, home end / g G — the keys of the action table's layers
    scope, no others (a Static cannot scroll its own text: Textual scrolls containers)."""

    BINDINGS = bindings(LAYERS)

    def compose(self) -> ComposeResult:
        yield LayersPane(id="layers-body")


class LayersPane(Static):
    """`measure`: the per-layer measure on show (Y cycles it: tui/layers_view.py); the run's
    measures and values come from tui/layer_data.py. Its height is its text's; the LayersScroll
    around it scrolls it."""

    COMPONENT_CLASSES = {"layers--bar", "layers--title", "layers--muted", "layers--chosen"}

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes, markup=False)
        self._args: tuple[Run | None, int, int, str, BranchView | None, str | None] | None = None
        self.measure = "layer_entropy"
        self._shape: tuple[int, ...] = ()  # the widths of the lines drawn last: a new height needs a layout
        self._run_id: int | None = None  # id() of the run drawn last: another starts at the pane's top

    def _draw(self, lines: list[Text]) -> None:
        """Show `lines`. The pane is as tall as its text, so a layout (which resizes it and the
        scrolled area) is asked for only when the lines may wrap to another height: a cursor move
        mostly changes values, not line lengths. A line that fits the width is one row whatever
        its length; a longer one may wrap to more, by its words."""
        width = self.content_region.width
        shape = (width, *(0 if line.cell_len <= width else line.cell_len for line in lines))
        layout, self._shape = shape != self._shape, shape
        self.update(Group(*lines), layout=layout)

    def visible_height(self) -> int:
        """Rows of the pane on screen at once (its scroll container's)."""
        parent = self.parent
        if isinstance(parent, LayersScroll):
            return parent.scrollable_content_region.height
        return self.content_region.height

    def on_resize(self) -> None:
        """Bars and the strip are sized to the pane: draw them again at its new width."""
        if self._args is not None:
            self.show(*self._args)

    def redraw(self) -> None:
        """Draw again what was last shown (the measure changed)."""
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
        if id(run) != self._run_id:  # (another run: from the top, where the title says what the numbers are —
            # a trial's pane, scrolled down on one run, opened the next at "L29 3.020" with no title)
            self._run_id = id(run)
            if isinstance(self.parent, LayersScroll):
                self.parent.scroll_home(animate=False)
        if run is None or position < 0 or position >= run.length(branch_id):
            self._draw([Text("no token under the cursor")])
            return
        from tokentui.tui import layer_data

        title = part_style(self, "layers--title")
        muted = part_style(self, "layers--muted")
        bar_style = part_style(self, "layers--bar")
        names = run.layout.names
        has = layer_data.available(names)
        if self.measure not in has:  # another run on show
            self.measure = has[0] if has else "layer_entropy"
        name, vocab = self.measure, run.meta.vocab_size
        info = layer_data.INFO[name]
        step = run.step(branch_id, position)
        inner = self.content_region.width or 40
        width = max(4, inner - LABEL - 5)
        values = layer_data.values_at(step.values, name, vocab)
        finite = values[values == values]
        fractions = layer_data.levels(values, name, vocab, sure_first=False)
        unit = layer_data.unit(name)
        shown = f"lens {info.label}" if name == "layer_entropy" else info.label
        lines = [Text(f"{shown} per layer · pos {position} · Y {has.index(name) + 1}/{len(has)}", style=title)]
        lines.append(Text(f"{info.definition} · {unit}" if unit else info.definition, style=muted))
        if "matmul in bfloat16" in run.meta.lens:  # (a trial compared with a float32 lens and wondered)
            lines.append(Text("lensed in bfloat16 (--lens-precision float32: exact)", style=muted))
        if unavailable:
            lines.append(Text(sanitize(unavailable), style=muted))
        for layer, (v, f) in enumerate(zip(values.tolist(), fractions.tolist(), strict=True), start=1):
            if math.isnan(v):
                lines.append(Text(f"L{layer:<3} {'–' if unavailable else '…':>6}", style=muted))
            else:
                lines.append(Text(f"L{layer:<3} {layer_data.fmt(v, name):>6} ") + Text(bar(f, width), style=bar_style))
        largest = float(finite.max()) if finite.size else math.nan
        per_token = name in ("layer_kl_final", "attention_entropy")  # no fixed range
        lines.append(axis(layer_data.axis_labels(name, vocab, largest), width, unit))
        if per_token:
            lines.append(Text("scale: 0 … this token's largest", style=muted))
        else:
            lines.append(Text(f"one scale for every token, V = {vocab:,}", style=muted))
        lines += self._top_tokens(run, step.token_id, step.values, inner, title, muted)
        lacking = layer_data.missing(names)
        if lacking:
            lines.append(Text("not in this run: " + ", ".join(layer_data.INFO[m].label for m in lacking), style=muted))
        if view is not None:
            lines.append(Text(f"{metric} along the branch", style=title))
            lines.append(sparkline(view.pooled_levels(max(10, inner)), len(view.levels), position))
        if len(values) + 2 > (self.visible_height() or len(lines)):  # not every layer on show at once
            lines[0].append(" · Z: every layer", style=muted)
        self._draw(lines)

    def _top_tokens(
        self, run: Run, chosen: int, values: Mapping[str, Any], inner: int, title: Style, muted: Style
    ) -> list[Text]:
        """The tuned-lens table: each layer's most likely tokens with their probabilities, the
        token taken at this position highlighted wherever it appears."""
        import numpy as np

        from tokentui.tui.widgets.token_text import lone_id

        if "layer_topk_ids" not in values:
            return [Text("no top tokens per layer in this run (--lens-top 0)", style=muted)]
        ids = np.asarray(values["layer_topk_ids"])
        logprobs = np.asarray(values["layer_topk_logprobs"], dtype=np.float64)
        j = ids.shape[1] if ids.ndim == 2 else 0
        fit = max(1, min(j, (inner - 5) // ENTRY))
        mark = part_style(self, "layers--chosen")
        head = Text("top tokens per layer (p) · taken: ", style=title)
        head.append_text(lone_id(run, chosen, 16, mark))
        if fit < j:
            head.append(f" · first {fit} of {j}", style=muted)
        out = [head]
        for layer in range(ids.shape[0]):
            line = Text(f"L{layer + 1:<3} ")
            if ids[layer, 0] < 0:  # not lensed (yet)
                line.append("–", style=muted)
            for tid, lp in zip(ids[layer, :fit].tolist(), logprobs[layer, :fit].tolist(), strict=True):
                if tid < 0:
                    continue
                token = lone_id(run, tid, TOKEN, middle=True)  # (their ends tell "␠scatt…" apart)
                if tid == chosen:
                    token.stylize(mark)
                token.pad_right(TOKEN - token.cell_len)
                line.append_text(token)
                line.append(f" {math.exp(lp):.2f} ")
            out.append(line)
        return out
