"""A modal form of labelled one-line fields: Enter on any field applies, Esc cancels, a bad value
is named under the fields and nothing changes. The session's settings and the tree search's
parameters are such forms; a subclass names its fields and turns their text into its result.

The box keeps room for its scrollbar (app.tcss: `scrollbar-gutter: stable`): its height is
measured at the width its text wraps to, so a title that wraps one line more once a scrollbar
appears cannot push the last line (the error) under the border. A named error is also scrolled
into view, for terminals too short for the whole form."""

from __future__ import annotations

from typing import Generic, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from tokentui.core.params import RunError
from tokentui.tui.widgets.text_field import TextField

Result = TypeVar("Result")


class FormScreen(ModalScreen[Result | None], Generic[Result]):
    """Subclasses set FIELDS ((key, label), …), TITLE_LINE and BOX_ID, and implement `parse`."""

    AUTO_FOCUS = "*"  # the first field (the app's own picks the tokens)
    BINDINGS = [Binding("escape", "cancel", "cancel")]
    FIELDS: tuple[tuple[str, str], ...] = ()
    TITLE_LINE = ""
    BOX_ID = "form-box"

    def __init__(self, values: dict[str, str]) -> None:
        """`values`: each field's text to start with."""
        super().__init__()
        self.values = values
        self.error = ""  # the error named under the fields ("": none)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id=self.BOX_ID, classes="form-box"):
            yield Static(Text(self.TITLE_LINE), classes="box-title", markup=False)
            for key, label in self.FIELDS:
                with Horizontal(classes="field"):
                    yield Static(Text(label), classes="field-label", markup=False)
                    yield TextField(self.values.get(key, ""), id=f"set-{key}", compact=True)
            yield Static("", id="form-error", classes="form-error", markup=False)

    def on_mount(self) -> None:
        self.query_one(f"#{self.BOX_ID}").can_focus = False  # Tab goes from field to field
        self.query_one(Input).focus()

    def parse(self, raw: dict[str, str]) -> Result:
        """The fields' text → the result; RunError (one line) names the first bad field."""
        raise NotImplementedError

    def _raw(self) -> dict[str, str]:
        return {key: self.query_one(f"#set-{key}", TextField).text for key, _ in self.FIELDS}

    def on_input_submitted(self) -> None:
        try:
            result = self.parse(self._raw())
        except RunError as e:
            self._say(str(e))
            return
        self.dismiss(result)

    def on_input_changed(self) -> None:
        """Once an error is named, every edit checks the fields again: the error goes when they
        are right (it stayed, naming a field already corrected, until the next Enter)."""
        if not self.error:
            return
        try:
            self.parse(self._raw())
        except RunError as e:
            self._say(str(e))
            return
        self._say("")

    def _say(self, error: str) -> None:
        self.error = error
        shown = self.query_one("#form-error", Static)
        shown.update(Text(error))
        if error:
            self.call_after_refresh(shown.scroll_visible, animate=False)

    def action_cancel(self) -> None:
        self.dismiss(None)
