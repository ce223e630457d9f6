"""The token table's two stores — entries one by one, and ids held as references into a
tokenizer's bytes table — answer every question as one table of entries would."""

from __future__ import annotations

import numpy as np

from tokentui.core.tokens import TokenTable

VOCAB = [f"tok{i}".encode() for i in range(50)] + [b"\x1b[2J", "é".encode()]


def both() -> tuple[TokenTable, TokenTable]:
    """A table filled with entries and one holding the same ids (a few as entries first)."""
    held_ids = np.array([3, 7, 7, 50, 51, 0, 12, 3])
    plain = TokenTable({i: VOCAB[i] for i in set(held_ids.tolist())} | {60: b"<id 60>", 12: b"mine"})
    held = TokenTable({60: b"<id 60>", 12: b"mine"})
    held.hold(VOCAB, held_ids)
    return plain, held


def same(plain: TokenTable, held: TokenTable) -> None:
    assert len(held) == len(plain)
    assert held.items() == plain.items()
    assert sorted(held.ids().tolist()) == sorted(plain.ids().tolist())
    for j in (plain.pack(), held.pack()):
        assert [a.tolist() for a in j] == [a.tolist() for a in plain.pack()]
    for tid in range(-1, int(plain.ids().max()) + 3):
        assert (tid in held) == (tid in plain), tid
        assert held.bytes_of(tid) == plain.bytes_of(tid), tid
        assert held.display(tid) == plain.display(tid), tid
    probe = [0, 1, 3, 12, 50, 51, 60, 61]
    assert held.absent(probe) == plain.absent(probe)
    assert held.missing(probe) == plain.missing(probe)
    assert held.text(probe) == plain.text(probe)
    again = TokenTable.unpack(*held.pack())
    assert again.items() == plain.items()


def test_held_ids_read_as_entries():
    plain, held = both()
    assert held.bytes_of(12) == b"mine"  # (an entry already there keeps its bytes)
    same(plain, held)


def test_an_entry_added_later_replaces_a_held_id_and_copies_are_independent():
    plain, held = both()
    held.display(7)  # (cached display text must follow the new bytes)
    copy = held.copy()
    for table in (plain, held):
        table.add(7, b"seven")
        table.update({51: b"x", 70: b"y"})
    same(plain, held)
    assert copy.bytes_of(7) == VOCAB[7] and 70 not in copy
    copy.hold(VOCAB, np.array([20]))
    assert 20 in copy and 20 not in held


def test_holding_from_another_vocabulary_keeps_the_first_ones_bytes():
    plain, held = both()
    other = [b"other"] * len(VOCAB)
    held.hold(other, np.array([1]))
    plain.update({1: b"other"})
    same(plain, held)


def test_many_entries_among_held_ids_pack_in_id_order():
    """Past a few entries the packing merges by sorting (the other branch of `pack`)."""
    vocab = [bytes([65 + i % 26]) * (1 + i % 3) for i in range(400)]
    entries = {i: b"e%d" % i for i in range(1, 400, 5)}  # 80 entries
    held_ids = np.arange(0, 400, 3)
    plain = TokenTable({i: vocab[i] for i in held_ids.tolist()} | entries)
    held = TokenTable(entries)
    held.hold(vocab, held_ids)
    same(plain, held)
