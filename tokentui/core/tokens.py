"""The run's token table: the exact bytes of every token id a run mentions.

A run file must open on a machine without the model or its tokenizer, so the bytes of each id that
appears (chosen or among the top-k) travel with the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from tokentui.core.display import display_token


class TokenTable:
    """Maps token id → exact bytes; filled by the engine, saved with the run.

    Two stores: entries one by one (`add`, `update`), and ids *held* as references into a
    tokenizer's own bytes table (`hold`): a compared or scored text of a few thousand positions
    mentions tens of thousands of distinct top-k ids, and a dictionary entry each was most of the
    time to build its run. An id is in at most one store (an entry added later replaces a held id).
    """

    def __init__(self, entries: dict[int, bytes] | None = None) -> None:
        self._bytes: dict[int, bytes] = dict(entries or {})
        self._display: dict[int, str] = {}
        self._vocab: Sequence[bytes] = ()  # the tokenizer's bytes by id (shared, never copied)
        self._held = np.zeros(0, dtype=bool)  # by id: its bytes are _vocab's

    def __contains__(self, token_id: int) -> bool:
        tid = int(token_id)
        return tid in self._bytes or self._is_held(tid)

    def __len__(self) -> int:
        return len(self._bytes) + int(np.count_nonzero(self._held))

    def _is_held(self, tid: int) -> bool:
        return 0 <= tid < len(self._held) and bool(self._held[tid])

    def add(self, token_id: int, data: bytes) -> None:
        self.update({int(token_id): bytes(data)})

    def update(self, entries: dict[int, bytes]) -> None:
        self._bytes.update(entries)
        if self._display:  # (an id shown before, as "<id N>" or its held bytes, may change)
            for tid in entries:
                self._display.pop(tid, None)
        held = self._held
        if len(held) and len(entries) > 64:  # (a large update — a whole table's — in one numpy step)
            keys = np.fromiter(entries, dtype=np.int64, count=len(entries))
            held[keys[(keys >= 0) & (keys < len(held))]] = False
        elif len(held):  # (a decode step's few: numpy's calls would cost more than they do)
            for tid in entries:
                if 0 <= tid < len(held):
                    held[tid] = False

    def hold(self, vocab: Sequence[bytes], ids: np.ndarray) -> None:
        """Note `ids` (0 ≤ id < len(vocab), repeats allowed) with the bytes `vocab[id]`, without a
        Python object per id. Ids already in the table keep their bytes. One vocabulary per table:
        held ids of an earlier one become entries first."""
        if self._vocab is not vocab:
            if self._held.any():
                self._bytes.update(self._held_items())
            self._vocab, self._held = vocab, np.zeros(len(vocab), dtype=bool)
        self._held[ids] = True
        self._display.clear()  # (an id shown as "<id N>" before has bytes now)
        if self._bytes:
            known = np.fromiter(self._bytes, dtype=np.int64, count=len(self._bytes))
            self._held[known[(known >= 0) & (known < len(vocab))]] = False

    def _held_items(self) -> list[tuple[int, bytes]]:
        vocab = self._vocab
        return [(i, vocab[i]) for i in np.flatnonzero(self._held).tolist()]

    def absent(self, ids: Iterable[int]) -> set[int]:
        """The ids among `ids` the table lacks (a set difference: a run notes tens of thousands of
        top-k ids at once, and a per-id membership test in Python was most of building a long run)."""
        out = set(ids).difference(self._bytes)
        return {i for i in out if not self._is_held(i)} if len(self._held) else out

    def copy(self) -> TokenTable:
        table = TokenTable(self._bytes)
        table._vocab, table._held = self._vocab, self._held.copy()
        return table

    def missing(self, ids: Iterable[int]) -> list[int]:
        return [int(i) for i in ids if int(i) not in self]

    def ids(self) -> np.ndarray:
        entries = np.fromiter(self._bytes.keys(), dtype=np.int64, count=len(self._bytes))
        return np.concatenate([entries, np.flatnonzero(self._held).astype(np.int64)])

    def bytes_of(self, token_id: int) -> bytes:
        tid = int(token_id)
        data = self._bytes.get(tid)
        if data is None:
            return self._vocab[tid] if self._is_held(tid) else b""
        return data

    def display(self, token_id: int) -> str:
        """Safe, visible form of a token (cached: display happens on every repaint)."""
        tid = int(token_id)
        text = self._display.get(tid)
        if text is None:
            text = display_token(self.bytes_of(tid)) if tid in self else f"<id {tid}>"
            self._display[tid] = text
        return text

    def text(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.bytes_of(i) for i in ids)

    def items(self) -> list[tuple[int, bytes]]:
        return sorted([*self._bytes.items(), *self._held_items()])

    # Packed form for the run file: ids (ascending), offsets into one blob, the blob.
    def pack(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        held = np.flatnonzero(self._held)
        vocab = self._vocab
        datas = [vocab[i] for i in held.tolist()]  # (ascending already)
        entries = sorted(self._bytes.items())
        if len(entries) <= 64:  # a few entries among the held ids: each put in its place
            ids = held.tolist()
            for tid, data in reversed(entries):
                at = int(np.searchsorted(held, tid))
                ids.insert(at, tid)
                datas.insert(at, data)
        else:
            items = sorted([*entries, *zip(held.tolist(), datas)]) if len(held) else entries
            ids, datas = [tid for tid, _ in items], [data for _, data in items]
        offsets = np.zeros(len(datas) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, datas), dtype=np.int64, count=len(datas)), out=offsets[1:])
        return np.array(ids, dtype=np.int32), offsets, np.frombuffer(b"".join(datas), dtype=np.uint8)

    @classmethod
    def unpack(cls, ids: np.ndarray, offsets: np.ndarray, blob: np.ndarray) -> TokenTable:
        raw = blob.tobytes()
        off = offsets.tolist()
        return cls({int(t): raw[off[j] : off[j + 1]] for j, t in enumerate(ids.tolist())})
