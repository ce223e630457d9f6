"""The legend under the tokens: what the colours (or, under NO_COLOR, the text styles) of the
current metric mean, and how prompt and forced tokens look; with an attribution on show, which one
and its scale instead. Its parts are joined by " · " and a line breaks between two parts, never
inside one where it fits, so no line ends on a stray separator; it wraps rather than being cut off."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from tokentui.tui.theme import DivergingScale, MetricScale
from tokentui.tui.widgets.parts import join_parts

if TYPE_CHECKING:
    from tokentui.core.run import Run
    from tokentui.tui.heat import Shown


def no_color_steps(scale: MetricScale) -> list[Style]:
    """The distinct styles MetricScale gives tokens under NO_COLOR, from sure to unsure."""
    n = len(scale.backgrounds)
    steps: list[Style] = []
    for i in range(n):
        style = scale.style((i + 0.5) / n, True)
        if not steps or steps[-1] != style:
            steps.append(style)
    return steps


def style_name(style: Style) -> str:
    if style.reverse:
        return "reverse"
    return " ".join(w for w, on in (("bold", style.bold), ("underline", style.underline)) if on) or "plain"


class Legend(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self._parts: list[Text] = []
        self._split: list[Text] = []  # the first part as two: for a line too narrow for it

    def _show(self, parts: list[Text], split: tuple[Text, Text] | None = None) -> None:
        self._parts = parts
        self._split = [*split, *parts[1:]] if split is not None else []
        self._draw()

    def on_resize(self) -> None:
        self.call_after_refresh(self._draw)  # (after this layout pass: see SettingsLine.on_resize)

    def _draw(self) -> None:
        width = self.content_region.width or 10**6
        # (a metric's name and its scale wider than the line: on two lines, the scale whole — wrapped
        # inside, the scale's cells, being spaces, were lost at the break: Δ log p at 80 columns)
        parts = self._split if self._split and self._parts[0].cell_len > width else self._parts
        self.update(join_parts(parts, width))

    def show(self, metric: str, scale: MetricScale, no_color: bool) -> None:
        from tokentui.core.metrics import METRICS  # numpy: only once a run is read

        m = METRICS[metric]
        split: tuple[Text, Text] | None = None  # (name, scale): the legend as two parts, for a narrow line
        if m.buckets:  # each bucket in the style its tokens get, named
            legend = Text(f"{m.name} ")
            last = max(1, len(m.buckets) - 1)
            for i, name in enumerate(m.buckets):
                legend.append(" " if i else "")
                legend.append(f" {name} ", style=scale.style(i / last, no_color))
        else:
            title, ends = Text(f"{m.label} [{m.unit}]"), Text(f"{m.ends[0]} ")
            if no_color:  # no colours: the text styles from sure to unsure, each named in its own style
                steps = no_color_steps(scale)
                for i, style in enumerate(steps):
                    ends.append(style_name(style), style=style)
                    ends.append(" ▸ " if i < len(steps) - 1 else " ")
                ends.append(m.ends[1])
            else:  # the colour scale, one cell a step
                n = len(scale.backgrounds)
                for i in range(n):
                    ends.append(" ", style=scale.style((i + 0.5) / n, False))
                ends.append(f" {m.ends[1]}")
            split = (title, ends)
            legend = Text.assemble(title, " ", ends)
        forced = Style(italic=True) if no_color else Style(italic=True, underline=True)
        self._show(
            [legend, Text("prompt", style=Style(dim=True)), Text("forced", style=forced), Text("m: next metric")],
            split,
        )

    def show_attribution(
        self, run: Run, shown: Shown, scale: MetricScale, diverging: DivergingScale, no_color: bool, target: Style
    ) -> None:
        """'attribution: <method> of position t “tok”' and how its scores look (`target`: the
        target token's style in the stream)."""
        from tokentui.tui.heat import TOP, TOP_MARKED, append_scale
        from tokentui.tui.widgets.token_text import quoted_id

        rec, m = shown.record, shown.method
        legend = Text(f"attribution: {m.label} of position {shown.position} ")
        legend.append_text(quoted_id(run, rec.token_ids[shown.row_index], 18, Style(bold=True)))
        if rec.alternative is not None:
            legend.append(" vs ")
            legend.append_text(quoted_id(run, rec.alternative, 18, Style(bold=True)))
        key = Text()
        if no_color:
            key.append(f"top {TOP_MARKED}", style=Style(bold=True, underline=True))
            key.append(" ")
            key.append(f"top {TOP}", style=Style(bold=True))
            if m.signed:
                key.append(" ")
                key.append("negative", style=Style(italic=True))
        else:
            append_scale(key, scale, diverging, m.signed)
        self._show([legend, key, Text("target", style=target), Text("M: method"), Text("esc: back")])
