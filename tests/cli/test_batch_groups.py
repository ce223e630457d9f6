"""Which of a batch's items decode together (`cli/batch_groups.py`): prompts of one token length,
in groups no larger than `--group` and the caps on positions and logits, from windows of the items
to do; every item exactly once, in its window's order."""

from __future__ import annotations

import pytest

from tokentui.cli import batch_groups
from tokentui.cli.batch_groups import group_rows, units
from tokentui.core.dataset import Item


def _todo(lengths: list[int]) -> tuple[list[tuple[Item, str]], dict[int, int]]:
    items = [(Item(i + 1, "x" * n), f"k{i + 1}") for i, n in enumerate(lengths)]
    return items, {i + 1: n for i, n in enumerate(lengths)}


def _encode(item: Item):
    """A prompt's encoding, one id a character; None (done alone) over 50 (as one the model's
    context refuses)."""
    return None if len(item.prompt) > 50 else ([0] * len(item.prompt), None)


@pytest.mark.parametrize("group", [1, 2, 3, 16])
def test_units_group_prompts_of_one_length_and_hold_every_item_once(group):
    todo, length = _todo([3, 5, 3, 3, 7, 5, 3, 60, 3, 5])
    got = list(units(todo, _encode, group, new_tokens=8, vocab=1000))
    assert sorted(it.index for unit in got for it, _k, _e in unit) == list(range(1, 11))
    for unit in got:
        assert len(unit) <= group
        assert len({length[it.index] for it, _k, _e in unit}) == 1
        if len(unit) > 1:
            assert all(e is not None and len(e[0]) == length[it.index] for it, _k, e in unit)
    assert [it.index for it, _k, _e in got[0]][:1] == [1]  # (units in the order of their first items)
    firsts = [unit[0][0].index for unit in got]
    assert firsts == sorted(firsts)
    if group == 16:  # the 3s together, the 5s together, 7 and the one encode refuses alone
        assert [[it.index for it, _k, _e in unit] for unit in got] == [[1, 3, 4, 7, 9], [2, 6, 10], [5], [8]]
    if group == 1:
        assert all(e is None for unit in got for _it, _k, e in unit)


def test_the_caps_shrink_groups():
    assert group_rows(10, 54, 16, 1000) == 16
    assert group_rows(10, 1014, 16, 1000) == 8  # KV cache: 8 × 1,024 positions
    assert group_rows(1000, 0, 16, 1000) == 2  # the prompts' forward: 2,048 positions
    assert group_rows(10, 54, 256, 150_000) == 111  # one step's logits: 2**24
    assert group_rows(9000, 0, 16, 1000) == 1


def test_windows_cut_by_tokens_keep_file_order_across_them(monkeypatch):
    """A window holds at most WINDOW_TOKENS encoded prompt tokens: a prompt of one length in a
    later window joins no group of an earlier one (so items finish nearly in order)."""
    monkeypatch.setattr(batch_groups, "WINDOW_TOKENS", 9)
    todo, _length = _todo([3, 3, 3, 3, 3, 3])
    got = [[it.index for it, _k, _e in unit] for unit in units(todo, _encode, 16, 8, 1000)]
    assert got == [[1, 2, 3], [4, 5, 6]]
