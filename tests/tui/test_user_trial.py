"""The defects a user trial of the explorer found (issue 24), each driven with real key presses:
the layers pane reachable and scrollable from the keyboard, the export dialog's refusals, the
status bar's notes, the settings line of forced and scored runs, help texts and wordings."""

from __future__ import annotations

import pytest

from tests.factories import explorer, make_run, open_picker
from tokentui.tui.widgets.layers import LayersPane


async def _tab_to(pilot, app, widget, key: str = "tab") -> list[str]:
    """Press `key` until `widget` has the focus; the ids focused on the way."""
    seen: list[str] = []
    for _ in range(8):
        if app.focused is widget:
            return seen
        await pilot.press(key)
        seen.append(str(app.focused.id if app.focused is not None else None))
    raise AssertionError(f"{key} never reached {widget}: {seen}")


def _bottom_on_show(box, pane) -> bool:
    """Whether the pane's last row (the metric strip) is inside its scroll container's view."""
    return box.scroll_offset.y + box.scrollable_content_region.height >= pane.outer_size.height


async def test_the_layers_pane_takes_the_focus_and_scrolls_with_keys(tmp_path):
    """30 layers do not fit the pane at 120×40: tab reaches it (tokens → alternatives → layers →
    tree), and its keys scroll it down to the axis, the top tokens and the metric strip, and back,
    without moving the token cursor."""
    app = explorer(run=make_run(n_branch_steps=(30, 12), layers=30), cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        box = app.query_one("#layers")
        pane = app.query_one(LayersPane)
        assert app.focused is app.stream
        assert await _tab_to(pilot, app, box) == ["alternatives", "layers"]
        await pilot.press("tab")
        assert app.focused.id == "tree"
        await _tab_to(pilot, app, box, "shift+tab")
        cursor = app.stream.cursor
        assert not _bottom_on_show(box, pane)
        await pilot.press("j")
        await pilot.pause(0.05)
        assert box.scroll_offset.y == 1
        await pilot.press("pagedown")
        await pilot.pause(0.05)
        assert box.scroll_offset.y > 1
        await pilot.press("end")
        await pilot.pause(0.05)
        assert _bottom_on_show(box, pane) and box.scroll_offset.y > 0
        await pilot.press("home")
        await pilot.pause(0.05)
        assert box.scroll_offset.y == 0
        await pilot.press("G", "k")
        await pilot.pause(0.05)
        assert 0 < box.scroll_offset.y == box.max_scroll_y - 1
        assert app.stream.cursor == cursor  # the keys scrolled the pane, not the tokens
        # moving the tokens keeps the pane where it was scrolled to
        await pilot.press("shift+tab", "shift+tab", "left")
        assert app.focused is app.stream and app.stream.cursor == cursor - 1
        await pilot.pause(0.05)
        assert box.scroll_offset.y == box.max_scroll_y - 1


async def test_narrow_the_layers_pane_scrolls_and_v_still_cycles(tmp_path):
    """At 80×24 the side panes take turns (v): the layers pane, on show, is tab's next stop and
    scrolls down to its metric strip; v goes on to the tree pane and back round."""
    app = explorer(run=make_run(n_branch_steps=(30, 12), layers=30), cache_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("v")
        box = app.query_one("#layers")
        pane = app.query_one(LayersPane)
        assert box.display and box.has_class("shown")
        assert await _tab_to(pilot, app, box) == ["layers"]
        await pilot.press("end")
        await pilot.pause(0.05)
        assert _bottom_on_show(box, pane)
        await pilot.press("v")
        await pilot.pause(0.05)
        assert [w.id for w in app.query(".side.shown")] == ["tree"]
        await pilot.press("v", "v")
        await pilot.pause(0.05)
        assert [w.id for w in app.query(".side.shown")] == ["layers"]


def test_the_help_lists_the_layers_pane_keys():
    from tokentui.tui.actions import help_sections

    sections = dict(help_sections())
    keys = [k for k, _ in sections["view · layers pane"]]
    assert keys == ["↑ k", "↓ j", "PgUp", "PgDn", "home g", "end G"]


# --- the export dialog (x) -------------------------------------------------------------------------


async def _export_as(pilot, app, name: str) -> None:
    """x, then the name typed key by key over the one offered, then Enter."""
    from tests.factories import wait_for

    await pilot.press("x")
    await wait_for(pilot, lambda: type(app.screen).__name__ == "TextPrompt", what="the export prompt")
    await pilot.press("end", "ctrl+u", *name, "enter")
    await pilot.pause(0.1)


def _last_note(app) -> str:
    notes = list(app._notifications)
    return notes[-1].message if notes else ""


async def test_export_refuses_folders_fifos_and_missing_folders_at_once_keeping_the_name(tmp_path, monkeypatch):
    """A name that is a folder or a FIFO is refused at once (no "Replace …?" first), and so is one
    in a folder that does not exist; each keeps the dialog open with the name as typed."""
    import os

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").mkdir()
    os.mkfifo(tmp_path / "f.csv")
    app = explorer(run=make_run(), cache_dir=tmp_path / "cache")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        for name, said in (
            ("d.csv", "is a folder"),
            (str(tmp_path), "is a folder: give a file name"),  # (without an ending: was "end the name in .csv …")
            ("f.csv", "not a regular file"),
            ("nowhere/sub/a.csv", "no such folder"),
        ):
            await _export_as(pilot, app, name)
            assert type(app.screen).__name__ == "TextPrompt", (name, type(app.screen).__name__)
            assert app.screen.query_one("#prompt-input").value == name
            assert said in _last_note(app), (name, _last_note(app))
            await pilot.press("escape")
            await pilot.pause(0.05)
            assert app.screen is app.screen_stack[0]
        assert (tmp_path / "d.csv").is_dir() and not (tmp_path / "nowhere").exists()


async def test_export_says_what_is_wrong_with_a_bare_ending_and_a_trailing_slash(tmp_path, monkeypatch):
    """`.csv` has no name before its ending (not "end the name in .csv"); `out.csv/` names a
    folder: refused, nothing written, the dialog kept open with the name; `out.csv` then writes."""
    monkeypatch.chdir(tmp_path)
    app = explorer(run=make_run(), cache_dir=tmp_path / "cache")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        await _export_as(pilot, app, ".csv")
        assert "no name before .csv" in _last_note(app) and "end the name in" not in _last_note(app)
        assert app.screen.query_one("#prompt-input").value == ".csv"
        await pilot.press("escape")
        await _export_as(pilot, app, ".tree.json")
        assert "no name before .tree.json" in _last_note(app)
        await pilot.press("escape")
        await _export_as(pilot, app, "out.csv/")
        assert "folder" in _last_note(app), _last_note(app)
        assert app.screen.query_one("#prompt-input").value == "out.csv/"
        assert not (tmp_path / "out.csv").exists()
        await pilot.press("end", "backspace")
        assert app.screen.query_one("#prompt-input").value == "out.csv", app.screen.query_one("#prompt-input").value
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert (tmp_path / "out.csv").is_file() and "exported" in _last_note(app)


# --- the status bar's note ---------------------------------------------------------------------------


def _status(app) -> str:
    from tests.factories import rendered

    return rendered(app.query_one("#status"))


async def test_the_note_says_the_last_job_at_80_columns_and_goes_with_a_new_job_or_run(
    model_dirs, cache_dir, monkeypatch
):
    """At 80×24 a cancelled generation's outcome is in the status bar (it was dropped before the
    run id); continuing the branch replaces it with what runs; opening a run with o clears it.
    (Each forward of the tiny model is held 10 ms, so the continued generation is still under way
    when the test looks: unheld, a fast CPU writes its 400 tokens before then.)"""
    from tests.factories import generating_explorer, hold_forwards, stop_after_first_tokens, wait_for
    from tokentui.tui.state import AppState

    hold_forwards(monkeypatch, 0.01)

    app = generating_explorer(str(model_dirs["llama"]), max_new_tokens=400)
    async with app.run_test(size=(80, 24)) as pilot:
        await stop_after_first_tokens(pilot, app)
        assert "cancelled: " in _status(app) and "new token" in _status(app), _status(app)
        await pilot.press("c")
        assert app.state is AppState.GENERATING
        assert "cancelled" not in _status(app) and "continuing branch #0" in _status(app), _status(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.state is AppState.IDLE and not app.run_obj.dirty, what="the cancel, saved")
        assert "cancelled: " in _status(app), _status(app)
        run_id = app.run_obj.id
        await open_picker(pilot, app)
        await pilot.press(*run_id[-6:], "enter")
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="the run opened")
        assert app.run_obj.id == run_id and "cancelled" not in _status(app), _status(app)


def test_a_note_too_long_for_the_bar_is_cut_before_the_branch_and_saved_state_go():
    from tokentui.tui.widgets.status_bar import Part, fit

    note = "tree search done: 45 nodes, 12 finished paths (P: most probable)"
    parts = [Part("run 20260101-000000-abcdef", 5), Part("branch #0/46", 8), Part("saved", 7), Part("pos 12", 6),
             Part(note, 6, shrink=16)]  # fmt: skip
    kept = fit(" idle ", parts, 80)
    assert [p.text for p in kept][:2] == ["branch #0/46", "saved"]
    assert kept[2].text.startswith("tree search done: 45 nodes") and kept[2].text.endswith("…")


# --- the settings line -------------------------------------------------------------------------------


async def test_the_settings_line_shows_a_forced_prefix_of_a_run_generated_live(model_dirs, cache_dir):
    """The forced prefix streams in as the branch's first tokens: the line says it once they are
    there (it was drawn when the branch started, empty, and not again)."""
    from tests.factories import rendered, wait_generated
    from tokentui.core.params import GenerationSettings, SamplingParams

    app = explorer(
        model=str(model_dirs["llama"]),
        prompt="import os",
        generate_at_once=True,
        settings=GenerationSettings(SamplingParams(max_new_tokens=4), forced=" import sys"),
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_generated(pilot, app, 0)
        await pilot.pause(0.1)
        line = rendered(app.query_one("#settings-line"))
        assert app.run_obj.branches[0].n_forced > 0
        assert line.lstrip().startswith("run: greedy") and "forced ␠import␠sys" in line, line


async def test_the_settings_line_of_a_scored_text_says_so(tmp_path):
    """A teacher-forced run has no sampler or token budget: "scored text" and its k, not
    "greedy · max 64 tokens"."""
    from pathlib import Path

    from tests.factories import rendered
    from tokentui.store.runfile import load_run

    run = load_run(Path(__file__).resolve().parents[2] / "tests/fixtures/demo_runs/score.tokentui")
    assert run.branches[0].status == "scored"
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        line = " ".join(rendered(app.query_one("#settings-line")).split())
        assert line.startswith("run: scored text") and f"k={run.meta.k}" in line, line
        assert "greedy" not in line and "max 64" not in line, line


# --- help and texts ----------------------------------------------------------------------------------


def _footer_actions(app) -> list[str]:
    return [key.action for key in app.query("FooterKey")]


async def test_a_replay_without_a_model_does_not_offer_model_keys_in_the_footer(tmp_path):
    """`tokentui replay RUN`: the footer leaves out generate, continue, settings and tree; the keys
    still say why they do nothing when pressed."""
    app = explorer(run=make_run(), cache_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        shown = _footer_actions(app)
        assert "cycle_metric" in shown and "open_run" in shown and "help" in shown and "quit" in shown, shown
        for action in ("generate", "continue_branch", "settings", "grow_tree"):
            assert action not in shown, shown
        title = str(app.prompt_box.border_title)  # (nor does the prompt box's title offer ctrl+r)
        assert "ctrl+r" not in title and "no model" in title, title
        await pilot.press("ctrl+r")
        await pilot.pause(0.05)
        assert "no model is loaded" in _last_note(app) and "`" not in _last_note(app)
        for key in ("c", "e"):  # they too say why (s opens the settings: see the README)
            app._notifications.clear()
            await pilot.press(key)
            await pilot.pause(0.05)
            assert app.screen is app.screen_stack[0] and "no model is loaded" in _last_note(app), key


async def test_with_a_model_the_footer_offers_its_keys(model_dirs, cache_dir):
    from tests.factories import wait_for
    from tokentui.tui.state import AppState

    app = explorer(model=str(model_dirs["gpt2"]))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="model load")
        shown = _footer_actions(app)
        for action in ("generate", "continue_branch", "settings", "grow_tree", "cycle_metric"):
            assert action in shown, shown
        assert "ctrl+r generates" in str(app.prompt_box.border_title)


async def test_help_lists_every_export_ending_and_shows_no_backticks(tmp_path):
    """x's help line is store.export's list of endings; no line shows markdown's backticks."""
    from textual.widgets import Static

    from tokentui.store.export import EXTENSION, NAMED_SUFFIXES

    app = explorer(run=make_run(), cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        from rich.table import Table

        text = {}
        for table in app.screen.query_one("#help-text", Static).content.renderables:
            if isinstance(table, Table):  # (a section's keys)
                keys, lines = (list(c.cells) for c in table.columns)
                text.update({k.plain: line.plain for k, line in zip(keys, lines, strict=True)})
        for ending in {*(f".{e}" for e in EXTENSION.values()), *NAMED_SUFFIXES}:
            assert ending in text["x"], (ending, text["x"])
        assert not [line for line in text.values() if "`" in line]


async def test_the_seed004_export_of_a_run_without_attributions_points_to_a(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = make_run()
    assert not run.attributions
    app = explorer(run=run, cache_dir=tmp_path / "cache")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        await _export_as(pilot, app, "why.seed004.json")
        note = _last_note(app)
        assert "holds no attributions" in note and "a attributes" in note and "tokentui attribute" not in note, note
        assert not (tmp_path / "why.seed004.json").exists()


# --- plurals, the KL jumps, the attribution's target ---------------------------------------------------


def _screen_text(screen) -> str:
    from tests.factories import rendered

    return " ".join(" ".join(rendered(w).split()) for w in screen.query("Static"))


async def test_one_token_is_one_token_in_the_delete_confirm_and_the_stats(tmp_path):
    run = make_run(n_branch_steps=(2, 1))  # the child branch: one token
    run.branches[0].n_forced = 1  # the root: a forced token, then one generated
    run.validate()
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("J")
        assert app.branch_id == 1
        await pilot.press("delete")
        await pilot.pause(0.1)
        assert type(app.screen).__name__ == "Confirm"
        text = _screen_text(app.screen)
        assert "1 token go;" in text and "1 tokens" not in text, text
        await pilot.press("n")
        await pilot.pause(0.1)
        await pilot.press("K")  # the root: one generated token after a forced one
        await pilot.press("S")
        await pilot.pause(0.3)
        assert type(app.screen).__name__ == "StatsScreen"
        text = _screen_text(app.screen)
        assert "1 token " in text and "1 tokens" not in text, text


@pytest.fixture(scope="module")
def self_compared(loaded):
    """A text compared under one model twice: KL(A‖B) is 0 at every position."""
    from tokentui.engine.backend import ModelSpec
    from tokentui.engine.hf.backend import HFBackend
    from tokentui.engine.hf.compare import ModelPair

    lm = loaded("gpt2")
    pair = ModelPair(HFBackend(lm, lens_chunk=0), HFBackend(lm, lens_chunk=0), ModelSpec("same"))
    [run] = pair.compare([pair.item("def f(x):\n    return x * 2\n")], k=4)
    return run


async def test_kl_jumps_in_a_self_comparison_say_why_they_find_nothing(self_compared, tmp_path):
    import numpy as np

    kl = self_compared.column(0, "kl_ab").astype(np.float64)
    assert np.nanmax(np.abs(kl)) < 1e-6
    app = explorer(run=self_compared, cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("home")
        for key in ("right_parenthesis", "left_parenthesis"):
            app.clear_notifications()
            await pilot.press(key)
            await pilot.pause(0.05)
            assert app.stream.cursor == 0
            assert "do not differ" in _last_note(app) and "KL(A‖B) is 0" in _last_note(app), _last_note(app)


async def test_the_attributed_token_is_quoted_after_its_position(tmp_path):
    """'target pos 30 “1”', not 'pos 30 1' (a digit token read as part of the number)."""
    from tests.factories import attributed_run, rendered
    from tokentui.tui.widgets.attribution_pane import AttributionPane
    from tokentui.tui.widgets.legend import Legend
    from tokentui.tui.widgets.token_text import lone_id

    run = attributed_run(30)
    token = lone_id(run, int(run.sequence(0)[30])).plain
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("home", *["right"] * 30, "a")
        await pilot.pause(0.2)
        pane = " ".join(rendered(app.query_one(AttributionPane)).split())
        assert f"target pos 30 “{token}”" in pane, pane
        await pilot.press("left")
        await pilot.pause(0.1)
        cursor = lone_id(run, int(run.sequence(0)[29])).plain
        assert f"cursor pos 29 “{cursor}”" in " ".join(rendered(app.query_one(AttributionPane)).split())
        legend = " ".join(rendered(app.query_one(Legend)).split())
        assert f"of position 30 “{token}”" in legend, legend


async def test_r_in_a_greedy_session_samples_the_new_branch_at_temperature_1_as_help_says(model_dirs, cache_dir):
    """What r's help says is what the engine does: a greedy session's resampled branch has T=1
    and a new seed for all its tokens (its settings line says so)."""
    from tests.factories import rendered, wait_generated
    from tokentui.core.params import GenerationSettings, SamplingParams
    from tokentui.tui.actions import ACTIONS

    [spec] = [s for s in ACTIONS if s.action == "resample"]
    assert "temperature 1" in spec.description and "every one after it" in spec.description
    assert "not greedy after the first token" in spec.description
    app = explorer(
        model=str(model_dirs["gpt2"]),
        prompt="import os",
        generate_at_once=True,
        settings=GenerationSettings(SamplingParams(max_new_tokens=6)),
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_generated(pilot, app, 0)
        run = app.run_obj
        fork = run.length(0) - 4
        await pilot.press("home", *["right"] * fork, "r")
        await wait_generated(pilot, app, 1)
        b = run.branches[1]
        assert b.fork_position == fork and len(b.steps) == 6
        assert b.sampling["temperature"] == 1.0 and b.sampling["seed"] is not None
        await pilot.pause(0.1)
        assert "branch #1: T=1" in rendered(app.query_one("#settings-line"))
