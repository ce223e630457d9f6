"""The explorer's attribution actions (issue 15): which earlier tokens made the model say the
token under the cursor (`a`), the same against an alternative picked in the alternatives pane
("why this and not that"), the method (`M`), and the association matrix of a range (`A`).

A record the run already holds for that position, method and target is shown at once (so a
replay without torch or a model shows what was computed before); otherwise the engine's worker
computes it, with progress in the status bar (or on the matrix screen) and escape cancelling. The
record goes into the run (and its file: the worker saves after it). While one is on show the
stream is coloured by its scores (tui/heat.py) and the attribution pane lists its top
contributors; moving the cursor keeps it; `a` on its target or escape go back to the metric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokentui.tui.state import AppState, AttributionJob, Needs

if TYPE_CHECKING:  # the app this is mixed into, for the type checker only (tui/host.py)
    from tokentui.core.attribution import Attribution
    from tokentui.core.run import Run
    from tokentui.tui.host import ExplorerHost
    from tokentui.tui.screens.matrix import MatrixScreen
    from tokentui.tui.state import Update

    _Base = ExplorerHost
else:
    _Base = object

MATRIX_ROWS = 256  # output tokens of one association matrix at most (the last ones up to the cursor)


def stored(run: Run, branch: int, positions: list[int], method: str, alternative: int | None) -> Attribution | None:
    """What `run` holds of `positions` of `branch` (same sequence up to each of them) for this
    method and target, or None when a position is missing: one position or a range recorded
    whole, the newest record itself; else the rows of the records holding them, as one (a trial's
    matrix up to an earlier cursor was computed again: in a replay without a model, refused)."""
    from tokentui.core.attribution import applies, combined

    for rec in reversed(run.attributions):
        same = rec.method == method and rec.alternative == alternative
        if same and (len(positions) == 1 or rec.positions == positions):
            if applies(rec, branch, positions[-1], run.sequence):
                return rec
    parts, missing = held_rows(run, branch, positions, method, alternative)
    if missing or not parts:
        return None
    return combined(parts, branch)


def held_rows(
    run: Run, branch: int, positions: list[int], method: str, alternative: int | None
) -> tuple[list[Attribution], list[int]]:
    """The rows of `positions` the run holds (each from the newest record holding it for this
    method and target), one part per record, and the positions none holds: `A` computes only
    those (the cursor moved on since the last matrix: its rows are read, the new ones computed)."""
    from tokentui.core.attribution import applies

    todo = set(positions)
    parts = []
    for rec in reversed(run.attributions):
        if not todo:
            break
        if rec.method != method or rec.alternative != alternative:
            continue
        have = [t for t in positions if t in todo and applies(rec, branch, t, run.sequence)]
        part = rec.rows_of(have) if have else None
        if part is not None:
            parts.append(part)
            todo.difference_update(have)
    return parts, [t for t in positions if t in todo]


def stored_here(run: Run, branch: int, position: int) -> str:
    """The methods (and contrasts) of the records that hold `position` of `branch`, for a hint
    when the one asked for is not among them ("" when none)."""
    from tokentui.core.attribution import METHODS, applies
    from tokentui.core.display import lone_token

    seen: list[str] = []
    for rec in reversed(run.attributions):
        if applies(rec, branch, position, run.sequence):
            what = METHODS[rec.method].label
            if rec.alternative is not None:
                what += f" vs '{lone_token(run.tokens.bytes_of(rec.alternative))}'"
            if what not in seen:
                seen.append(what)
    return ", ".join(seen)


class AttributionActions(_Base):
    """Mixed into TokentuiApp (it provides run_obj, branch_id, stream, engine, session …)."""

    _pane_before = "alternatives"  # the side pane a narrow terminal showed before the attribution

    # --- keys ---------------------------------------------------------------------------------
    def action_attribute(self) -> None:
        """`a`: attribute the token under the cursor; on the target on show, leave."""
        shown = self.session.attribution
        if shown is not None and shown.position == self.stream.cursor:
            self.leave_attribution()
            return
        self.attribute_token(self.stream.cursor, self.session.attribution_method, None)

    def attribute_against(self, token_id: int) -> None:
        """The alternatives pane's `a`: the token under the cursor against alternative `token_id`."""
        run = self.run_obj
        pos = self.stream.cursor
        if run is None or not 0 <= pos < run.length(self.branch_id):
            return
        if int(run.sequence(self.branch_id)[pos]) == token_id:
            self.notify("that is the token itself: select another alternative (↑/↓) to contrast with",
                        markup=False)  # fmt: skip
            return
        from tokentui.core.attribution import METHODS

        m = METHODS[self.session.attribution_method]
        if m.needs != "gradients":  # (as the CLI's --alternative: a trial stored an attention record "vs" a token)
            self.notify(f"{m.label} has no target to contrast with an alternative: M picks a gradient method",
                        severity="warning", markup=False)  # fmt: skip
            return
        self.attribute_token(pos, self.session.attribution_method, token_id)

    def action_cycle_attribution_method(self) -> None:
        from tokentui.core.attribution import METHODS

        names = list(METHODS)
        current = self.session.attribution_method
        self.session.attribution_method = names[(names.index(current) + 1) % len(names)]
        m = METHODS[self.session.attribution_method]
        shown = self.session.attribution
        job = self.session.attribution_job
        if job is not None and job.kind == "token":  # the running one is recomputed when it ends
            self.notify(f"attribution method: {m.label} (once the running attribution ends)", markup=False)
            return
        if shown is None:
            self.notify(f"attribution method: {m.label} (a attributes the token under the cursor)", markup=False)
            return
        alternative = shown.record.alternative if m.needs == "gradients" else None
        vs = "" if alternative == shown.record.alternative else " (it contrasts no alternative: the token's own)"
        self.notify(f"attribution method: {m.label}{vs}", markup=False)
        self.attribute_token(shown.position, m.name, alternative, branch=shown.branch)

    def action_matrix(self) -> None:
        """`A`: the association matrix of the branch's output tokens up to the cursor."""
        from tokentui.tui.screens.matrix import MatrixScreen

        run = self.run_obj
        assert run is not None  # needs RUN
        branch = self.branch_id
        length = run.length(branch)
        start = 1 if run.meta.mode == "score" else max(1, len(run.prompt))
        end = self.stream.cursor if self.stream.cursor >= start else length - 1
        if end < start:
            self.notify("no output tokens on this branch to attribute", markup=False)
            return
        positions = list(range(start, end + 1))
        cut = ""
        if len(positions) > MATRIX_ROWS:
            cut = f"the last {MATRIX_ROWS} of {len(positions)} output tokens up to the cursor"
            positions = positions[-MATRIX_ROWS:]
        method = self.session.attribution_method
        rec = stored(run, branch, positions, method, None)
        held, missing = ([], []) if rec is not None else held_rows(run, branch, positions, method, None)
        what = f"rows of the other {len(missing)}" if held else "matrix of this range"
        reason = None if rec is not None else self._why_not_compute(method, what)
        if reason and not held:
            self.notify(reason, severity="warning", markup=False)
            return
        screen = MatrixScreen(run, branch, positions, method, self.look(), self._cancel_attribution, cut, held)
        self.push_screen(screen)
        if rec is not None:
            screen.show_record(rec, stored=True)
        elif reason:  # (a replay: the rows stored, and why the others are not computed)
            screen.show_held(reason)
        else:
            self._start(AttributionJob("matrix", branch, missing, method, None))
            screen.started(len(missing))  # (its progress line says so: a toast over an 80×24 screen hid its keys)

    # --- showing ------------------------------------------------------------------------------
    def attribute_token(self, position: int, method: str, alternative: int | None, branch: int | None = None) -> None:
        """Show the attribution of `position` (of `branch`, else the one on show): stored, or
        asked of the engine (shown when it arrives)."""
        run = self.run_obj
        if run is None:
            return
        branch = self.branch_id if branch is None else branch
        if position < 1:
            self.notify("position 0 has nothing before it to attribute to", markup=False)
            return
        if position >= run.length(branch):
            return
        rec = stored(run, branch, [position], method, alternative)
        if rec is not None:
            self.show_attribution(rec, branch, position)
            return
        reason = self._why_not_compute(method, "attribution of this token")
        if reason:
            others = stored_here(run, branch, position)
            if others:  # what the run does hold for this token (M switches the method)
                reason += f" · stored here: {others} (M: method)"
            self.notify(reason, severity="warning", markup=False)
            return
        self._start(AttributionJob("token", branch, [position], method, alternative))

    def show_attribution(self, rec: Attribution, branch: int, position: int) -> None:
        from tokentui.tui.heat import Shown

        run = self.run_obj
        assert run is not None
        first = self.session.attribution is None
        self.session.attribution = Shown(rec, run.id, branch, position)
        self.stream.set_overlay(self.session.attribution)
        right = self.query_one("#right")
        right.add_class("-attribution")
        if first:  # narrow terminals: the attribution pane comes up (v cycles on)
            self._pane_before = next((n for n in _SIDE if self.query_one(f"#{n}").has_class("shown")), "alternatives")
            self.show_side("attribution")
        self.update_legend()
        self.refresh_attribution_pane()
        self.sync_attribution()  # (a job of another branch than the one now on show)

    def leave_attribution(self) -> bool:
        """Back to the metric's colours; False when no attribution was on show."""
        if self.session.attribution is None:
            return False
        self.session.attribution = None
        self.stream.set_overlay(None)
        self.query_one("#right").remove_class("-attribution")
        if self.query_one("#attribution").has_class("shown"):
            self.show_side(self._pane_before)
        else:  # (the pane shown stays; its title's "v: …" no longer leads to the attribution)
            self.show_side(next((n for n in _SIDE if self.query_one(f"#{n}").has_class("shown")), "alternatives"))
        self.query_one("#attribution").set_class(False, "shown")
        self.update_legend()
        return True

    def sync_attribution(self) -> None:
        """After the branch on show changed (another branch, a new run): keep the attribution
        where it still holds for this branch's sequence, else leave it."""
        from tokentui.core.attribution import applies

        shown, run = self.session.attribution, self.run_obj
        if shown is None:
            return
        # (a record of this run: deleting branches renumbers them and replaces the records)
        ours = run is not None and shown.run_id == run.id and any(r is shown.record for r in run.attributions)
        if run is None or not ours or not applies(shown.record, self.branch_id, shown.position, run.sequence):
            self.leave_attribution()
            return
        self.stream.set_overlay(shown)

    def refresh_attribution_pane(self) -> None:
        from tokentui.tui.widgets.attribution_pane import AttributionPane

        shown, run = self.session.attribution, self.run_obj
        pane = self.query_one(AttributionPane)
        if shown is None or run is None:
            pane.clear()
            return
        scale, diverging, no_color = self.look()
        pane.show(run, shown, self.stream.cursor, scale, diverging, no_color)

    def side_panes(self) -> list[str]:
        """The side panes `v` cycles through on a narrow terminal."""
        return list(_SIDE) if self.session.attribution is not None else [n for n in _SIDE if n != "attribution"]

    def show_side(self, name: str) -> None:
        """Make `name` the side pane a narrow terminal shows."""
        names = self.side_panes()
        for n in _SIDE:
            self.query_one(f"#{n}").set_class(n == name, "shown")
        self.side_index = names.index(name) if name in names else 0
        # (a narrow terminal's one pane says what it is and what `v` brings: a newcomer at 80×24
        # saw the alternatives only, with no sign of the lens or the branch tree)
        after = names[(self.side_index + 1) % len(names)]
        self.query_one("#right").border_title = f"{_SIDE_LABELS[name]} · v: {_SIDE_LABELS[after]}"

    # --- the engine ---------------------------------------------------------------------------
    def _why_not_compute(self, method: str, what: str) -> str | None:
        """Why `method` cannot compute `what` now (no model, busy, no gradients …), or None."""
        from tokentui.core.attribution import METHODS

        m = METHODS[method]
        why = self.session.why_not(Needs.MODEL) or self.session.not_ours()
        if why is not None:
            return f"no stored {m.label} {what} — {why}"
        caps = self.session.capabilities
        missing = caps.why_not(m.needs, self.session.model or "this model source") if caps is not None else None
        return f"{m.label} attribution is not available: {missing}" if missing else None

    def _start(self, job: AttributionJob) -> None:
        from tokentui.core.attribution import METHODS

        engine = self.engine
        assert engine is not None  # _why_not_compute said a model is loaded
        self.session.attribution_job = job
        self.session.state = AppState.ATTRIBUTING
        what = f"position {job.positions[0]}" if job.kind == "token" else f"{len(job.positions)} tokens"
        self.session.note = f"attributing {what} by {METHODS[job.method].label} … · escape cancels"
        engine.attribute(job.branch, job.positions, job.method, job.alternative, self.session.attribution_steps)
        self.update_status()

    def _cancel_attribution(self) -> None:
        if self.state is AppState.ATTRIBUTING and self.engine is not None:
            self.engine.cancel()
            self.session.note = "cancelling the attribution"
            self.update_status()

    def apply_attribution(self, up: Update) -> None:
        """What an engine event changed for attribution: progress, a result, a failure."""
        screen = self._matrix_screen()
        if up.attribution_progress is not None and screen is not None:
            screen.progress(up.attribution_progress)
        if up.attribution_failed is not None and screen is not None and up.error is not None:
            screen.failed(up.error[1])
        if up.attributed is None:
            return
        ev, job = up.attributed
        if job.kind == "matrix":
            if screen is not None:
                screen.finished(ev.record, ev.cancelled, ev.seconds)
        elif ev.record is not None and ev.record.row(job.positions[0]) is not None:
            self.show_attribution(ev.record, job.branch, job.positions[0])
            if self.session.attribution_method != job.method:  # M was pressed meanwhile: follow it
                self.attribute_token(job.positions[0], self.session.attribution_method, job.alternative, job.branch)
        elif ev.cancelled:
            self.notify("attribution cancelled", markup=False)

    def _matrix_screen(self) -> MatrixScreen | None:
        from tokentui.tui.screens.matrix import MatrixScreen

        for screen in reversed(self.screen_stack):
            if isinstance(screen, MatrixScreen):
                return screen
        return None


_SIDE = ("alternatives", "attribution", "layers", "tree")  # the side panes, in `v`'s order
_SIDE_LABELS = {"alternatives": "alternatives", "attribution": "attribution", "layers": "lens", "tree": "branches"}
