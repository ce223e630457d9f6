"""What the token stream shows of one branch: display texts, metric levels, kinds, line layout.

Kept apart from the widget so it can grow incrementally while tokens stream in (only new tokens
are converted, only the last line is re-wrapped) and be tested without a terminal.
"""

from __future__ import annotations

import codecs
from bisect import bisect_right

import numpy as np
from rich.cells import cell_len

from tokentui.core.display import HEX_ERRORS, display_token, sanitize
from tokentui.core.metrics import METRICS
from tokentui.core.run import Run

KIND_CODE = {"prompt": 0, "forced": 1, "generated": 2}
WORD_OPENERS = (" ", "↵", "→")  # a token whose text starts so opens a word (lines wrap before it)


def pooled(values: np.ndarray, cells: int) -> list[float]:
    """Mean-pool values (0..1, NaN allowed) into `cells` bins (a max saturates on long runs); NaN
    where a bin holds no value."""
    n = len(values)
    cells = max(1, min(cells, n))
    edges = np.linspace(0, n, cells + 1).astype(int)
    out = np.full(cells, np.nan)
    for c in range(cells):
        chunk = values[edges[c] : max(edges[c] + 1, edges[c + 1])]
        chunk = chunk[np.isfinite(chunk)]
        if chunk.size:
            out[c] = chunk.mean()
    return out.tolist()


class BranchView:
    def __init__(self, run: Run, branch_id: int, metric: str, decoded: bool = False, width: int = 80) -> None:
        """`decoded`: show running text (characters split over tokens joined, newlines as line
        breaks) instead of each token's own escaped bytes. `width`: columns to lay lines out to."""
        self.run, self.branch_id, self.metric, self.decoded = run, branch_id, metric, decoded
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors=HEX_ERRORS)
        # A token holding a line break ends its line with `texts[i]` (up to and including its last
        # newline); what follows that newline in the same token (`tails[i]`: the indentation of
        # "\n    ") opens the next line, so code keeps its indentation in the stream.
        self.texts: list[str] = []
        self.tails: list[str] = []
        self.widths: list[int] = []
        # line breaks each token ends its line with: 0 or 1 (a token shown as its own escaped bytes),
        # in the decoded view as many as its text holds ("\n\n" leaves a blank line: a line of no tokens)
        self.newline: list[int] = []
        self.kinds = np.zeros(0, dtype=np.int8)
        self.levels = np.zeros(0)
        self.width = max(8, width)
        self.line_starts: list[int] = [0]
        self.blank: set[int] = set()  # lines that are a decoded "\n\n"'s blank line (no token)
        self._pooled: tuple[np.ndarray, int, list[float]] | None = None  # (levels, cells, pooled)
        self.sync()

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_lines(self) -> int:
        return len(self.line_starts) if self.texts else 0

    def sync(self) -> bool:
        """Catch up with the run (new tokens, new metric values); True if anything changed."""
        ids = self.run.sequence(self.branch_id)
        old = len(self.texts)
        changed = len(ids) != old
        if changed:
            self._append(ids[old:])
            self.kinds = self._kinds()
        self.levels = self.metric_levels()
        self._relayout(old)
        return changed

    def _append(self, new_ids: np.ndarray) -> None:
        """Display text, width and newline flag of new tokens, computed once per distinct id."""
        if not len(new_ids):
            return
        if self.decoded:
            self._append_decoded(new_ids)
            return
        table = self.run.tokens
        uniq, inverse = np.unique(new_ids, return_inverse=True)
        texts, tails, newline = [], [], []
        for t in uniq.tolist():
            data = table.bytes_of(t)
            cut = data.rfind(b"\n") + 1
            if cut and cut < len(data):
                texts.append(display_token(data[:cut]))
                tails.append(display_token(data[cut:]))
            else:
                texts.append(table.display(t))
                tails.append("")
            newline.append(int(cut > 0))
        widths = [max(1, cell_len(t)) for t in texts]
        inv = inverse.tolist()
        self.texts.extend([texts[i] for i in inv])
        self.tails.extend([tails[i] for i in inv])
        self.widths.extend([widths[i] for i in inv])
        self.newline.extend([newline[i] for i in inv])

    def _append_decoded(self, new_ids: np.ndarray) -> None:
        """Each token shows the characters its bytes complete. The incremental decoder holds back
        an incomplete character (at most 3 bytes, UTF-8's own cap) until the next token ends it."""
        table = self.run.tokens
        for tid in new_ids.tolist():
            chunk = self._decoder.decode(table.bytes_of(tid)).replace("\t", "    ")
            *ended, tail = chunk.split("\n")  # the lines the token ends, then what opens the next
            breaks = len(ended)
            if breaks > 1 and any(ended[1:]):  # text between two of its breaks (" a\nb\n"): one line,
                ended, breaks = ["↵".join(ended)], 1  # its inner breaks shown (never misplaced)
            text = sanitize(ended[0] if ended else tail)
            self.texts.append(text)
            self.tails.append(sanitize(tail) if ended else "")
            self.widths.append(cell_len(text))
            self.newline.append(breaks)

    def _kinds(self) -> np.ndarray:
        out = np.zeros(self.run.length(self.branch_id), dtype=np.int8)
        for start, _cols, lo, hi, src in self.run.segments(self.branch_id):
            if src == "prompt":
                continue
            b = self.run.branches[int(src[1:])]
            out[start + lo : start + hi] = KIND_CODE["generated"]
            forced_end = min(hi, b.n_forced)
            if forced_end > lo:
                out[start + lo : start + forced_end] = KIND_CODE["forced"]
        return out

    def metric_values(self) -> np.ndarray:
        return METRICS[self.metric].compute(lambda name: self.run.column(self.branch_id, name))

    def metric_levels(self) -> np.ndarray:
        return METRICS[self.metric].normalized(self.metric_values())

    def pooled_levels(self, cells: int) -> list[float]:
        """The levels pooled into `cells` bins (the layers pane's strip); kept until they change."""
        if self._pooled is None or self._pooled[0] is not self.levels or self._pooled[1] != cells:
            self._pooled = (self.levels, cells, pooled(self.levels, cells))
        return self._pooled[2]

    def set_metric(self, metric: str) -> None:
        self.metric = metric
        self.levels = self.metric_levels()

    def set_width(self, width: int) -> None:
        width = max(8, width)
        if width != self.width:
            self.width = width
            self.line_starts, self.blank = [0], set()
            self._relayout(0)

    def _relayout(self, from_token: int) -> None:
        """Wrap tokens into lines from the line holding `from_token` on."""
        if not self.texts:
            self.line_starts = [0]
            return
        line = max(0, self.line_of(min(from_token, len(self.texts) - 1)))
        del self.line_starts[line + 1 :]
        self.blank = {b for b in self.blank if b <= line}
        start = self.line_starts[line]
        col = self.indent(line)
        word, word_col = start, col  # the token the word being laid out starts at, and its column
        for i in range(start, len(self.texts)):
            w = self.widths[i]
            if i > self.line_starts[-1] and self.texts[i][:1] in WORD_OPENERS:
                word, word_col = i, col
            if col and col + w > self.width:
                # a word that fits a line moves to the next whole ("2024" in four digit tokens
                # was cut between its digits); a longer one is cut between its tokens
                if self.line_starts[-1] < word < i and col - word_col + w <= self.width:
                    self.line_starts.append(word)
                    col -= word_col
                else:
                    self.line_starts.append(i)
                    col = 0
                word, word_col = self.line_starts[-1], 0
            col += w
            if self.newline[i] and i + 1 < len(self.texts):
                for _ in range(self.newline[i] - 1):  # ("\n\n": a blank line first)
                    self.line_starts.append(i + 1)
                    self.blank.add(len(self.line_starts) - 1)
                self.line_starts.append(i + 1)
                col = self.indent(len(self.line_starts) - 1)
                word, word_col = i + 1, col

    def carried(self, line: int) -> tuple[int, str]:
        """(the token whose text after its newline opens `line`, that text), or (-1, "")."""
        start = self.line_starts[line]
        # (on the line the token's break opens: not a blank line before it, nor a line a wrap
        # started at the same token right after the carried text)
        opened = self.line_starts[line - 1] != start or (line - 1) in self.blank if line else False
        if opened and start and self.newline[start - 1] and self.tails[start - 1] and line not in self.blank:
            return start - 1, self.tails[start - 1][: self.width // 2]
        return -1, ""

    def has_tokens(self, line: int) -> bool:
        """Whether `line` holds a token (not a blank line, nor a line of carried text alone)."""
        start, end = self.line_range(line)
        return start < end

    def indent(self, line: int) -> int:
        """Columns at the start of `line` taken by text carried over from the token before."""
        return cell_len(self.carried(line)[1])

    def line_of(self, token: int) -> int:
        return max(0, bisect_right(self.line_starts, token) - 1)

    def line_range(self, line: int) -> tuple[int, int]:
        start = self.line_starts[line]
        end = self.line_starts[line + 1] if line + 1 < len(self.line_starts) else len(self.texts)
        return start, end

    # --- navigation -------------------------------------------------------------------------
    def word_start(self, pos: int, direction: int) -> int:
        """The next (+1) or previous (-1) token that starts a word (space, newline or symbol before)."""
        i = pos + direction
        while 0 <= i < len(self.texts):
            t = self.texts[i]
            if t[:1] in WORD_OPENERS or (i > 0 and self.newline[i - 1]):
                return i
            i += direction
        return max(0, min(len(self.texts) - 1, i - direction))

    def next_where(self, pos: int, direction: int, mask: np.ndarray) -> int | None:
        idx = np.nonzero(mask)[0]
        if direction > 0:
            after = idx[idx > pos]
            return int(after[0]) if after.size else None
        before = idx[idx < pos]
        return int(before[-1]) if before.size else None

    def compared(self) -> bool:
        """Whether any position of the branch has a comparison value (KL(A‖B)) at all."""
        names = self.run.layout.names
        return "kl_ab" in names and bool(np.isfinite(self.run.column(self.branch_id, "kl_ab")).any())

    def uncertain_mask(self, kind: str) -> np.ndarray:
        """`rank`: the model's first choice was not taken · `entropy`: the top 10% most uncertain ·
        `kl`: the top 10% of KL(A‖B) in a comparison of two models (nowhere in another run).
        A position with a value of 0 (models that agree, a certain choice) is never among them.
        Where the branch has an answer (forced or generated tokens, also of a branch taken inside
        the prompt), the prompt's positions are left out (the top 10% of the answer): a trial's `}`
        in a chat walked through the system prompt first."""
        n = self.run.length(self.branch_id)
        answer = np.ones(n, dtype=bool)  # (tokens streamed in since the view last synced: the answer's)
        m = min(n, len(self.kinds))
        answer[:m] = self.kinds[:m] != KIND_CODE["prompt"]
        within = answer if answer.any() else np.ones(n, dtype=bool)  # (a scored text: all prompt)
        if kind == "rank":
            return (self.run.column(self.branch_id, "rank") > 1) & within
        if kind == "kl" and "kl_ab" not in self.run.layout.names:
            return np.zeros(n, dtype=bool)
        ent = self.run.column(self.branch_id, "kl_ab" if kind == "kl" else "entropy").astype(np.float64)
        finite = ent[np.isfinite(ent) & within]
        if not finite.size:
            return np.zeros(len(ent), dtype=bool)
        return (ent >= np.quantile(finite, 0.9)) & (ent > 0) & within
