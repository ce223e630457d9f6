"""Snapshots of each screen, fed from a saved run (replay: no model, nothing time-dependent).

Update after an intended visual change with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the SVGs before committing them."""

from __future__ import annotations

import pytest

from tests.factories import explorer, make_run


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    return explorer(run=make_run(n_branch_steps=(30, 12)), cache_dir=tmp_path)


async def open_settings(pilot) -> None:
    """The settings form, pushed as `s` does (a replay without a model refuses `s` itself)."""
    from tokentui.tui.screens.settings import SettingsScreen

    app = pilot.app
    await app.push_screen(SettingsScreen(app.session.settings, app.session.vocab_size))


def test_main_screen_wide(snap_compare, app):
    assert snap_compare(app, terminal_size=(120, 40), press=["left", "left"])


def test_main_screen_narrow_layers_pane(snap_compare, app):
    assert snap_compare(app, terminal_size=(80, 24), press=["v"])


def test_entropy_metric_on_a_child_branch(snap_compare, app):
    assert snap_compare(app, terminal_size=(120, 40), press=["J", "m", "right"])


def test_help_screen(snap_compare, app):
    assert snap_compare(app, terminal_size=(120, 40), press=["question_mark"])


def test_settings_screen(snap_compare, app):
    assert snap_compare(app, terminal_size=(120, 40), run_before=open_settings)


def test_high_contrast_theme(snap_compare, app):
    assert snap_compare(app, terminal_size=(120, 40), press=["T"])


def test_export_prompt(snap_compare, app):
    assert snap_compare(app, terminal_size=(120, 40), press=["x"])


def test_main_screen_narrow(snap_compare, app):
    assert snap_compare(app, terminal_size=(80, 24), press=["left"])


def test_tree_pane_narrow_on_a_child_branch(snap_compare, app):
    assert snap_compare(app, terminal_size=(80, 24), press=["J", "v", "v"])


def test_help_screen_narrow(snap_compare, app):
    assert snap_compare(app, terminal_size=(80, 24), press=["question_mark"])


def test_settings_screen_narrow(snap_compare, app):
    assert snap_compare(app, terminal_size=(80, 24), run_before=open_settings)


@pytest.fixture
def attributed(tmp_path, monkeypatch):
    from tests.factories import attributed_run

    monkeypatch.delenv("NO_COLOR", raising=False)
    return explorer(run=attributed_run(30), cache_dir=tmp_path)


def test_attribution_wide(snap_compare, attributed):
    """The stored gradient-norm attribution of position 30: the stream coloured, the pane."""
    assert snap_compare(attributed, terminal_size=(120, 40), press=["end", "left", "left", "left", "a", "left"])


def test_signed_attribution_narrow(snap_compare, attributed):
    """Input × gradient on the diverging scale; the attribution pane comes up on a narrow terminal."""
    assert snap_compare(attributed, terminal_size=(80, 24), press=["end", "left", "left", "left", "M", "M", "a"])


def test_matrix_screen(snap_compare, attributed):
    assert snap_compare(attributed, terminal_size=(120, 40), press=["A", "up", "left"])


def test_matrix_screen_narrow(snap_compare, attributed):
    assert snap_compare(attributed, terminal_size=(80, 24), press=["A"])
