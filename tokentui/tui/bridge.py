"""The TUI's side of the engine worker: engine events become Textual messages.

The engine's worker thread calls `EngineBridge` for every event; it only posts a message (the one
thread-safe call), and the app handles it on its own thread. Importing this does not import torch.
"""

from __future__ import annotations

from pathlib import Path

from textual.message import Message

from tokentui.engine.events import Event
from tokentui.engine.worker import Worker


class EngineMessage(Message):
    """One engine event, delivered on the app's thread."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


def start_worker(app, save_dir: Path | None, **session_options) -> Worker:
    return Worker(lambda ev: app.post_message(EngineMessage(ev)), save_dir=save_dir, **session_options).start()
