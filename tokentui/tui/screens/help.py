"""The help screen: every key of the explorer, grouped, generated from the action table."""

from __future__ import annotations

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
    """Esc, ? or F1 closes it; q quits, as everywhere outside an input."""

    AUTO_FOCUS = "*"  # the first field (the app's own picks the tokens)
    BINDINGS = [
        Binding("escape,question_mark,f1", "dismiss", "close"),
        Binding("q", "app.quit", "quit"),
    ]
    COMPONENT_CLASSES = {"help--key", "help--group", "help--title"}

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static("", id="help-text", markup=False)

    def on_mount(self) -> None:
        key = part_style(self, "help--key")
        group = part_style(self, "help--group")
        table = Table.grid(padding=(0, 2))
        table.add_column(style=key, justify="right", no_wrap=True)
        table.add_column(ratio=1)
        for title, rows in help_sections():
            table.add_row(Text(""), Text(""))
            table.add_row(Text(title, style=group), Text(""))
            for keys, what in rows:
                table.add_row(Text(keys), Text(what))
        heading = Text("tokentui keys — Esc closes, q quits", style=part_style(self, "help--title"))
        from rich.console import Group

        self.query_one("#help-text", Static).update(Group(heading, table))
