"""The top-k alternatives of the token under the cursor: rank, token, probability bar, log-prob.
Rows are numbered 1–9 for the branch keys; the chosen token is marked; the sampler's probability
is shown when sampling changed it."""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tokentui.core.run import Run


def bar(p: float, width: int = 12) -> str:
    if not p == p:
        return ""
    cells = p * width
    full = int(cells)
    part = " ▏▎▍▌▋▊▉"[int((cells - full) * 8)]
    return ("█" * full + (part if full < width else ""))[:width]


class AlternativesPane(Static):
    DEFAULT_CSS = "AlternativesPane { height: auto; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)

    def show(self, run: Run | None, branch_id: int, position: int) -> None:
        if run is None or position < 0 or position >= run.length(branch_id):
            self.update(Text("no token under the cursor"))
            return
        step = run.step(branch_id, position)
        head = Text()
        head.append(f"position {position} · ", style="dim")
        head.append(run.tokens.display(step.token_id), style="bold reverse")
        if step.rank:
            head.append(f"  p={step.prob:.4f}  rank {step.rank}  H={step.entropy:.3f} nats", style="")
        else:
            head.append("  first token: no prediction", style="dim")
        if not math.isnan(step.sampler_logprob):
            head.append(f"  sampler p={step.sampler_prob:.4f}", style="italic")
        if step.kind != "generated":
            head.append(f"  ({step.kind})", style="dim")
        table = Table.grid(padding=(0, 1))
        for col in ("#", "token", "prob", "", "logprob"):
            table.add_column(col, justify="right" if col in ("#", "prob", "logprob") else "left")
        for i, (tid, lp) in enumerate(zip(step.topk_ids.tolist(), step.topk_logprobs.tolist())):
            if tid < 0:
                continue
            p = math.exp(lp)
            mark = "▶" if tid == step.token_id else " "
            key = f"{mark}{i + 1}" if i < 9 else f"{mark} {i + 1}"
            style = "bold" if tid == step.token_id else ""
            table.add_row(
                Text(key, style=style),
                Text(run.tokens.display(tid)[:24], style=style),
                Text(f"{p:.4f}"),
                Text(bar(p), style="cyan"),
                Text(f"{lp:.3f}"),
            )
        if step.rank > run.k:
            table.add_row(
                Text("▶"),
                Text(run.tokens.display(step.token_id)[:24], style="bold"),
                Text(f"{step.prob:.4f}"),
                Text(f"rank {step.rank}", style="dim"),
                Text(f"{step.logprob:.3f}"),
            )
        from rich.console import Group

        self.update(Group(head, table))
