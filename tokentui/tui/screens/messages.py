"""The messages screen (`N`): the explorer's recent notifications, whole. A toast goes after
seconds and the status bar cuts a long note at 80 columns ("model B not loaded: the models'
vo…"): a trial could not read why once the toast had gone. Newest last, with the time each came."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEPT = 200  # notifications kept for this screen


@dataclass
class Message:
    at: str  # HH:MM:SS, local time (of the last, when repeated)
    severity: str  # information, warning, error
    text: str  # already sanitised (TokentuiApp.notify)
    times: int = 1  # the same message in a row (a key pressed again and again)


class MessageLog:
    """The last KEPT notifications of the session; one said again in a row is counted, not
    repeated (a trial's screen held "no token … after the cursor" eight times)."""

    def __init__(self) -> None:
        self.items: deque[Message] = deque(maxlen=KEPT)

    def add(self, text: str, severity: str) -> None:
        import time

        at = time.strftime("%H:%M:%S")
        last = self.items[-1] if self.items else None
        if last is not None and (last.text, last.severity) == (text, severity):
            last.at, last.times = at, last.times + 1
            return
        self.items.append(Message(at, severity, text))


class MessagesScreen(ModalScreen[None]):
    """Esc, q or N closes it; it scrolls (arrows, PgUp/PgDn, home/end) and opens at the newest."""

    AUTO_FOCUS = "*"
    BINDINGS = [Binding("escape,q,N", "dismiss", "close")]

    def __init__(self, log: MessageLog, status: str = "") -> None:
        super().__init__()
        self.log_ = log
        self.status = status  # the status bar's whole text, which may be cut on screen

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="messages-box"):
            yield Static("", id="messages-text", markup=False)

    def on_mount(self) -> None:
        out = Text("messages, newest last — Esc or q closes", style="bold")
        if not self.log_.items:
            out.append("\n\nno messages yet in this session", style="dim")
        for m in self.log_.items:
            style = {"error": "bold red", "warning": "yellow"}.get(m.severity, "")
            out.append(f"\n\n{m.at} ", style="dim")
            out.append(m.text, style=style)
            if m.times > 1:
                out.append(f" (×{m.times})", style="dim")
        if self.status:
            out.append("\n\nstatus bar now: ", style="dim")
            out.append(self.status)
        self.query_one("#messages-text", Static).update(out)
        self.query_one("#messages-box", VerticalScroll).scroll_end(animate=False)
