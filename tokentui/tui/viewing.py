"""The explorer's actions that change how the run looks: metric, theme, tokens or decoded text,
the help and messages screens; and applying the theme's metric scale to the stream and the legend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokentui.tui.theme import DARK_DIVERGING, DEFAULT_SCALE, DivergingScale, MetricScale
from tokentui.tui.widgets.legend import Legend

if TYPE_CHECKING:  # the app this is mixed into, for the type checker only (tui/host.py)
    from tokentui.tui.host import ExplorerHost

    _Base = ExplorerHost
else:
    _Base = object


class ViewActions(_Base):
    """Mixed into TokentuiApp (it provides stream, metric, themes_, no_color …)."""

    @property
    def scale(self) -> MetricScale:
        t = self.themes_.get(self.theme)
        return t.scale if t else DEFAULT_SCALE

    @property
    def diverging(self) -> DivergingScale:
        """The theme's scale for signed scores (attribution)."""
        t = self.themes_.get(self.theme)
        return t.diverging if t else DARK_DIVERGING

    def look(self) -> tuple[MetricScale, DivergingScale, bool]:
        """(scale, diverging scale, no colour): what the panes colour scores with."""
        return self.scale, self.diverging, self.no_color

    def apply_scale(self) -> None:
        self.stream.set_scale(self.scale, self.no_color, self.diverging)
        self.update_legend()
        if self.session.attribution is not None:  # (once the new theme's CSS is applied)
            self.call_after_refresh(self.refresh_attribution_pane)

    def update_legend(self) -> None:
        if self.run_obj is None:
            return  # nothing to colour yet, and the metrics need numpy: after the run is read
        shown = self.session.attribution
        if shown is not None:
            self.query_one(Legend).show_attribution(self.run_obj, shown, *self.look(), self.stream.target_style())
            return
        self.query_one(Legend).show(self.metric, self.scale, self.no_color)

    def action_cycle_metric(self) -> None:
        from tokentui.core.metrics import metric_order

        order = metric_order(self.run_obj.layout.names if self.run_obj is not None else ())
        self.metric = order[(order.index(self.metric) + 1) % len(order)] if self.metric in order else order[0]
        if self.stream.view is not None:
            self.stream.view.set_metric(self.metric)
        self.stream.restyle()
        self.update_legend()
        self.refresh_panes()

    def action_toggle_decoded(self) -> None:
        self.decoded = not self.decoded
        self.show_branch(self.branch_id, cursor=self.stream.cursor)
        self.stream.border_title = "decoded text" if self.decoded else "tokens"

    def action_cycle_theme(self) -> None:
        names = sorted(self.themes_)
        if not names:
            self.notify("no tokentui themes were loaded", markup=False)
            return
        i = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(i + 1) % len(names)]
        self.notify(f"theme: {self.theme}", markup=False)

    def watch_theme(self) -> None:
        if self.screen_stack:  # not while __init__ picks the first theme
            self.apply_scale()
            # the panes, the status bar and the settings line lay their styles into their text:
            # drawn again in the new theme's colours once its CSS applies
            self.call_after_refresh(self._redraw_styled_text)

    def _redraw_styled_text(self) -> None:
        self.update_settings_line()
        self.refresh_panes()

    def action_stats(self) -> None:
        """`S`: the Stats screen of the branch on show (screens/stats.py)."""
        from tokentui.tui.screens.stats import StatsScreen

        if self.run_obj is not None and not isinstance(self.screen, StatsScreen):
            self.push_screen(StatsScreen(self.run_obj, self.branch_id))

    def action_messages(self) -> None:
        """`N`: the session's notifications whole (screens/messages.py), and the status bar's text."""
        from tokentui.tui.screens.messages import MessagesScreen
        from tokentui.tui.widgets.status_bar import StatusBar

        if not isinstance(self.screen, MessagesScreen):
            self.push_screen(MessagesScreen(self.messages, self.query_one(StatusBar).whole))

    def action_help(self) -> None:
        """`?` / F1: the help screen; on it, F1 closes it (the app's F1 binding comes first, even
        from an input: it kept the help up, which the README says F1 closes)."""
        from tokentui.tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
        else:
            self.push_screen(HelpScreen())
