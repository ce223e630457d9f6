"""Which of a batch's items are decoded together (`jobs.GenerateGroup`): prompts of one token
length, at most `--group` of them, as many as their KV caches' positions allow. On a GPU a short
prompt's decode step is launches, not arithmetic, so sixteen rows cost about what one does.

Items are taken in windows of the items still to do (at most WINDOW groups' worth, and
WINDOW_TOKENS prompt tokens), so they finish nearly in the file's order and a long file is not all
tokenized before its first item runs. An item that cannot join a group
(a dataset's, one that fails to encode or fills the context) is a unit of its own, done as
`generate` does it; so is a prompt no other in its window has the length of."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokentui.core.dataset import Item

WINDOW = 16  # groups' worth of items grouped at once
WINDOW_TOKENS = 1 << 16  # prompt tokens held encoded at once
GROUP_POSITIONS = 8192  # KV-cache positions of one group at most: rows × (prompt + new tokens)
GROUP_PROMPT_POSITIONS = 2048  # positions of one group's prompt forward at most (its logits and hidden states)
GROUP_LOGITS = 1 << 24  # one step's logits at most, rows × vocabulary (each of its float32 temporaries: 64 MB)

Encoded = tuple[list[int], str | None]  # a prompt's ids and chat template (`Backend.encode_prompt`)
Unit = list[tuple["Item", str, Encoded | None]]  # (item, its key, its encoding when it is in a group)


def group_rows(prompt_tokens: int, new_tokens: int, group: int, vocab: int) -> int:
    """How many prompts of `prompt_tokens` tokens, each to grow `new_tokens` more, decode together
    under a model of `vocab` ids."""
    by_cache = GROUP_POSITIONS // max(1, prompt_tokens + new_tokens)
    by_prompt = GROUP_PROMPT_POSITIONS // max(1, prompt_tokens)
    return max(1, min(group, by_cache, by_prompt, GROUP_LOGITS // max(1, vocab)))


def units(
    todo: list[tuple[Item, str]], encode: Callable[[Item], Encoded | None], group: int, new_tokens: int, vocab: int
) -> Iterator[Unit]:
    """`todo`'s (item, key) pairs in units to do together, in the order of their first items.
    `encode(item)`: its prompt's encoding when it may join a group, else None (done alone)."""
    if group <= 1:
        for item, key in todo:
            yield [(item, key, None)]
        return
    order: list[Unit] = []
    open_by_length: dict[int, Unit] = {}
    items = tokens = 0  # in the window
    for item, key in todo:
        encoded = encode(item)
        n = len(encoded[0]) if encoded is not None else 0
        if encoded is None or group_rows(n, new_tokens, group, vocab) == 1:
            order.append([(item, key, None)])  # (alone: encoded again then, not held meanwhile)
        else:
            unit = open_by_length.get(n)
            if unit is None or len(unit) >= group_rows(n, new_tokens, group, vocab):
                unit = open_by_length[n] = []
                order.append(unit)
            unit.append((item, key, encoded))
            tokens += n
        items += 1
        if items >= group * WINDOW or tokens >= WINDOW_TOKENS:
            yield from order
            order, open_by_length, items, tokens = [], {}, 0, 0
    yield from order
