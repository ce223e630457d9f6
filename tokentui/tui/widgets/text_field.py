"""One line of text typed or pasted by the user (branch text, the forced prefix, a file name …).

A bracketed paste's ESC reaches an input as `paste_input`'s private-use stand-in, never as the ESC
itself (the parser would have taken the characters after it for key presses). Textual's Input
kept the stand-in: it showed as nothing, and the branch text sent to the model held U+E01B where
the user had pasted an ESC (the prompt box gave the model the ESC, and showed ␛). A TextField
shows the stand-in as ␛ (one cell for one character: the cursor stays where it was) and gives the
ESC back in `text`, which is what the screens return.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Input

from tokentui.tui.paste_input import ESC, ESC_STAND_IN

SHOWN_ESC = "␛"


class TextField(Input):
    @property
    def _value(self) -> Text:
        if self.password or ESC_STAND_IN not in self.value:
            return super()._value
        return Text(self.value.replace(ESC_STAND_IN, SHOWN_ESC), no_wrap=True, overflow="ignore", end="")

    @property
    def text(self) -> str:
        """The value as the user pasted it: each pasted ESC an ESC again."""
        return self.value.replace(ESC_STAND_IN, ESC)
