"""Ask yes or no before something the user cannot take back on screen (a new run replacing the
one shown): y or Enter confirms, n, Esc or q keeps things as they are."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tokentui.core.display import sanitize


class Confirm(ModalScreen[bool]):
    AUTO_FOCUS = "*"  # the first field (the app's own picks the tokens)
    BINDINGS = [
        Binding("y,enter", "answer(True)", "yes"),
        # (q as on every other pop-up: it closes, here as "no"; it quit the app from a delete's
        # question, which read as closing it)
        Binding("n,escape,q", "answer(False)", "no"),
    ]

    def __init__(self, question: str, detail: str = "") -> None:
        """`question` and `detail`: plain text, shown literally."""
        super().__init__()
        self.question, self.detail = question, detail

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            # run ids and paths in the text come from run files: sanitised
            yield Static(Text(sanitize(self.question)), classes="box-title", markup=False)
            if self.detail:
                yield Static(Text(sanitize(self.detail)), markup=False)
            yield Static(Text("y / Enter: yes · n / Esc / q: no"), classes="box-hint", markup=False)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
