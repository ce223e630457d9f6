"""KV-cache reuse for branches: fork a cache at a prefix length without copying it.

`DynamicLayer.crop` slices (views, no copy) and `update` concatenates into new tensors, so a
shallow copy of each layer cropped to the prefix shares memory with the parent and never changes
it: a branch's first token costs one forward of one token whatever the prefix length. Caches
that cannot be cropped (sliding-window, offloaded, static) are not forked: the caller recomputes.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np


def cache_length(cache) -> int | None:
    """Positions a KV cache holds (0 for none), or None when the cache holds a state that does not
    count positions: a state-space model's (Mamba's in transformers 5 is a DynamicCache of
    LinearAttention layers, whose `get_seq_length` raises; a trial found generation crash on it)."""
    if cache is None:
        return 0
    if not hasattr(cache, "get_seq_length"):
        return None
    try:
        return int(cache.get_seq_length())
    except (ValueError, NotImplementedError):
        return None


def fork_cache(cache, keep: int):
    """A cache holding only the first `keep` positions of `cache`, or None if that can't be done."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    if cache is None or keep <= 0 or not isinstance(cache, DynamicCache):
        return None
    if any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    have = cache_length(cache)
    if have is None or keep > have:
        return None
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    if keep < have:
        new.crop(keep - have)  # transformers 5: a negative value removes that many tokens
    if new.get_seq_length() != keep:
        return None
    return new


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.nonzero(a[:n] != b[:n])[0]
    return int(diff[0]) if diff.size else n


class CachePool:
    """The most recently used caches, each with the token ids it covers and a tag: the steering
    it was computed under ('' = none; a steered model's keys and values differ from the plain
    model's for the same ids, so a cache is only reused under the same tag)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, int], tuple[object, np.ndarray]] = OrderedDict()
        self._tags: dict[tuple[str, int], str] = {}

    def put(self, key: tuple[str, int], cache, covered_ids: np.ndarray, tag: str = "") -> None:
        self._entries[key] = (cache, covered_ids)
        self._tags[key] = tag
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            old, _ = self._entries.popitem(last=False)
            self._tags.pop(old, None)

    def best(self, sequence: np.ndarray, limit: int, tag: str = "") -> tuple[object | None, int]:
        """A forked cache covering the longest usable prefix (≤ limit) of `sequence`, and its length."""
        best_key, best_len = None, 0
        for key, (_, ids) in self._entries.items():
            if self._tags.get(key, "") != tag:
                continue
            n = min(common_prefix(ids, sequence), limit)
            if n > best_len:
                best_key, best_len = key, n
        if best_key is None:
            return None, 0
        self._entries.move_to_end(best_key)
        forked = fork_cache(self._entries[best_key][0], best_len)
        return (forked, best_len) if forked is not None else (None, 0)

    def clear(self) -> None:
        self._entries.clear()
        self._tags.clear()
