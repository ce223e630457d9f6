"""Bracketed pastes that hold an ESC arrive whole, as text, never as key presses.

Textual 8's input parser reads an ESC inside a bracketed paste as the start of an escape
sequence: the characters after it (up to 32) leave the paste and arrive as key presses, and the
text before them arrives last. Pasting `note\\e[0m\\tdelete` into the prompt moved the focus out
with the tab, and `d`, `e`, `l`, `t` then ran as the explorer's commands (a `q` would have quit).
Here each ESC between the paste's start and end markers is swapped for a private-use stand-in
before the parser sees it; the prompt box and the one-line fields (`widgets/text_field.py`) turn
it back into the ESC that was pasted, and show it as ␛.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual._xterm_parser import XTermParser

ESC = "\x1b"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
ESC_STAND_IN = "\ue01b"  # a pasted ESC on its way through the parser


def _partial_end(text: str, start: int) -> int:
    """How many characters at the end of text[start:] could begin PASTE_END (held for the next read)."""
    for k in range(min(len(PASTE_END) - 1, len(text) - start), 0, -1):
        if text.endswith(PASTE_END[:k]):
            return k
    return 0


class PasteEscapes:
    """The terminal's input, read by read: ESCs inside bracketed pastes swapped for ESC_STAND_IN.
    Outside a paste nothing is held back (an escape key press must reach the parser at once); the
    paste's start marker is found across reads from the characters last seen. Inside one, a read
    ending in what may be the start of its end marker keeps those characters for the next read."""

    def __init__(self) -> None:
        self.in_paste = False
        self.seen = ""  # the last characters passed on outside a paste (a start marker split between reads)
        self.held = ""  # the end of a read inside a paste that may begin its end marker

    def __call__(self, data: str) -> str:
        text, self.held = self.held + data, ""
        out: list[str] = []
        i = 0
        while i < len(text):
            if not self.in_paste:
                window = self.seen + text[i:]
                j = window.find(PASTE_START)
                if j < 0:
                    out.append(text[i:])
                    self.seen = window[-(len(PASTE_START) - 1) :]
                    break
                after = i + j + len(PASTE_START) - len(self.seen)  # where the pasted text starts in `text`
                out.append(text[i:after])
                i, self.in_paste, self.seen = after, True, ""
            else:
                j = text.find(PASTE_END, i)
                if j < 0:
                    cut = len(text) - _partial_end(text, i)
                    out.append(text[i:cut].replace(ESC, ESC_STAND_IN))
                    self.held = text[cut:]
                    break
                out.append(text[i:j].replace(ESC, ESC_STAND_IN) + PASTE_END)
                i, self.in_paste = j + len(PASTE_END), False
        return "".join(out)


class PasteSafeParser(XTermParser):
    """Textual's parser, fed through PasteEscapes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pastes = PasteEscapes()

    def feed(self, data: str) -> Iterable[Any]:
        if not data:  # the end of input
            return super().feed(data)
        passed = self._pastes(data)
        return super().feed(passed) if passed else ()  # ("" would tell the parser the input ended)
