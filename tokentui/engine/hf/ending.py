"""Where a decoded branch ends before its length: an end-of-text token, a stop string, the
model's context. One place for the one-prompt loop (`HFBackend._decode`) and a group's
(`group_decode.py`), whose every row keeps an `Ending` of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tokentui.engine.events import Progress


class Ending:
    """Follows a branch's new tokens: `after(token)` says whether it ends there."""

    def __init__(self, eos: Iterable[int], stop: list[str], token_bytes: Callable[[int], bytes]) -> None:
        self.eos = set(eos)
        self.stops = [s.encode() for s in stop if s]
        self.window = max((len(s) for s in self.stops), default=0) + 64  # (the bytes a stop string may span)
        self.tail = bytearray()
        self.token_bytes = token_bytes

    def after(self, token: int) -> str | None:
        """The branch's status when it ends after `token` ("eos", "stop"), else None."""
        if token in self.eos:
            return "eos"
        if self.stops:
            self.tail += self.token_bytes(token)
            del self.tail[: -self.window]
            if any(s in self.tail for s in self.stops):
                return "stop"
        return None


def context_notice(context: int | None, position: int, tokens: int, what: str = "this branch") -> Progress | None:
    """A notice when `tokens` more from `position` would pass the model's `context`: `what` stops
    sooner (status "context")."""
    room = None if context is None else context - position
    if room is None or tokens <= room:
        return None
    return Progress(f"the model's context is {context} positions: {what} stops after {max(room, 0)} more tokens")
