"""The prompt box: a TextArea that keeps the prompt exactly as given (`--prompt`, a run's prompt,
typed, pasted) but never draws a control or format character as it is.

Textual's TextArea writes its lines to the terminal unfiltered, so a prompt holding `ESC ]2;…BEL`
retitled the terminal window and `ESC [7m` or a bidi override garbled the screen around the box;
OSC 52 would write the clipboard. The tokens pane shows such text escaped; here the box's document
holds each such character as one visible stand-in (ESC → ␛, NUL → ␀, DEL → ␡, any other → �), one
character for one, and `prompt` keeps the exact text beside it. Stand-ins in the document, not
only in the drawing: TextArea wraps lines and places the cursor by the document's characters'
widths, and an ESC is 0 columns wide where its stand-in takes one (drawn-only stand-ins pushed the
end of a wrapped line out of the box). The characters the document would take for line breaks
(VT, FF, CR alone, U+2028 …) get stand-ins too, so the prompt is never re-broken either; only
a paste's CR is a line break (the terminal's for a pasted one).

Every edit is mirrored on the exact text at the same offsets (an edit is one contiguous span);
an undo or redo goes back to a state seen before, whose exact text is remembered.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from textual import events
from textual.document._edit import Edit, EditResult
from textual.widgets import TextArea

from tokentui.core.display import sanitize
from tokentui.tui.paste_input import ESC_STAND_IN

OTHER = "\ufffd"  # stands for a character whose escape is longer than one (bidi, C1, …)
# kept as they are: line breaks and tabs (TextArea's own), and the zero-width joiners, which
# Persian text and emoji sequences need and which act on nothing (Textual measures them as 0 wide,
# as the terminal draws them)
KEPT = "\n\t\u200c\u200d"
STATES = 64  # document texts whose exact prompt is remembered for undo and redo


@lru_cache(maxsize=1024)
def _shown(ch: str) -> str:
    escaped = sanitize(ch)
    return escaped if len(escaped) == 1 else OTHER


def shown_text(text: str) -> str:
    """`text` as the box holds it: KEPT kept, every other character that could act on a terminal
    (or break a line) replaced by its one-character stand-in."""
    if text.isprintable():
        return text
    return "".join(ch if ch in KEPT or ch.isprintable() else _shown(ch) for ch in text)


class PromptArea(TextArea):
    def __init__(self, text: str = "", **kwargs) -> None:
        super().__init__(shown_text(text), **kwargs)
        self._reset(text)

    @property
    def prompt(self) -> str:
        """The prompt exactly: what was given, with the user's edits."""
        return self._exact

    def load_text(self, text: str) -> None:
        super().load_text(shown_text(text))
        self._reset(text)

    def _reset(self, text: str) -> None:
        shown = self.text
        self._exact = text if len(text) == len(shown) else shown  # (one for one, but never trust it blindly)
        self._states: dict[str, str] = {shown: self._exact}

    def _on_blur(self, event: events.Blur) -> None:
        """Left, the box shows the prompt's start (it kept showing where the typing ended: at 80×24
        a long prompt's last wrapped line alone, "who learns to bake bread."); back in it, the
        cursor is where it was and scrolls into view as it moves. (TextArea's own handler runs too:
        Textual calls each class's.) After the next refresh: the box is shorter unfocused (80×24:
        one line), and a scroll now, while it is still tall, had nothing to do."""
        self.call_after_refresh(self.scroll_home, animate=False)

    async def _on_key(self, event: events.Key) -> None:
        """A typed format character (a zero-width joiner inside an emoji, a bidi mark) is no key
        TextArea inserts (it is not printable): a trial's typed family emoji became three. It is
        inserted as a paste inserts it (a stand-in shown, the exact character kept). TextArea's
        own handler runs after this one for every other key."""
        ch = event.character
        if ch is not None and len(ch) == 1 and not self.read_only and unicodedata.category(ch) == "Cf":
            event.stop()
            event.prevent_default()
            self._replace_via_keyboard(ch, *self.selection)

    async def _on_paste(self, event: events.Paste) -> None:
        """Terminals send a pasted line break as CR (tmux, xterm, VTE): in a paste, CR LF and a
        lone CR are line breaks (a trial's two-line paste reached the model as one line holding
        ␍). TextArea's own handler, run next, inserts it; a CR given with --prompt or in a run's
        prompt stays as it is. A pasted ESC comes as `paste_input`'s stand-in: the ESC again."""
        event.text = event.text.replace("\r\n", "\n").replace("\r", "\n").replace(ESC_STAND_IN, "\x1b")

    def edit(self, edit: Edit) -> EditResult:
        raw = edit.text.replace("\r\n", "\n")  # (a pasted CRLF is one line break, as TextArea has it)
        start, end = self._index(edit.top), self._index(edit.bottom)
        edit.text = shown_text(raw)
        result = super().edit(edit)
        self._settle(self._exact[:start] + raw + self._exact[end:])
        return result

    def _index(self, location: tuple[int, int]) -> int:
        """The offset of a (row, column) in `text` (its line breaks are all one "\n")."""
        row, column = location
        return sum(len(self.document.get_line(i)) + 1 for i in range(row)) + column

    def undo(self) -> None:
        before, exact = self.text, self._exact
        super().undo()
        self._settle(self._states.get(self.text) or _spliced(exact, before, self.text))

    def redo(self) -> None:
        before, exact = self.text, self._exact
        super().redo()
        self._settle(self._states.get(self.text) or _spliced(exact, before, self.text))

    def _settle(self, exact: str) -> None:
        shown = self.text
        self._exact = exact if len(exact) == len(shown) else shown
        self._states.pop(shown, None)
        self._states[shown] = self._exact
        while len(self._states) > STATES:
            del self._states[next(iter(self._states))]


def _spliced(exact: str, before: str, after: str) -> str:
    """`exact` (whose document text was `before`) changed as `before` became `after`: the common
    start and end kept exactly, the span between as the document now holds it."""
    n = min(len(before), len(after))
    a = 0
    while a < n and before[a] == after[a]:
        a += 1
    b = 0
    while b < n - a and before[-1 - b] == after[-1 - b]:
        b += 1
    return exact[:a] + after[a : len(after) - b] + exact[len(exact) - b :]
