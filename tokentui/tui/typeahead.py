"""Keys typed ahead of the screen they are meant for are held and replayed in order, not lost.

Over SSH, keys typed within one round trip arrive together: `x⏎` (export under the offered
name), `x⏎y` (… and replace the file), `sb⏎`. Textual hands each key to whatever has the focus
when the key is read, and every widget handles its messages in its own task, so a key that
arrives right after one that opens or closes a screen went astray: before the new screen is
mounted and focused (nothing has the focus: the key is dropped), while a dialog is still handling
the previous key (it lands in the field being closed), or after a dialog was closed but before its
result pushed the next one (it reaches the screen below, as a command).

The app sends keys on one at a time: it holds a key while the one before it is still on its way
or the screen stack is settling, and sends the held keys on, oldest first, once that is over:

- the previous key is still on its way: queued at the widget it went to or one above it up to
  its screen (a key no widget takes goes up to the app, whose bindings run the
  command: `x` opens the export dialog there), or what handling it posted is (Enter in a field
  posts `Submitted`, which closes the dialog);
- the top screen is not yet mounted, or has not yet come up (Textual's `ScreenResume`, which
  gives it the focus);
- the app still has callbacks to run after its current message (a closed dialog's result, which
  may open the next screen).

A paste is held like a key (it is typed text too); a mouse button is held only behind held keys,
to keep its place among them. Keys typed at a person's pace never wait. A key is never held
longer than `MAX_HOLD` seconds: then it goes where Textual would send it (a screen that never
settles does not swallow keys). If a Textual release lacks the internals read here, nothing is
held: keys go as Textual sends them.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from textual import events
from textual.app import App, ScreenStackError
from textual.screen import ModalScreen
from textual.widget import Widget

if TYPE_CHECKING:
    from textual.message_pump import MessagePump

MAX_HOLD = 5.0  # seconds: a loaded machine can take over a second for one key (a trial saw 1 s run out)
POLL = 0.005  # seconds between checks while keys are held


Typed = events.Key | events.Paste  # what is held: what a person types (a paste is typed text too)
Clicks = (events.MouseDown, events.MouseUp)  # held behind typed input only, to keep their order with it


class TypeAhead(App[None]):
    """The explorer's key dispatch with type-ahead (see the module's docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._held: deque[tuple[events.Event, float]] = deque()
        self._on_its_way: tuple[events.Event, MessagePump] | None = None  # the last input sent on, and where
        self._draining = False

    async def on_event(self, event: events.Event) -> None:
        typed = isinstance(event, Typed) and not event.is_forwarded
        clicked = isinstance(event, Clicks) and not event.is_forwarded and bool(self._held)
        if not (typed or clicked):
            await super().on_event(event)
            return
        if self._held or self._settling():
            self._held.append((event, time.monotonic()))
            if not self._draining:
                self._draining = True
                self.set_timer(POLL, self._drain)
            return
        await self._send(event)

    async def _send(self, event: events.Event) -> None:
        target = self.focused or self.screen
        await super().on_event(event)  # (Textual's: a priority binding, or on to the target)
        self._on_its_way = (event, target) if isinstance(event, Typed) and event.is_forwarded else None

    async def _drain(self) -> None:
        while self._held and (not self._settling() or time.monotonic() - self._held[0][1] > MAX_HOLD):
            event, _ = self._held.popleft()
            try:
                await self._send(event)
            except ScreenStackError:  # (the app closed meanwhile: nowhere to send them)
                self._held.clear()
        if self._held:
            self.set_timer(POLL, self._drain)
        else:
            self._draining = False

    def _settling(self) -> bool:
        try:
            screen = self.screen
        except ScreenStackError:  # (no screen yet, or the app is closing: nothing to wait for)
            return False
        try:  # (AttributeError: a Textual whose internals differ from 8.2's)
            if not screen.is_mounted or screen.stack_updates == 0 or self._next_callbacks:
                return True
            if self._on_its_way is None:
                return False
            sent, target = self._on_its_way
            if not target.is_attached:  # (a closed dialog's widget)
                return False
            return _on_its_way(sent, target, isinstance(target, Widget) and isinstance(target.screen, ModalScreen))
        except AttributeError:
            return False


def _on_its_way(key: events.Event, target: MessagePump, dialog: bool) -> bool:
    """Whether `key` waits in the queue of `target`, of a node above it up to its screen, or of
    the app (where its binding runs); in a dialog, whether any message waits there (what the key's
    handling posted: Enter in a field posts `Submitted`, which closes the dialog). On the main
    screen only the key itself counts: a generation keeps its queues busy, and Esc must stop it
    at once. (A message being handled is not seen from here, but nothing else runs then unless its
    handler waits: a key's handling and the messages it posts are handled in one go, each passing
    the next on to a queue before it ends.)"""
    node: MessagePump | None = target
    while node is not None:
        if node._pending_message is key or key in node._message_queue.values:
            return True
        if dialog and not isinstance(node, App) and (node.message_queue_size or node._pending_message is not None):
            return True
        node = node._parent
    return False
