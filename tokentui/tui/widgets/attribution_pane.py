"""The attribution pane: what the attribution on show is (method, target — the token, or the token
vs an alternative —, the target's value: log p or the log p difference, integrated gradients'
completeness error Σ scores − (f(x) − f(0))) and its top contributing positions with their scores
and text bars, then the score of the position under the cursor. The bars carry the sizes also
without colour (NO_COLOR); tokens are shown on their own, escaped, whitespace visible."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from tokentui.tui.widgets.styles import part_style
from tokentui.tui.widgets.token_text import lone_id, quoted_id

if TYPE_CHECKING:  # the explorer's first frame is drawn before numpy (under these) is imported
    from tokentui.core.run import Run
    from tokentui.tui.heat import Shown
    from tokentui.tui.theme import DivergingScale, MetricScale


class AttributionPane(Static):
    COMPONENT_CLASSES = {
        "attribution-pane--title",
        "attribution-pane--muted",
        "attribution-pane--bar",
        "attribution-pane--negative",
        "attribution-pane--target",
    }

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes, markup=False)
        self._args: tuple[Run, Shown, int, MetricScale, DivergingScale, bool] | None = None
        self.lines: list[str] = []  # the plain text of the rows drawn last (for tests and screen readers)

    def on_resize(self) -> None:
        """Tokens and bars are sized to the pane: lay them out again at its new width."""
        if self._args is not None:
            self.show(*self._args)

    def clear(self) -> None:
        self._args = None
        self.lines = []
        self.update(Text(""), layout=False)

    def show(
        self, run: Run, shown: Shown, cursor: int, scale: MetricScale, diverging: DivergingScale, no_color: bool
    ) -> None:
        from tokentui.core.steering import steering_at
        from tokentui.tui.heat import cell_style, fmt_column, fmt_score, score_bar

        self._args = (run, shown, cursor, scale, diverging, no_color)
        title = part_style(self, "attribution-pane--title")
        muted = part_style(self, "attribution-pane--muted")
        bar_style = part_style(self, "attribution-pane--bar")
        negative = part_style(self, "attribution-pane--negative")
        target_style = part_style(self, "attribution-pane--target")
        rec, m, t = shown.record, shown.method, shown.position
        inner = max(20, self.content_region.width or 34)
        tok_w = max(6, min(16, inner // 3))

        head = Text(m.label, style=title)
        target = Text("target  ", style=muted)
        target.append(f"pos {t} ")
        target.append_text(quoted_id(run, rec.token_ids[shown.row_index], tok_w + 2, target_style))
        if rec.alternative is not None:  # why this and not that
            target.append(" vs ")
            target.append_text(quoted_id(run, rec.alternative, tok_w + 2, target_style))
        lines: list[Text] = [head, target]
        value = shown.target_value()
        if value is not None:
            what = "Δlog p  " if rec.alternative is not None else "log p   "
            lines.append(Text(what, style=muted) + Text(f"{value:.4g} nats"))
        if steering_at(run, shown.branch, t) is not None:  # attribution runs the model unsteered
            lines.append(Text("unsteered (token made steered)", style=muted))
        error = shown.completeness()
        if error is not None:
            lines.append(Text("completeness ", style=muted) + Text(f"{error:+.2g} · {rec.steps} steps"))
        signed = ("− italic" if no_color else "− blue, + orange") if m.signed else "bars: |score|"
        lines.append(Text(f"top {len(shown.top)} of {t} · {signed}", style=title))

        # rows: position, swatch (colour only), token, score, bar of |score| / the largest
        shown_scores = fmt_column([float(shown.scores[p]) for p in shown.top])
        score_w = max(map(len, shown_scores), default=1)
        bar_w = max(3, inner - 5 - (0 if no_color else 2) - tok_w - 1 - score_w - 1)
        seq = run.sequence(shown.branch)
        rows = Text()
        plain: list[str] = []
        for p, score in zip(shown.top, shown_scores, strict=True):
            s, level = float(shown.scores[p]), float(shown.levels[p])
            row = Text(f"{p:>4} ")
            if not no_color:
                row.append(" ", style=cell_style(level, m.signed, scale, diverging))
                row.append(" ")
            token = lone_id(run, int(seq[p]), tok_w)
            row.append_text(token)
            row.append(" " * max(0, tok_w - token.cell_len))
            row.append(f" {score:>{score_w}} ")
            row.append(score_bar(level, bar_w), style=negative if m.signed and s < 0 else bar_style)
            if no_color and m.signed and s < 0:
                row.stylize("italic")
            plain.append(row.plain.rstrip())
            rows.append_text(row)
            rows.append("\n")
        rows.rstrip()
        lines.append(rows)
        here = Text("cursor  ", style=muted)
        if cursor < t:
            place = shown.rank.get(cursor)
            here.append(f"pos {cursor} ")
            here.append_text(quoted_id(run, int(seq[cursor]), tok_w + 2))
            here.append(f" {fmt_score(float(shown.scores[cursor]))}")
            here.append(f" · #{place}" if place else "", style=muted)
        elif cursor == t:
            here.append("on the target")
        else:
            here.append("after the target (not attributed)", style=muted)
        lines.append(here)
        lines.append(Text("M: method · esc: back", style=muted))
        self.lines = plain
        self.update(Group(*lines), layout=False)
