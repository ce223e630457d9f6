"""Columnar, growable storage of steps: one numpy array per recorded measure.

Runs reach 100k tokens; a Python object per step would cost ~1 kB each and make saving slow.
Columns grow by doubling, so appending during generation is amortised O(1), and the arrays are
written to the run file as they are. Which arrays exist, their dtypes and shapes come from the
run's `Layout` (its measures' declarations and its sizes k, layer, j), never from a fixed list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tokentui.core.measures import BASE, MEASURES, Measure, empty
from tokentui.core.metrics import finite_mean
from tokentui.core.step import Step


@dataclass(frozen=True)
class Layout:
    """The columns a run records and the sizes of their dimensions."""

    measures: tuple[Measure, ...]
    k: int
    n_layers: int
    j: int = 1

    @classmethod
    def of(cls, k: int, n_layers: int, names: Iterable[str] = BASE, j: int = 1) -> Layout:
        return cls(tuple(MEASURES[n] for n in names), k, n_layers, j)

    @property
    def dims(self) -> dict[str, int]:
        return {"k": self.k, "layer": self.n_layers, "j": self.j}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.measures)

    @property
    def step_bytes(self) -> int:
        """What one step's values take in memory (every column's row)."""
        return sum(empty(m, 1, self.dims).nbytes for m in self.measures)

    def measure(self, name: str) -> Measure:
        for m in self.measures:
            if m.name == name:
                return m
        raise KeyError(name)


class Columns:
    """The steps of one segment (the prompt, or one branch's own tokens)."""

    def __init__(self, layout: Layout, capacity: int = 0) -> None:
        """Empty columns. Nothing is allocated until steps arrive (or `capacity` asks): a row can be
        k + layers × j values, and a run file's sizes are untrusted until its arrays prove them."""
        self.layout = layout
        self._n = 0
        self._a = {m.name: empty(m, capacity, layout.dims) for m in layout.measures}

    @property
    def k(self) -> int:
        return self.layout.k

    @property
    def n_layers(self) -> int:
        return self.layout.n_layers

    def __len__(self) -> int:
        return self._n

    def col(self, name: str) -> np.ndarray:
        """A read-only view of one measure over the stored steps."""
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
        for m in self.layout.measures:
            bigger = empty(m, new_cap, self.layout.dims)
            bigger[: self._n] = self._a[m.name][: self._n]
            self._a[m.name] = bigger

    def append(self, step: Step) -> None:
        """Store a step; measures it lacks stay 'unknown', longer vectors are cut to the layout."""
        self._grow(self._n + 1)
        i = self._n
        self._a["token_id"][i] = step.token_id
        for name, value in step.values.items():
            arr = self._a.get(name)
            if arr is None:
                continue
            if arr.ndim == 1:
                arr[i] = value
            else:
                v = np.asarray(value)
                n = min(arr.shape[1], len(v))
                arr[i, :n] = v[:n]
        self._n = i + 1  # last, so a reader on another thread never sees a half-written step

    def extend(self, arrays: dict[str, np.ndarray]) -> None:
        """Append many steps at once (teacher-forced scoring produces whole arrays)."""
        n = len(arrays["token_id"])
        self._grow(self._n + n)
        for name, arr in arrays.items():
            if name in self._a:
                self._a[name][self._n : self._n + n] = arr
        self._n += n

    def set_values(self, name: str, start: int, values: np.ndarray) -> None:
        """Fill in values that arrive after their steps (the chunked logit lens)."""
        end = min(self._n, start + len(values))
        if end > start and name in self._a:
            self._a[name][start:end] = values[: end - start]

    def truncate(self, n: int) -> None:
        self._n = max(0, min(self._n, n))

    def get(self, i: int, position: int, kind: str) -> Step:
        values = {}
        for m in self.layout.measures[1:]:
            v = self._a[m.name][i]
            values[m.name] = v.copy() if v.ndim else v.item()
        return Step(position, int(self._a["token_id"][i]), values, kind)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: a[: self._n].copy() for name, a in self._a.items()}

    def copy(self) -> Columns:
        return Columns.from_arrays(self.layout, self.arrays(), adopt=True)

    @classmethod
    def from_arrays(cls, layout: Layout, arrays: dict[str, np.ndarray], adopt: bool = False) -> Columns:
        """Columns holding `arrays` (a measure missing stays 'unknown'). `adopt`: the caller gives
        the arrays up, and those already of the measure's dtype and shape are kept, not copied (a
        run file's arrays: a copy of each, all allocated before the first was copied, made
        loading a large run take about five times its file's size)."""
        n = len(arrays["token_id"])
        cols = cls(layout)  # (nothing allocated yet)
        for m in layout.measures:
            shape = m.shape_for(n, layout.dims)
            given = arrays.get(m.name)
            if given is not None:
                a = given.astype(m.dtype, copy=False)
                if adopt and a.shape == shape and a.flags.writeable and a.flags.c_contiguous:
                    cols._a[m.name] = a
                    continue
            cols._a[m.name] = empty(m, n, layout.dims)  # exactly what the arrays hold: never a row they lack
            if given is not None:
                cols._a[m.name][:n] = given.astype(m.dtype, copy=False)
        cols._n = n
        return cols

    def equals(self, other: Columns) -> bool:
        if len(self) != len(other) or self.layout != other.layout:
            return False
        for name in self.layout.names:
            x, y = self.col(name), other.col(name)
            if x.shape != y.shape or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                return False
        return True


def nan_step(position: int, token_id: int, kind: str = "prompt") -> Step:
    """The first token of a sequence: nothing came before it, so nothing is known about it (every
    measure is left at its declared 'unknown' value)."""
    return Step(position, token_id, {}, kind)
