"""The settings line above the tokens: how the run (and the branch) under view was generated, read
from the run's own metadata, so a replayed run shows its own sampler, not the session's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widgets import Static

from tokentui.core.display import lone_text, sanitize
from tokentui.core.params import GenerationSettings, SamplingParams
from tokentui.tui.widgets.parts import join_parts
from tokentui.tui.widgets.styles import part_style

if TYPE_CHECKING:
    from tokentui.core.run import Run


def run_settings(run: Run, branch_id: int) -> GenerationSettings:
    """The settings that grew the branch under view: its own sampler when the run file records
    one (a fork or a resample may sample differently from the run's first branch), else the run's;
    `forced`: the text the branch was made to take (its forced tokens, those streamed in so far)."""
    forced = ""
    b = run.branches[branch_id] if 0 <= branch_id < len(run.branches) else None
    if b is not None and b.n_forced:
        ids = b.steps.col("token_id")[: b.n_forced].tolist()
        forced = run.tokens.text(ids).decode("utf-8", errors="replace")
    sampling = b.sampling if b is not None and b.sampling is not None else run.meta.sampling
    return GenerationSettings(SamplingParams.from_dict(sampling), run.meta.k, run.meta.chat, forced)


def describe(settings: GenerationSettings) -> str:
    """The settings in one line, safe to show: sampler and length, k, chat, and the forced text
    with its spaces visible."""
    line = sanitize(settings.sampling.describe()) + f" · k={settings.k} · chat {'on' if settings.chat else 'off'}"
    if settings.forced:
        line += f" · forced {lone_text(settings.forced)[:40]}"
    return line


class SettingsLine(Static):
    COMPONENT_CLASSES = {"settings-line--label"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self._args: tuple[Run | None, int, GenerationSettings, dict[str, Any] | None] | None = None
        self._shown: Text | None = None  # what was drawn last (redrawn as tokens stream in: only a change is drawn)

    def show(
        self, run: Run | None, branch_id: int, session: GenerationSettings, steering: dict[str, Any] | None = None
    ) -> None:
        """The settings of `branch_id` of `run`, or with no run those a new run gets: `session`,
        steered by `steering` (a record; None: steering off — "next run: greedy …" said nothing of
        the steering `explore --steer` had on)."""
        self._args = (run, branch_id, session, steering)
        label = part_style(self, "settings-line--label")
        width = self.content_region.width or 120
        first = Text()
        if run is None:
            first.append("next run: ", style=label)
            parts = describe(session).split(" · ")
            if steering is not None:
                from tokentui.core.steering import short

                parts.insert(0, short(steering))
        else:
            first.append("run: " if branch_id == 0 else f"branch #{branch_id}: ", style=label)
            b = run.branches[branch_id] if 0 <= branch_id < len(run.branches) else None
            if b is not None and b.status == "scored":  # teacher-forced: no sampler, no length
                chat = f"chat {'on' if run.meta.chat else 'off'}"
                parts = ["scored text", "teacher-forced", f"k={run.meta.k}", chat]
            else:
                parts = describe(run_settings(run, branch_id)).split(" · ")
            if run.meta.tree is not None:
                from tokentui.core.tree import node_facts

                if node_facts(run, branch_id) is not None:  # not sampled: the search chose the token
                    parts = ["a tree search's node (seed 002's threshold search)", f"k={run.meta.k}"]
            if b is not None and b.steering is not None:  # what a replay must say: this branch was steered
                from tokentui.core.steering import short

                parts.insert(0, short(b.steering))  # first: the line has two rows, a narrow pane cuts the rest
        first.append(parts[0])
        t = join_parts([first, *map(Text, parts[1:])], width)  # more lines rather than cutting the settings off
        # two rows are shown (wrapped as the widget wraps them): what did not fit went unseen (the
        # forced prefix, last) with no sign; the second row now ends in "…" when more follows
        rows = t.wrap(self.app.console, width)
        if len(rows) > 2:  # the first row as wrapped; the rest on the second, its parts rejoined
            first_row = rows[0]
            at = len(first_row.plain)
            rest = Text(" · ").join(t[at:].split("\n"))
            rest = rest[len(rest.plain) - len(rest.plain.lstrip(" ·")) :]  # (wrapped at a separator: none first)
            if rest.cell_len > width:  # (cut at the width, not on a separator)
                rest.truncate(width - 1)
                rest.rstrip()
                while rest.plain.endswith("·"):
                    rest.right_crop(1)
                    rest.rstrip()
                rest.append("…")
            first_row = first_row[: len(first_row.plain.rstrip(" ·"))]
            t = Text("\n").join([first_row, rest])
        hint = "  (s: session settings)"
        if "\n" not in t.plain and t.cell_len + len(hint) <= width:
            t.append(hint, style=label)
        if t != self._shown:
            self._shown = t
            self.update(t)

    def on_resize(self) -> None:
        # (after this layout pass: new text given while it runs kept the height of the old, and a
        # terminal widened again kept a blank second row)
        self.call_after_refresh(self._redraw)

    def _redraw(self) -> None:
        if self._args is not None:
            self.show(*self._args)
