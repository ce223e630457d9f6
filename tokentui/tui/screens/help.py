"""The help screen: every key of the explorer, grouped, generated from the action table."""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tokentui.tui.actions import help_sections
from tokentui.tui.widgets.styles import part_style


class HelpScreen(ModalScreen[None]):
    """Esc, q, ? or F1 closes it (q closes every screen of its own — help, statistics, matrix,
    layer map — as in a pager: a trial's q to leave the help quit the explorer; ctrl+q quits)."""

    AUTO_FOCUS = "*"  # the first field (the app's own picks the tokens)
    BINDINGS = [
        Binding("escape,q,question_mark,f1", "dismiss", "close"),
    ]
    COMPONENT_CLASSES = {"help--key", "help--group", "help--title"}

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static("", id="help-text", markup=False)

    def on_mount(self) -> None:
        key = part_style(self, "help--key")
        group = part_style(self, "help--group")
        sections = help_sections()
        # every section's keys in a column as wide as the longest keys (a group's title above its
        # keys, not in that column: it made the column a third of the screen)
        widest = max(cell_len(keys) for _title, rows in sections for keys, _what in rows)
        parts: list[RenderableType] = [
            Text("tokentui keys — Esc, q, ? or F1 closes, ctrl+q quits", style=part_style(self, "help--title"))
        ]
        for title, rows in sections:
            table = Table.grid(padding=(0, 2))
            table.add_column(style=key, no_wrap=True, width=widest)
            table.add_column(ratio=1)
            for keys, what in rows:
                table.add_row(Text(keys), Text(what))
            parts += [Text(""), Text(title, style=group), table]
        self.query_one("#help-text", Static).update(Group(*parts))
