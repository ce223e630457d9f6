"""The prompt box: a TextArea that keeps the prompt exactly as given (`--prompt`, typed, pasted)
but never draws a control or format character as it is.

Textual's TextArea writes its lines to the terminal unfiltered, so a prompt holding `ESC ]2;…BEL`
retitled the terminal window and `ESC [7m` or a bidi override garbled the screen around the box;
OSC 52 would write the clipboard. The tokens pane shows such text escaped; here each of those
characters is drawn as one visible stand-in (ESC → ␛, NUL → ␀, DEL → ␡, any other → �) — one
character for one, so the cursor, the selection and the wrapping, which TextArea computes by
character, stay where they were (Rich's Text would drop BEL, BS, VT, FF and CR, and every
column after one would be off by one). The document (what `text` returns, what is generated) is not
changed: only its drawing.
"""

from __future__ import annotations

from functools import lru_cache

from rich.text import Text
from textual.widgets import TextArea

from tokentui.core.display import sanitize

OTHER = "\ufffd"  # stands for a character whose escape is longer than one (bidi, C1, …)


@lru_cache(maxsize=1024)
def _shown(ch: str) -> str:
    escaped = sanitize(ch)
    return escaped if len(escaped) == 1 else OTHER


def shown_line(line: str) -> str:
    """`line` as drawn: tabs kept (TextArea expands them), every other character that could act
    on a terminal replaced by its one-character stand-in."""
    if line.isprintable():
        return line
    return "".join(ch if ch == "\t" or ch.isprintable() else _shown(ch) for ch in line)


class PromptArea(TextArea):
    def get_line(self, line_index: int) -> Text:
        # (from the document: TextArea's own Text drops BEL, BS, VT, FF and CR, which moved the
        # cursor and the selection a character off after each)
        return Text(shown_line(self.document.get_line(line_index)), end="", no_wrap=True)
