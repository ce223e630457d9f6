"""Defects a second user trial of the explorer found (two models, attribution, tree search, stats,
export, hostile prompts at 80×24 and 120×40), each driven with real key presses."""

from __future__ import annotations

from textual.widgets import Input

from tests.factories import explorer, rendered, wait_for, wait_generated
from tokentui.tui.state import AppState


def _inside(widget, box) -> bool:
    """Whether `widget` lies within what `box` (a scroll container) shows of its content."""
    shown = box.scrollable_content_region
    return shown.y <= widget.region.y and widget.region.bottom <= shown.bottom


async def test_the_tree_forms_error_shows_at_80x24_and_on_a_short_terminal(model_dirs, cache_dir):
    """With a run open the form's second title line ('on branch #0, after position N …') wraps
    once a scrollbar takes two columns: the box was measured a line too short, its error line
    (the only answer to Enter on a bad value) lay under the bottom border at 80×24."""
    app = explorer(model=str(model_dirs["gpt2"]), prompt="hello")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the model")
        await pilot.press("ctrl+r")
        await wait_generated(pilot, app)
        for size in ((80, 24), (80, 12)):
            await pilot.resize_terminal(*size)
            await pilot.press("e")
            await pilot.pause(0.2)
            form = app.screen
            assert isinstance(form.focused, Input)
            await pilot.press("end", "ctrl+u", "x", "enter")
            await pilot.pause(0.3)
            error = form.query_one("#form-error")
            assert "not a number: min branch threshold" in rendered(error)
            assert _inside(error, form.query_one("#tree-box")), (size, error.region)
            await pilot.press("escape")
            await pilot.pause(0.1)
