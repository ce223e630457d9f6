"""The top-k alternatives of the token under the cursor: rank, token, probability bar, log-prob.
Rows are numbered 1–9 for the branch keys; the chosen token is marked; the sampler's probability
is shown when sampling changed it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.console import Group
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Static

if TYPE_CHECKING:  # the explorer's first frame is drawn before numpy (under Run) is imported
    from tokentui.core.run import Run


def bar(p: float, width: int = 12) -> str:
    if not p == p:
        return ""
    cells = p * width
    full = int(cells)
    part = " ▏▎▍▌▋▊▉"[int((cells - full) * 8)]
    return ("█" * full + (part if full < width else ""))[:width]


class AlternativesPane(Static, can_focus=True):
    """Focus it (tab or click) to pick an alternative with ↑/↓ and branch on it with Enter."""

    BINDINGS = [
        Binding("up,k", "select(-1)", "previous alternative", show=False),
        Binding("down,j", "select(1)", "next alternative", show=False),
        Binding("enter", "choose", "branch on it", show=False),
    ]

    class Chosen(Message):
        """The user picked alternative `index` (0-based) of the token under the cursor."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes, markup=False)
        self.selected = 0
        self._args: tuple | None = None

    def action_select(self, delta: int) -> None:
        if self._args is not None:
            run, branch_id, position = self._args
            k = run.k if run is not None else 1
            self.selected = max(0, min(k - 1, self.selected + delta))
            self.show(run, branch_id, position)

    def on_resize(self) -> None:
        """Columns and bars are sized to the pane: lay them out again at its new width."""
        if self._args is not None:
            self.show(*self._args)

    def action_choose(self) -> None:
        self.post_message(self.Chosen(self.selected))

    def _widths(self) -> tuple[int, int]:
        """(token column, bar) widths that fit the pane: a row is 5 + tok + 8 + bar + 8 cells."""
        inner = self.content_region.width or 40
        tok = max(6, min(16, (inner - 21) // 2))
        return tok, max(3, inner - 21 - tok)

    def _row(self, run: Run, n: int, tid: int, p: float, lp: float, chosen: bool, bar_text: str | None) -> Text:
        tok_w, bar_w = self._widths()
        token = run.tokens.display(tid)
        if cell_len(token) > tok_w:
            token = token[: tok_w - 1] + "…"
        pad = " " * max(0, tok_w - cell_len(token))
        style = "bold" if chosen else ""
        row = Text(f"{'▶' if chosen else ' '}{n:>3} ", style=style)
        row.append(token + pad, style=style)
        row.append(f" {p:6.4f} ")
        row.append(f"{bar(p, bar_w) if bar_text is None else bar_text[:bar_w]:<{bar_w}}", style="cyan")
        row.append(f"{lp:8.3f}\n")
        return row

    def show(self, run: Run | None, branch_id: int, position: int) -> None:
        if self._args is None or self._args[1:] != (branch_id, position):
            self.selected = 0
        self._args = (run, branch_id, position)
        if run is None or position < 0 or position >= run.length(branch_id):
            self.update(Text("no token under the cursor"), layout=False)
            return
        step = run.step(branch_id, position)
        head = Text()
        head.append(f"position {position} · ", style="dim")
        head.append(run.tokens.display(step.token_id)[:40], style="bold reverse")
        if step.kind != "generated":
            head.append(f" ({step.kind})", style="dim")
        if step.rank:
            head.append(f"\np={step.prob:.4f} · rank {step.rank} · H={step.entropy:.3f} nats")
        else:
            head.append("\nfirst token: nothing came before it", style="dim")
        if not math.isnan(step.sampler_logprob):
            head.append(f"\nsampler p={step.sampler_prob:.4f} (raw {step.prob:.4f})", style="italic")
        # plain padded Text rows: a rich Table re-measures every cell on each cursor move
        rows = Text()
        for i, (tid, lp) in enumerate(zip(step.topk_ids.tolist(), step.topk_logprobs.tolist())):
            if tid < 0:
                continue
            chosen = tid == step.token_id
            row = self._row(run, i + 1, tid, math.exp(lp), lp, chosen, None)
            if self.has_focus and i == self.selected:
                row.stylize("reverse")
            rows.append(row)
        if step.rank > run.k:
            rows.append(self._row(run, step.rank, step.token_id, step.prob, step.logprob, True, f"rank {step.rank}"))
        rows.rstrip()
        self.update(Group(head, rows), layout=False)
