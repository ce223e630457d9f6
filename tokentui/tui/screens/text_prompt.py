"""Ask for one line of text (branch with typed text, the export path): Enter returns it, Esc
cancels."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tokentui.core.display import sanitize
from tokentui.tui.widgets.text_field import TextField


class TextPrompt(ModalScreen[str | None]):
    AUTO_FOCUS = "*"  # the first field (the app's own picks the tokens)
    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text, self.value, self.placeholder = title, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(Text(sanitize(self.title_text)), classes="box-title", markup=False)
            yield TextField(sanitize(self.value), placeholder=self.placeholder, id="prompt-input")
            yield Static(Text("Enter: done · Esc: cancel"), classes="box-hint", markup=False)

    def on_input_submitted(self, event: TextField.Submitted) -> None:
        self.dismiss(self.query_one(TextField).text)

    def action_cancel(self) -> None:
        self.dismiss(None)
