"""The tree search's parameters (seed 002's names and defaults, plus tokentui's node budget) as a
form: prefilled with the last values used (the seed's defaults at first); Enter starts the search,
Esc cancels, a bad value is named (TreeParams.check: thresholds in [0, 1], min ≤ max, limits ≥ 1)."""

from __future__ import annotations

from dataclasses import fields

from tokentui.core.params import RunError, TreeParams
from tokentui.tui.screens.form import FormScreen

LABELS = {
    "min_branch_threshold": "min branch threshold (Tmin)",
    "max_branch_threshold": "max branch threshold (Tmax)",
    "soft_queue_limit": "soft queue limit (Qlimit)",
    "candidate_threshold": "candidate threshold",
    "max_depth": "max depth",
    "max_completed_paths": "max completed paths",
    "max_nodes": "max nodes (budget)",
}


class TreeForm(FormScreen[TreeParams]):
    FIELDS = tuple((f.name, LABELS[f.name]) for f in fields(TreeParams))
    TITLE_LINE = "grow a tree: T = Tmin + min(1, |Q|/Qlimit)·(Tmax − Tmin) — Enter starts, Esc cancels"
    BOX_ID = "tree-box"

    def __init__(self, params: TreeParams, where: str) -> None:
        """`where`: one line saying where the tree will grow from."""
        super().__init__({k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in params.to_dict().items()})
        self.TITLE_LINE = f"{self.TITLE_LINE}\n{where}"

    def parse(self, raw: dict[str, str]) -> TreeParams:
        values: dict[str, object] = {}
        for f in fields(TreeParams):
            text = raw[f.name].strip()
            try:
                values[f.name] = int(text) if f.type in (int, "int") else float(text)
            except ValueError:
                raise RunError(f"not a number: {LABELS[f.name]}") from None
        params = TreeParams(**values)  # type: ignore[arg-type]
        params.check()
        return params
