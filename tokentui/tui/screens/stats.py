"""The Stats screen (`S`): seed 000's analysis of the run on show, from `core.stats` (the numbers of
`tokentui stats`): for the current branch's full sequence, or (`w`) the whole run, each token once;
`p` counts the prompt's scored positions too. Summary, GLTR ranks, the two plots by relative
position (plotext, drawn to the screen's width), the entropy deciles, the position bins and the
extreme tokens in their context. It needs no model, so a replay shows it too.

A modal screen: the explorer's own keys (generate, branch …) do not act behind it. Escape or `S`
closes it, `q` quits as everywhere, `X` saves an SVG screenshot of what it shows. Token text is
untrusted: every string reaches the screen as a `Text` built from sanitised strings, never as
markup."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tokentui.core.display import counted
from tokentui.tui.actions import ACTIONS, STATS, bindings, shown_keys
from tokentui.tui.widgets.styles import part_style
from tokentui.tui.widgets.token_text import lone

if TYPE_CHECKING:
    from tokentui.core.run import Run
    from tokentui.core.stats import PlotSpec, Report, Stats, Token

BAR_CELLS = 24


def key_line() -> str:
    """The screen's keys as its bindings have them (it said "q quit" where q closes it)."""
    own = [
        shown_keys(spec).replace("escape", "esc") + ("" if spec.textual else f" {spec.name}")  # (scrolling: keys alone)
        for spec in ACTIONS
        if spec.scope == STATS
    ]
    return " · ".join([*own, "X screenshot"])


class PlotView(Static):
    """A plotext plot drawn to the widget's own size (its height is app.tcss's), again whenever
    that changes."""

    def __init__(self, id: str) -> None:
        super().__init__("", id=id, classes="stats-plot", markup=False)
        self.spec: PlotSpec | None = None
        self._drawn = (0, 0)

    def show(self, spec: PlotSpec) -> None:
        self.spec = spec
        self._drawn = (0, 0)
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        width, height = self.content_size
        if self.spec is None or width <= 0 or height <= 0 or (width, height) == self._drawn:
            return  # (not laid out yet: the first Resize draws it)
        from tokentui.tui.plots import plot_text

        self._drawn = (width, height)
        self.update(Text(plot_text(self.spec, width, height)), layout=False)

    @property
    def text(self) -> str:
        """What the plot shows (for tests and screenshots' readers)."""
        return str(self.content)


FOLLOW_SECONDS = 1.0  # how often an open screen looks whether the run grew


class StatsScreen(ModalScreen[None]):
    # the explorer's keys do not reach a modal screen: X (screenshot) and ? (help) work here too
    BINDINGS = [
        *bindings(STATS),
        Binding("X", "app.screenshot", "screenshot"),
        Binding("question_mark", "app.help", "help"),
    ]
    AUTO_FOCUS = "#stats-body"
    COMPONENT_CLASSES = {"stats--title", "stats--muted", "stats--bar", "stats--token"}

    def __init__(self, run: Run, branch: int) -> None:
        super().__init__()
        self.run, self.branch = run, branch
        self.whole_run = False
        self.include_prompt = False
        self.report: Report | None = None
        self.error = ""
        self._steps = -1  # `_grown` when the numbers were computed

    def compose(self) -> ComposeResult:
        yield Static("", id="stats-title", markup=False)
        with VerticalScroll(id="stats-body"):
            yield Static("", id="stats-summary", markup=False)
            yield PlotView("stats-plot-entropy")
            yield PlotView("stats-plot-probability")
            yield Static("", id="stats-tables", markup=False)
        yield Static("", id="stats-keys", markup=False)

    def on_mount(self) -> None:
        self.query_one("#stats-keys", Static).update(Text(key_line()))
        self.refresh_stats()
        self.set_interval(FOLLOW_SECONDS, self._follow)

    def _follow(self) -> None:
        """Opened while tokens stream in, the screen kept the numbers of the moment it opened (a
        trial: "32 tokens" while the branch grew past 128): it counts them again as the run grows."""
        if self._grown() != self._steps:
            self.refresh_stats()

    def _grown(self) -> int:
        """How far what the screen counts has grown: the whole run's steps, or its branch's (a
        branch growing elsewhere changes nothing on show)."""
        return self.run.total_steps() if self.whole_run else self.run.length(self.branch)

    # --- keys (the action table's stats rows) -------------------------------------------------
    def action_toggle_scope(self) -> None:
        self.whole_run = not self.whole_run
        self.refresh_stats()

    def action_toggle_prompt(self) -> None:
        self.include_prompt = not self.include_prompt
        self.refresh_stats()

    def action_close(self) -> None:
        self.dismiss()

    # --- drawing --------------------------------------------------------------------------------
    @property
    def scope(self) -> str:
        return "whole run" if self.whole_run else f"branch #{self.branch}"

    def refresh_stats(self) -> None:
        from tokentui.core.stats import StatsError, forced_left_out, plots, stats_of

        self._steps = self._grown()
        try:
            self.report = stats_of(self.run, None if self.whole_run else self.branch, self.include_prompt)
            self.error = ""
        except StatsError as e:
            self.report, self.error = None, str(e)
        rep = self.report
        kinds = "+".join(rep.rows[0].source.kinds) if rep is not None else "–"
        out = forced_left_out([r.source for r in rep.rows]) if rep is not None else ""
        title = Text(  # (the note, when there is one, in the run id's place: one line at 80 columns)
            f"stats · {self.scope} · {kinds} tokens{out or f' · run {self.run.id}'}",
            style=part_style(self, "stats--title"),
        )
        self.query_one("#stats-title", Static).update(title)
        if rep is None or not rep.all.summary.tokens:
            why = self.error or f"no {kinds} tokens on {self.scope}: w switches scope, p counts the prompt too"
            self.query_one("#stats-summary", Static).update(Text(why))
            self.query_one("#stats-tables", Static).update(Text(""))
            for view in self.query(PlotView):
                view.display = False
            return
        specs = {s.name: s for s in plots(rep.all)}
        for view, name in zip(self.query(PlotView), ("entropy_by_position", "probability_by_position")):
            view.display = True
            view.show(specs[name])
        self.query_one("#stats-summary", Static).update(self._summary(rep.all))
        self.query_one("#stats-tables", Static).update(self._tables(rep))

    def _muted(self) -> str:
        return str(part_style(self, "stats--muted"))

    def _summary(self, st: Stats) -> RenderableType:
        from tokentui.core.stats import RANK_LABELS, fmt, fmt_pct

        s, muted = st.summary, self._muted()
        grid = Table.grid(padding=(0, 1))
        grid.add_column()
        for _ in range(5):
            grid.add_column(justify="right")
        heads = [Text(h, style=muted) for h in ("mean", "median", "std", "min", "max")]
        grid.add_row(Text(counted(s.tokens, "token"), style="bold"), *heads)
        for name, sp in (("entropy H (nats)", s.entropy), ("p(chosen)", s.probability)):
            grid.add_row(Text(name), *[Text(fmt(x)) for x in (sp.mean, sp.median, sp.std, sp.min, sp.max)])
        loss = Text(f"mean loss {fmt(s.mean_loss)} nats (−log p) · perplexity {fmt(s.perplexity)} = exp(mean loss)")
        ranks = Table.grid(padding=(0, 1))
        ranks.add_column(justify="left")
        ranks.add_column(justify="right")
        ranks.add_column(justify="right")
        ranks.add_column()
        bar_style = part_style(self, "stats--bar")
        for label, count, frac in zip(RANK_LABELS, s.ranks, s.rank_fractions):
            cells = round(frac * BAR_CELLS) if frac == frac else 0
            ranks.add_row(
                Text(f"rank {label}"), Text(str(count)), Text(fmt_pct(frac)), Text("█" * cells, style=bar_style)
            )
        return Group(
            grid,
            loss,
            Text(""),
            Text("GLTR ranks of the chosen tokens (1: the model's first choice)", style="bold"),
            ranks,
            Text(""),
        )

    def _tables(self, rep: Report) -> RenderableType:
        from tokentui.core.display import decode_bytes
        from tokentui.core.stats import EXTREME_TITLES, fmt, fmt_p

        st, muted = rep.all, self._muted()
        deciles = Table(title=None, box=None, padding=(0, 1), show_edge=False, expand=False)
        for head, just in (
            ("decile", "right"),
            ("H range (nats)", "left"),
            ("tokens", "right"),
            ("mean H", "right"),
            ("mean p", "right"),
            ("examples (×count)", "left"),
        ):
            deciles.add_column(Text(head, style=muted), justify=just, overflow="fold")  # type: ignore[arg-type]
        for d in st.deciles:
            examples = Text(" ").join(lone(decode_bytes(t), 12) + Text(f"×{c}", style=muted) for t, c in d.examples)
            deciles.add_row(
                Text(str(d.decile)),
                Text(f"{fmt(d.low)}–{fmt(d.high)}"),
                Text(str(d.count)),
                Text(fmt(d.mean_entropy)),
                Text(fmt(d.mean_probability)),
                examples,
            )
        positions = Table(box=None, padding=(0, 1), show_edge=False)
        for head in ("bin", "relative position", "tokens", "mean H", "mean p"):
            positions.add_column(Text(head, style=muted), justify="right")
        for b in st.positions:
            positions.add_row(
                Text(str(b.bin + 1)),
                Text(f"{b.low:.2f}–{b.high:.2f}"),
                Text(str(b.count)),
                Text(fmt(b.mean_entropy)),
                Text(fmt(b.mean_probability)),
            )
        token_style = part_style(self, "stats--token")
        parts: list[RenderableType] = [
            Text("entropy deciles (low ≤ H < high; the last ≤ high)", style="bold"),
            deciles,
            Text(""),
            Text(f"by relative position (i/n: i-th of a sequence's n counted tokens; {rep.bins} bins)", style="bold"),
            positions,
        ]
        for name, tokens in st.extremes.items():
            if not tokens:
                continue
            table = Table(box=None, padding=(0, 1), show_edge=False, show_header=False)
            for just in ("right", "right", "right", "left", "left"):
                table.add_column(justify=just, overflow="fold")  # type: ignore[arg-type]
            for t in tokens:
                context = _Context(t, muted, token_style)
                table.add_row(
                    Text(f"H {fmt(t.entropy)}"),
                    Text(f"p {fmt_p(t.prob)}"),
                    Text(f"rank {t.rank}"),
                    Text(f"#{t.branch} @{t.position}"),
                    context,
                )
            parts += [Text(""), Text(EXTREME_TITLES[name], style="bold"), table]
        return Group(*parts)


class _Context:
    """An extreme token in its context, cut to the cells its column is given (`fit_context`: at
    most 24 before and 16 after). A context made once at a fixed length was folded where the
    column had less: its end alone on the next line (a trial, at 80×24)."""

    MOST = 40  # cells of context around the token, both sides together

    def __init__(self, token: Token, muted: str, token_style: Style | str) -> None:
        self.token, self.muted, self.token_style = token, muted, token_style

    def _text(self, width: int) -> Text:
        from tokentui.core.stats import fit_context

        before, token, after = fit_context(self.token, width)
        text = Text(before, style=self.muted) + Text(token, style=self.token_style) + Text(after, style=self.muted)
        text.truncate(width, overflow="ellipsis")  # (a token wider than the column itself)
        return text

    def _widest(self) -> int:
        from tokentui.core.display import lone_token

        return cell_len(lone_token(self.token.token)) + 2 + self.MOST

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        full = self._text(self._widest()).cell_len
        return Measurement(min(full, 12), full)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._text(min(options.max_width, self._widest()))
