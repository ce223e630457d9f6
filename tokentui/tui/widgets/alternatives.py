"""The top-k alternatives of the token under the cursor: rank, token, probability, a bar whose
length is the probability, log-prob. Rows are numbered 1–9 for the branch keys; the chosen token is
marked; the sampler's probability is shown when sampling changed it. In a narrow pane the log-prob
column goes first, so the tokens keep their room."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text
from textual.message import Message
from textual.widgets import Static

from tokentui.core.display import prob_text
from tokentui.tui.actions import ALTERNATIVES, bindings
from tokentui.tui.widgets.styles import part_style
from tokentui.tui.widgets.token_text import lone_id

if TYPE_CHECKING:  # the explorer's first frame is drawn before numpy (under Run) is imported
    from tokentui.core.run import Run


def _p_text(p: float, full: bool) -> str:
    """A probability in 5 cells ("0.415"), or in 4 (".415", "1.00", "3e-4") where room is short
    ("~0" for what its scientific form would not fit: below 1e-9, or 1e-99 in 5)."""
    text = prob_text(p, 3)
    if "e" in text:
        return text if len(text) <= (5 if full else 4) else "~0"
    if full:
        return text
    return text[1:] if text.startswith("0") else f"{p:.2f}"


def bar(p: float, width: int = 12) -> str:
    """A horizontal bar `p` (0..1) of `width` cells long, in eighths of a cell."""
    if not p == p:
        return ""
    p = max(0.0, min(1.0, p))
    cells = p * width
    full = int(cells)
    part = " ▏▎▍▌▋▊▉"[int((cells - full) * 8)]
    return ("█" * full + (part if full < width else ""))[:width].rstrip()


class AlternativesPane(Static, can_focus=True):
    """Focus it (tab or click) to pick an alternative with ↑/↓ and branch on it with Enter."""

    BINDINGS = bindings(ALTERNATIVES)
    COMPONENT_CLASSES = {
        "alternatives--bar",
        "alternatives--chosen",
        "alternatives--selected",
        "alternatives--muted",
        "alternatives--token",
    }

    class Chosen(Message):
        """The user picked alternative `index` (0-based) of the token under the cursor."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    class Contrast(Message):
        """The user asked why the token under the cursor and not alternative `token_id`."""

        def __init__(self, token_id: int) -> None:
            super().__init__()
            self.token_id = token_id

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes, markup=False)
        self.selected = 0
        self._args: tuple[Run | None, int, int] | None = None  # what show() showed last

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

    def on_focus(self) -> None:
        self.on_resize()  # show the selection

    def on_blur(self) -> None:
        self.on_resize()

    def action_choose(self) -> None:
        self.post_message(self.Chosen(self.selected))

    def action_contrast(self) -> None:
        """Attribute the token under the cursor against the selected alternative."""
        if self._args is None:
            return
        run, branch_id, position = self._args
        if run is None or not 0 <= position < run.length(branch_id):
            return
        ids = run.step(branch_id, position).topk_ids
        if self.selected < len(ids) and ids[self.selected] >= 0:
            self.post_message(self.Contrast(int(ids[self.selected])))

    def widths(self) -> tuple[int, int, bool]:
        """(token column, bar, log-prob shown) fitting the pane: a row is 5 + tok + 8 + bar
        (+ 8 for the log-prob when there is room for a token of 14 and a bar of 6: the token comes
        first, the log-prob is the probability again)."""
        inner = self.content_region.width or 40
        with_lp = inner >= 5 + 14 + 8 + 6 + 8
        rest = inner - 13 - (8 if with_lp else 0)
        tok = max(6, min(16, rest - max(4, rest // 3)))
        return tok, max(3, rest - tok), with_lp

    def _row(self, run: Run, n: int, tid: int, p: float, lp: float, chosen: bool, selected: bool) -> Text:
        tok_w, bar_w, with_lp = self.widths()
        style = part_style(self, "alternatives--chosen") if chosen else None
        if selected:  # the row's text, not its bar: only the bar's length carries the probability
            style = part_style(self, "alternatives--selected")
        token = lone_id(run, tid, tok_w)
        row = Text(f"{'▶' if chosen else ' '}{n:>3} ")
        row.append_text(token)
        row.append(" " * max(0, tok_w - token.cell_len))
        row.append(f" {prob_text(p):>6} ")
        if style:
            row.stylize(style)
        row.append(f"{bar(p, bar_w):<{bar_w}}", style=part_style(self, "alternatives--bar"))
        if with_lp:
            row.append(f"{lp:8.3f}")
        row.append("\n")
        return row

    def show(self, run: Run | None, branch_id: int, position: int) -> None:
        if self._args is None or self._args[1:] != (branch_id, position):
            self.selected = 0
        self._args = (run, branch_id, position)
        if run is None or position < 0 or position >= run.length(branch_id):
            self.update(Text("no token under the cursor"), layout=False)
            return
        muted = part_style(self, "alternatives--muted")
        step = run.step(branch_id, position)
        head = Text()
        head.append(f"position {position} · ", style=muted)
        width = max(8, (self.content_region.width or 40) - 12)
        head.append_text(lone_id(run, step.token_id, width, part_style(self, "alternatives--token")))
        if step.kind != "generated":
            head.append(f" ({step.kind})", style=muted)
        if step.rank and "kl_ab" in run.layout.names and int(step.get("rank_b", 0)):
            self.update(Group(head, self._compared(run, step)))  # (a taller pane than one model's)
            return
        if step.rank:
            line = f"p={prob_text(step.prob)} · rank {step.rank} · H={step.entropy:.3f} nats"
            if len(line) > (self.content_region.width or 40):  # a narrow pane: the same, shorter
                line = f"p={prob_text(step.prob, 3)} rank {step.rank} H={step.entropy:.2f} nats"
            head.append("\n" + line)
        else:
            head.append("\nfirst token: nothing came before it", style=muted)
        if step.rank and "kl_ab" in run.layout.names:  # (a compared run's position B has no values for)
            # (a trial took a branch whose comparison was stopped for a run without one)
            head.append("\nmodel B: not compared here", style=muted)
        if not math.isnan(step.sampler_logprob):
            head.append(f"\nsampler p={prob_text(step.sampler_prob)} (raw {prob_text(step.prob)})", style=muted)
        # plain padded Text rows: a rich Table re-measures every cell on each cursor move
        rows = Text()
        for i, (tid, lp) in enumerate(zip(step.topk_ids.tolist(), step.topk_logprobs.tolist())):
            if tid < 0:
                continue
            if tid == step.token_id and not math.isnan(step.logprob):  # the header's float32 value, not
                lp = step.logprob  # the top-k's float16 one (else the two differ in the 4th decimal)
            selected = self.has_focus and i == self.selected
            rows.append_text(self._row(run, i + 1, tid, math.exp(lp), lp, tid == step.token_id, selected))
        if step.rank > run.k:  # the chosen token, outside the top k: numbered by its rank
            rows.append_text(self._row(run, step.rank, step.token_id, step.prob, step.logprob, True, False))
        rows.rstrip()
        self.update(Group(head, rows), layout=False)

    def _compared(self, run: Run, step) -> Text:
        """A comparison of two models (`tokentui compare`): the token's p and rank under each, the
        divergences, then both models' top-k side by side (the token itself marked ▶)."""
        width = self.content_region.width or 40
        lp_b = float(step.get("logprob_b"))
        kl = f"KL(A‖B) {float(step.get('kl_ab')):.3f} · KL(B‖A) {float(step.get('kl_ba')):.3f}"
        js = f"JS {float(step.get('js')):.3f} nats"
        a = (f"A: p={prob_text(step.prob)}", f"rank {step.rank}", f"H={step.entropy:.3f}")
        b = (
            f"B: p={prob_text(math.exp(lp_b))}",
            f"rank {int(step.get('rank_b'))}",
            f"H={float(step.get('entropy_b')):.3f}",
        )
        out = Text(
            "".join(" · ".join(x) + "\n" if len(" · ".join(x)) <= width else " ".join(x) + "\n" for x in (a, b))
            + (f"{kl} · {js}\n" if len(kl) + len(js) + 3 <= width else f"{kl}\n{js}\n")
        )  # (a narrow pane: "p=… rank … H=…" without the dots, rather than a line broken in two)
        cols = [
            list(zip(step.topk_ids.tolist(), step.topk_logprobs.tolist())),
            list(zip(step.get("topk_ids_b").tolist(), step.get("topk_logprobs_b").tolist())),
        ]
        n_rows = max(len(c) for c in cols)
        idx_w = len(str(n_rows)) + 1
        half = max(10, (width - idx_w - 1) // 2)
        # a narrow pane (80 columns: 36) writes p as .415, so a token gets 9 cells rather than 6
        # (a trial could not tell ␠complex from ␠complexity)
        full_p = half - 8 >= 10  # (a cell: ▶, the token, " 0.415", a space before │)
        tok_w = max(4, half - (8 if full_p else 7))
        out.append(
            f"{'':{idx_w}}{' model A':<{half}}│ model B\n",
            style=part_style(self, "alternatives--muted"),
        )
        chosen = part_style(self, "alternatives--chosen")
        for i in range(n_rows):
            out.append(f"{i + 1:>{idx_w - 1}} ")
            for side, col in enumerate(cols):
                tid, lp = col[i] if i < len(col) else (-1, math.nan)
                mark = "▶" if tid == step.token_id else " "
                cell = Text(mark)
                if tid >= 0:
                    token = lone_id(run, tid, tok_w)
                    cell.append_text(token)
                    cell.append(" " * max(0, tok_w - token.cell_len))
                    cell.append(" " + _p_text(math.exp(lp), full_p))
                if tid == step.token_id:
                    cell.stylize(chosen)
                cell.append(" " * max(0, half - cell.cell_len))
                out.append_text(cell)
                if side == 0:
                    out.append("│")
            out.append("\n")
        out.rstrip()
        return out
