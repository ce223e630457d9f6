"""The run's token table: the exact bytes of every token id a run mentions.

A run file must open on a machine without the model or its tokenizer, so the bytes of each id that
appears (chosen or among the top-k) travel with the run.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tokentui.core.display import display_token


class TokenTable:
    """Maps token id → exact bytes; filled by the engine, saved with the run."""

    def __init__(self, entries: dict[int, bytes] | None = None) -> None:
        self._bytes: dict[int, bytes] = dict(entries or {})
        self._display: dict[int, str] = {}

    def __contains__(self, token_id: int) -> bool:
        return int(token_id) in self._bytes

    def __len__(self) -> int:
        return len(self._bytes)

    def add(self, token_id: int, data: bytes) -> None:
        self._bytes[int(token_id)] = bytes(data)

    def update(self, entries: dict[int, bytes]) -> None:
        self._bytes.update(entries)

    def absent(self, ids: Iterable[int]) -> set[int]:
        """The ids among `ids` the table lacks (a set difference: a run notes tens of thousands of
        top-k ids at once, and a per-id membership test in Python was most of building a long run)."""
        return set(ids).difference(self._bytes)

    def copy(self) -> TokenTable:
        return TokenTable(self._bytes)

    def missing(self, ids: Iterable[int]) -> list[int]:
        return [int(i) for i in ids if int(i) not in self._bytes]

    def ids(self) -> np.ndarray:
        return np.fromiter(self._bytes.keys(), dtype=np.int64, count=len(self._bytes))

    def bytes_of(self, token_id: int) -> bytes:
        return self._bytes.get(int(token_id), b"")

    def display(self, token_id: int) -> str:
        """Safe, visible form of a token (cached: display happens on every repaint)."""
        tid = int(token_id)
        text = self._display.get(tid)
        if text is None:
            data = self._bytes.get(tid)
            text = f"<id {tid}>" if data is None else display_token(data)
            self._display[tid] = text
        return text

    def text(self, ids: Iterable[int]) -> bytes:
        return b"".join(self._bytes.get(int(i), b"") for i in ids)

    def items(self) -> list[tuple[int, bytes]]:
        return sorted(self._bytes.items())

    # Packed form for the run file: ids, offsets into one blob, the blob.
    def pack(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        items = self.items()
        ids = np.fromiter((i for i, _ in items), dtype=np.int32, count=len(items))
        lengths = np.fromiter((len(b) for _, b in items), dtype=np.int64, count=len(items))
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        blob = np.frombuffer(b"".join(b for _, b in items), dtype=np.uint8)
        return ids, offsets, blob

    @classmethod
    def unpack(cls, ids: np.ndarray, offsets: np.ndarray, blob: np.ndarray) -> TokenTable:
        raw = blob.tobytes()
        off = offsets.tolist()
        return cls({int(t): raw[off[j] : off[j + 1]] for j, t in enumerate(ids.tolist())})
