"""The token stream: every token of the current branch coloured by the selected metric, with a
cursor. A Line API ScrollView: only visible lines are drawn, and drawn lines are cached, so a
100k-token run scrolls and moves its cursor without redrawing what is off screen.

With an attribution on show (`set_overlay`) the positions before its target are coloured by their
scores instead (tui/heat.py), the target is marked and the positions after it are dim."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tokentui.tui.actions import STREAM, bindings
from tokentui.tui.theme import DARK_DIVERGING, DEFAULT_SCALE, DivergingScale, MetricScale
from tokentui.tui.widgets.styles import part_style

if TYPE_CHECKING:  # the explorer's first frame is drawn before numpy (under BranchView) is imported
    from textual import events

    from tokentui.tui.heat import Shown
    from tokentui.tui.view import BranchView


# Why [ ] { } ( ) find nowhere to go on a branch (view.uncertain_mask is empty there)
NOWHERE_NOW = {  # (some on the branch, none further that way)
    "rank": "no token the model did not rank first",
    "entropy": "no high-entropy token",
    "kl": "no position of high KL(A‖B)",
}
NOWHERE = {
    "rank": "every token of this branch's answer (a scored text: all of it) was the model's first choice (rank 1): "
    "nothing for [ ] to find",
    "entropy": "no high-entropy token in this branch's answer (a scored text: all of it): its entropy is 0 there",
    "kl": "the two models do not differ on this branch: KL(A‖B) is 0 at every position (the same model twice?)",
}

UNCOMPARED = "no position of this branch was compared under model B (a steered branch is not)"


class TokenStream(ScrollView, can_focus=True):
    """Shows a BranchView; posts CursorMoved when the cursor changes."""

    BINDINGS = bindings(STREAM)
    COMPONENT_CLASSES = {"token-stream--target"}  # an attribution's target token

    class CursorMoved(Message):
        def __init__(self, stream: TokenStream, position: int) -> None:
            super().__init__()
            self.stream, self.position = stream, position

        @property
        def control(self) -> TokenStream:
            return self.stream

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: BranchView | None = None
        self.cursor = 0
        self.follow = True  # keep the cursor on the newest token while generating
        self.scale: MetricScale = DEFAULT_SCALE
        self.diverging: DivergingScale = DARK_DIVERGING
        self.no_color = False
        self.overlay: Shown | None = None  # the attribution on show, if any
        self._target_style: Style | None = None  # its target's style (from the CSS), once a redraw
        self._strips: OrderedDict[int, Strip] = OrderedDict()

    # --- data ---------------------------------------------------------------------------------
    def show(self, view: BranchView, cursor: int | None = None) -> None:
        self.view = view
        view.set_width(self.text_width())
        self.cursor = max(0, min(len(view) - 1, cursor if cursor is not None else len(view) - 1))
        self.follow = self.cursor >= len(view) - 1
        self._invalidate()
        self._scroll_to_cursor()
        self.post_message(self.CursorMoved(self, self.cursor))

    def update_view(self) -> None:
        """The run grew (or its values changed): catch up, keep following if we were."""
        if self.view is None:
            return
        before = len(self.view)
        self.view.sync()
        if self.follow and len(self.view) != before:
            self.cursor = len(self.view) - 1
            self._scroll_to_cursor()
            self.post_message(self.CursorMoved(self, self.cursor))
        self._invalidate()

    def set_scale(self, scale: MetricScale, no_color: bool, diverging: DivergingScale = DARK_DIVERGING) -> None:
        self.scale, self.no_color, self.diverging = scale, no_color, diverging
        self._invalidate()

    def set_overlay(self, shown: Shown | None) -> None:
        """Colour by this attribution (None: by the metric again)."""
        self.overlay = shown
        self._invalidate()

    def restyle(self) -> None:
        if self.view is not None:
            self.view.levels = self.view.metric_levels()
        self._invalidate()

    def text_width(self) -> int:
        """Columns a line of tokens may fill (BranchView lays its lines out to this). The vertical
        scrollbar's columns are always kept free: a layout made while the text still fitted would
        otherwise run under the scrollbar once a resize makes it appear."""
        width = self.content_region.width or self.size.width or 80
        return max(8, width - self.styles.scrollbar_size_vertical)

    def _invalidate(self) -> None:
        self._strips.clear()
        self._target_style = None
        if self.view is not None:
            self.virtual_size = Size(self.view.width, self.view.n_lines)
        self.refresh()

    def on_resize(self) -> None:
        if self.view is not None:
            self.view.set_width(self.text_width())
            self._invalidate()
            self._scroll_to_cursor()

    # --- drawing ------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        line = scroll_y + y
        width = self.scrollable_content_region.width
        view = self.view
        if view is None or line >= view.n_lines:
            return Strip.blank(width, self.rich_style)
        strip = self._strips.get(line)
        if strip is None:
            strip = self._draw(line)
            self._strips[line] = strip
            if len(self._strips) > 512:
                self._strips.popitem(last=False)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _style(self, view: BranchView, i: int, base: Style) -> Style:
        """Token i's style on top of the widget's own `base` (rich_style: costly, so once a line)."""
        if self.overlay is not None:
            return self._attribution_style(i, base)
        style = base + self.scale.style(float(view.levels[i]), self.no_color)
        kind = view.kinds[i] if i < len(view.kinds) else 2
        if kind == 0:
            style += Style(dim=True)
        elif kind == 1:  # forced; under NO_COLOR underline is a metric step, so italic alone
            style += Style(italic=True) if self.no_color else Style(italic=True, underline=True)
        if i % 2 and not self.no_color:
            style += Style(bold=True)  # alternate weight: token boundaries stay visible
        if i == self.cursor:
            style += self._cursor_style
        return style

    @property
    def _cursor_style(self) -> Style:
        """Reverse bold; without colour also italic and underlined — reverse bold alone was the top
        bucket's style there (now reverse alone), and a cursor on an uncertain token did not show.
        Without colour the cursor's cell differs from every other token's in being reversed or in
        two other attributes (a forced top-bucket token is reverse italic: bold alone, faint on a
        reversed cell, told them apart)."""
        return (
            Style(reverse=True, bold=True, italic=True, underline=True)
            if self.no_color
            else Style(reverse=True, bold=True)
        )

    def target_style(self) -> Style:
        """How an attribution's target token is marked (the legend shows it too)."""
        if self._target_style is None:
            target = part_style(self, "token-stream--target")
            # without colour the target is reversed and underlined, not bold (the cursor: reversed,
            # bold, italic, underlined — two attributes apart)
            no_color = Style(reverse=True, underline=True, bold=False)
            self._target_style = target + no_color if self.no_color else target
        return self._target_style

    def _attribution_style(self, i: int, base: Style) -> Style:
        """Token i's style while an attribution is on show: its score's, the target's mark, or dim."""
        shown = self.overlay
        assert shown is not None
        if i == shown.position:
            style = base + self.target_style()
        else:
            style = base + shown.style(i, self.scale, self.diverging, self.no_color)
            if i % 2 and not self.no_color and i < shown.position:
                style += Style(bold=True)  # alternate weight: token boundaries stay visible
        if i == self.cursor:
            style += self._cursor_style
        return style

    def _draw(self, line: int) -> Strip:
        view = self.view
        assert view is not None  # render_line draws only when there is a view
        start, end = view.line_range(line)
        owner, carried = view.carried(line)
        base = self.rich_style
        segs = [Segment(carried, self._style(view, owner, base))] if carried else []
        for i in range(start, end):
            text = view.texts[i]
            if i == self.cursor:
                text = text or " "  # a token whose bytes are held back still shows the cursor
            segs.append(Segment(text, self._style(view, i, base)))
        return Strip(segs)

    def _refresh_token_lines(self, *tokens: int) -> None:
        for t in tokens:
            if self.view is not None and 0 <= t < len(self.view):
                line = self.view.line_of(t)
                # (a token's text after its newline opens the line of the token after it)
                last = self.view.line_of(t + 1) if self.view.tails[t] and self.view.newline[t] else line
                for ln in range(line, last + 1):
                    self._strips.pop(ln, None)
                    self.refresh_line(ln - self.scroll_offset.y)

    # --- cursor -------------------------------------------------------------------------------
    def move_to(self, pos: int) -> None:
        if self.view is None or not len(self.view):
            return
        pos = max(0, min(len(self.view) - 1, pos))
        old, self.cursor = self.cursor, pos
        self.follow = pos == len(self.view) - 1
        self._refresh_token_lines(old, pos)
        self._scroll_to_cursor()
        if old != pos:
            self.post_message(self.CursorMoved(self, pos))

    def _scroll_to_cursor(self) -> None:
        if self.view is None:
            return
        line = self.view.line_of(self.cursor)
        height = max(1, self.scrollable_content_region.height)
        y = self.scroll_offset.y
        if line < y:
            self.scroll_to(y=line, animate=False)
        elif line >= y + height:
            self.scroll_to(y=line - height + 1, animate=False)

    def action_cursor(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_word(self, direction: int) -> None:
        if self.view is not None:
            self.move_to(self.view.word_start(self.cursor, direction))

    def action_line(self, delta: int) -> None:
        if self.view is None or not len(self.view):
            return
        line = self.view.line_of(self.cursor)
        target = max(0, min(self.view.n_lines - 1, line + delta))
        step = 1 if delta > 0 else -1
        while not self.view.has_tokens(target) and 0 <= target + step < self.view.n_lines:
            target += step  # (a blank line holds no token to stand on)
        if not self.view.has_tokens(target):
            return
        start, end = self.view.line_range(line)
        col = self.view.indent(line) + sum(self.view.widths[start : self.cursor])
        t_start, t_end = self.view.line_range(target)
        pos, acc = t_start, self.view.indent(target)
        while pos < t_end - 1 and acc + self.view.widths[pos] <= col:
            acc += self.view.widths[pos]
            pos += 1
        self.move_to(pos)

    def action_page(self, direction: int) -> None:
        self.action_line(direction * max(1, self.scrollable_content_region.height - 1))

    def action_edge(self, direction: int) -> None:
        self.move_to(0 if direction < 0 else (len(self.view) - 1 if self.view else 0))

    def action_uncertain(self, direction: int, kind: str) -> None:
        if self.view is None:
            return
        if kind == "kl" and "kl_ab" not in self.view.run.layout.names:  # (not a silent key)
            self.app.notify("no second model in this run: B compares it with another model")
            return
        mask = self.view.uncertain_mask(kind)
        if not mask.any():  # (not a bare bell: say why there is nowhere to go)
            # (no value at all is not a KL of 0: the branch was not compared — steered, or cancelled)
            uncompared = kind == "kl" and not self.view.compared()
            self.app.notify(UNCOMPARED if uncompared else NOWHERE[kind])
            return
        target = self.view.next_where(self.cursor, direction, mask)
        if target is None:
            self.app.notify(f"{NOWHERE_NOW[kind]} {'after' if direction > 0 else 'before'} the cursor", markup=False)
        else:
            self.move_to(target)

    def on_click(self, event: events.Click) -> None:
        """Put the cursor on the clicked token."""
        if self.view is None:
            return
        offset = event.get_content_offset(self)
        if offset is None:
            return
        line = self.scroll_offset.y + offset.y
        if line >= self.view.n_lines:
            return
        start, end = self.view.line_range(line)
        owner, carried = self.view.carried(line)
        col, x = cell_len(carried), offset.x + self.scroll_offset.x
        if x < col:
            self.move_to(owner)
            return
        for i in range(start, end):
            col += self.view.widths[i]
            if x < col:
                self.move_to(i)
                return
        self.move_to(end - 1)
