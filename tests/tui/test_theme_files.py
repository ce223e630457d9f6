"""Theme files from $TOKENTUI_THEMES_DIR are untrusted input: a bad one is reported and skipped,
the shipped themes still load, and nothing in the folder can stop the explorer from starting."""

from __future__ import annotations

import os
import threading

import pytest

from tests.factories import explorer, make_run
from tokentui.tui.theme import load_themes

GOOD = """name = "mine"
primary = "#336699"
metric_scale = ["#000000", "#777777", "#ffffff"]
metric_text = ["#ffffff", "#000000", "#000000"]
"""


def _load_in_time(seconds: float = 20.0):
    """load_themes() in a thread: a regression that blocks fails the test instead of hanging it."""
    out: list = []
    worker = threading.Thread(target=lambda: out.append(load_themes()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert out, f"load_themes() still runs after {seconds:.0f} s"
    return out[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs")
def test_a_deeply_nested_or_blocking_theme_file_is_reported_and_skipped(tmp_path, monkeypatch):
    """`q = [[[… 3,000 deep` raised RecursionError out of tomllib (a crash at start-up); a FIFO named
    *.toml blocked the start for good, waiting for a writer."""
    (tmp_path / "deep.toml").write_text('name = "deep"\nq = ' + "[" * 3000 + "]" * 3000)
    os.mkfifo(tmp_path / "pipe.toml")
    (tmp_path / "mine.toml").write_text(GOOD)
    monkeypatch.setenv("TOKENTUI_THEMES_DIR", str(tmp_path))
    themes, problems = _load_in_time()
    assert "mine" in themes and len(themes) > 1  # the good file and the shipped ones
    assert "deep.toml: not a theme (nested too deeply)" in problems
    assert any(p.startswith("pipe.toml: ") and "not a regular file" in p for p in problems), problems


async def test_the_explorer_starts_and_says_what_was_skipped(tmp_path, monkeypatch):
    (tmp_path / "deep.toml").write_text('name = "deep"\nq = ' + "[" * 3000 + "]" * 3000)
    (tmp_path / "nameless.toml").write_text('primary = "#336699"')
    monkeypatch.setenv("TOKENTUI_THEMES_DIR", str(tmp_path))
    app = explorer(run=make_run())
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.pause(0.3)
        [note] = app._notifications  # both files named in one (each notification replaces the last)
        assert note.message.splitlines() == [
            "theme skipped: deep.toml: not a theme (nested too deeply)",
            "theme skipped: nameless.toml: 'name' must be 1-40 lowercase letters, digits or dashes",
        ]
        assert app.stream.view is not None


def test_every_shipped_theme_s_buckets_stay_apart_in_256_colours():
    """Over SSH without COLORTERM the colours fall back to the 256-colour palette: the dark
    theme's second and third buckets became #5f5f5f and #626262, one grey. Every pair of buckets
    must map to palette colours clearly apart."""
    from rich.color import Color, ColorSystem

    themes, problems = load_themes()
    assert not problems
    for name, theme in themes.items():
        palette = [Color.parse(c).downgrade(ColorSystem.EIGHT_BIT).get_truecolor() for c in theme.scale.backgrounds]
        for i, a in enumerate(palette):
            for b in palette[i + 1 :]:
                distance = sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5
                assert distance >= 30, (name, theme.scale.backgrounds, palette)
