"""Columnar, growable storage of steps: one numpy array per field.

Runs reach 100k tokens; a Python object per step would cost ~1 kB each and make saving slow.
Columns grow by doubling, so appending during generation is amortised O(1), and the arrays are
written to the run file as they are. Top-k log-probs and layer entropies are kept in float16
(three significant digits, what display and analysis need); the chosen token's log-prob and the
entropy stay float32.
"""

from __future__ import annotations

import math

import numpy as np

from tokentui.core.metrics import finite_mean
from tokentui.core.step import Step

# name → (dtype, trailing dimension: None, "k" or "L")
FIELDS: dict[str, tuple[type, str | None]] = {
    "token_id": (np.int32, None),
    "logprob": (np.float32, None),
    "entropy": (np.float32, None),
    "rank": (np.int32, None),
    "sampler_logprob": (np.float32, None),
    "topk_ids": (np.int32, "k"),
    "topk_logprobs": (np.float16, "k"),
    "layer_entropy": (np.float16, "L"),
}


class Columns:
    """The steps of one segment (the prompt, or one branch's own tokens)."""

    def __init__(self, k: int, n_layers: int, capacity: int = 64) -> None:
        self.k, self.n_layers = k, n_layers
        self._n = 0
        self._a = {name: self._empty(name, capacity) for name in FIELDS}

    def _empty(self, name: str, n: int) -> np.ndarray:
        dtype, dim = FIELDS[name]
        shape = (n,) if dim is None else (n, self.k if dim == "k" else self.n_layers)
        fill = -1 if name in ("token_id", "topk_ids") else 0 if name == "rank" else np.nan
        return np.full(shape, fill, dtype=dtype)

    def __len__(self) -> int:
        return self._n

    def col(self, name: str) -> np.ndarray:
        """A read-only view of one field over the stored steps."""
        view = self._a[name][: self._n]
        view.flags.writeable = False
        return view

    def finite_mean(self, name: str) -> float:
        """Mean of a column over its finite values; NaN when it has none."""
        return finite_mean(self.col(name))

    def _grow(self, need: int) -> None:
        cap = len(self._a["token_id"])
        if need <= cap:
            return
        new_cap = max(need, cap * 2, 64)
        for name, arr in self._a.items():
            bigger = self._empty(name, new_cap)
            bigger[: self._n] = arr[: self._n]
            self._a[name] = bigger

    def append(self, step: Step) -> None:
        self._grow(self._n + 1)
        i = self._n
        a = self._a
        a["token_id"][i] = step.token_id
        a["logprob"][i] = step.logprob
        a["entropy"][i] = step.entropy
        a["rank"][i] = step.rank
        a["sampler_logprob"][i] = step.sampler_logprob
        n = min(self.k, len(step.topk_ids))
        a["topk_ids"][i, :n] = step.topk_ids[:n]
        a["topk_logprobs"][i, :n] = step.topk_logprobs[:n]
        m = min(self.n_layers, len(step.layer_entropy))
        a["layer_entropy"][i, :m] = step.layer_entropy[:m]
        self._n = i + 1  # last, so a reader on another thread never sees a half-written step

    def extend(self, arrays: dict[str, np.ndarray]) -> None:
        """Append many steps at once (teacher-forced scoring produces whole arrays)."""
        n = len(arrays["token_id"])
        self._grow(self._n + n)
        for name in FIELDS:
            if name in arrays:
                self._a[name][self._n : self._n + n] = arrays[name]
        self._n += n

    def set_layer_entropy(self, start: int, values: np.ndarray) -> None:
        """Fill in lens values that arrive after their steps (chunked logit lens)."""
        end = min(self._n, start + len(values))
        if end > start:
            self._a["layer_entropy"][start:end] = values[: end - start]

    def truncate(self, n: int) -> None:
        self._n = max(0, min(self._n, n))

    def get(self, i: int, position: int, kind: str) -> Step:
        a = self._a
        return Step(
            position=position,
            token_id=int(a["token_id"][i]),
            logprob=float(a["logprob"][i]),
            entropy=float(a["entropy"][i]),
            rank=int(a["rank"][i]),
            topk_ids=a["topk_ids"][i].copy(),
            topk_logprobs=a["topk_logprobs"][i].astype(np.float32),
            layer_entropy=a["layer_entropy"][i].astype(np.float32),
            sampler_logprob=float(a["sampler_logprob"][i]),
            kind=kind,
        )

    def copy(self) -> Columns:
        return Columns.from_arrays(self.k, self.n_layers, self.arrays())

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: self._a[name][: self._n].copy() for name in FIELDS}

    @classmethod
    def from_arrays(cls, k: int, n_layers: int, arrays: dict[str, np.ndarray]) -> Columns:
        n = len(arrays["token_id"])
        cols = cls(k, n_layers, capacity=max(n, 1))
        for name, (dtype, _) in FIELDS.items():
            cols._a[name][:n] = arrays[name].astype(dtype, copy=False)
        cols._n = n
        return cols

    def equals(self, other: Columns) -> bool:
        if len(self) != len(other):
            return False
        for name in FIELDS:
            x, y = self.col(name), other.col(name)
            if x.shape != y.shape or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                return False
        return True


def nan_step(position: int, token_id: int, k: int, n_layers: int, kind: str = "prompt") -> Step:
    """The first token of a sequence: nothing came before it, so nothing is known about it."""
    return Step(
        position=position,
        token_id=token_id,
        logprob=math.nan,
        entropy=math.nan,
        rank=0,
        topk_ids=np.full(k, -1, dtype=np.int32),
        topk_logprobs=np.full(k, np.nan, dtype=np.float32),
        layer_entropy=np.full(n_layers, np.nan, dtype=np.float32),
        kind=kind,
    )
