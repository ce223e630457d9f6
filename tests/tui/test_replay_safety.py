"""Replay without a model: hostile token text through every pane never reaches the screen raw,
markup in tokens shows literally, and the replay path does not import torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.factories import explorer, make_run
from tokentui.core.tokens import TokenTable
from tokentui.store.runfile import save_run

HOSTILE = [
    b"\x1b[31mRED",
    b"\x1b]0;pwned\x07",
    "\u202eevil".encode(),
    b"[/]",
    b"[@click=app.quit]x[/]",
    b"\x00\x7f",
    b"\xc3",
    b"\x9b2J",
    "\u2066iso".encode(),
    b"[bold]b[/bold]",
    b"a\nb",
    b"\r",
]


def hostile_run():
    run = make_run(n_branch_steps=(20, 8))
    table = {i: HOSTILE[i % len(HOSTILE)] for i in range(run.meta.vocab_size)}
    order = list(dict.fromkeys(run.sequence(1).tolist()))  # every hostile string lies on branch 1
    for j, tid in enumerate(order):
        table[tid] = HOSTILE[j % len(HOSTILE)]
    run.tokens = TokenTable(table)
    run.meta.prompt = "\x1b[2J[/] prompt"
    return run


def _raw_controls(text: str) -> list[str]:
    bad = []
    for ch in text:
        o = ord(ch)
        if (o < 0x20 and ch not in "\n") or 0x7F <= o <= 0x9F or ch in "\u202e\u2066\u2069\u200f":
            bad.append(repr(ch))
    return bad


async def test_hostile_tokens_in_every_pane(tmp_path):
    run = hostile_run()
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        stream = app.stream
        screens = []
        for branch in (0, 1):
            app.show_branch(branch, cursor=0)
            await pilot.pause()
            for _ in range(run.length(branch)):
                await pilot.press("right")
                if stream.cursor % 4 == 0:
                    screens.append(app.export_screenshot())
            screens.append(app.export_screenshot())
        await pilot.press("question_mark")
        screens.append(app.export_screenshot())
        assert app.is_running  # [@click=app.quit] did not quit, [/] did not crash
    text = "".join(screens)
    assert "\x1b" not in text and "\x9b" not in text and "\u202e" not in text and "\x07" not in text
    assert "␛" in text and "&lt;U+202E&gt;" in text  # visible escapes instead
    assert "‹C3›" in text


async def test_hostile_strings_in_plain_text_form():
    """The same strings through the widgets' own text (not the SVG): no raw control characters."""
    from tokentui.tui.widgets.alternatives import AlternativesPane
    from tokentui.tui.widgets.branch_tree import BranchTree
    from tokentui.tui.widgets.layers import LayersPane

    run = hostile_run()
    app = explorer(run=run)
    seen = []
    async with app.run_test(size=(120, 40)) as pilot:
        for pos in range(1, run.length(1)):
            app.show_branch(1, cursor=pos)
            await pilot.pause()
            for widget in (
                app.stream,
                app.query_one(AlternativesPane),
                app.query_one(LayersPane),
                app.query_one(BranchTree),
                app.query_one("#status"),
            ):
                lines = [s.text for s in widget.render_lines(widget.region.reset_offset)]
                assert not _raw_controls("\n".join(lines)), (type(widget).__name__, pos)
                seen.extend(lines)
    shown = "\n".join(seen)
    assert "[@click=app.quit]x[/]" in shown and "[bold]b[/bold]" in shown  # markup shown literally


def test_replay_does_not_import_torch(tmp_path):
    path = save_run(make_run(), tmp_path / "r.tokentui")
    code = textwrap.dedent(f"""
        import asyncio, sys
        from tokentui.cli import load_ref
        from tokentui.tui.start import explorer
        async def main():
            app = explorer(run=load_ref({str(path)!r}, None))
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("right", "left", "m", "question_mark", "escape")
        asyncio.run(main())
        print("heavy:" + ",".join(m for m in ("torch", "transformers") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "heavy:"


async def test_narrow_terminal_tabs_side_panes(tmp_path):
    app = explorer(run=make_run())
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.screen.has_class("narrow") and app.screen.has_class("short")
        shown = [w.id for w in app.query(".side") if w.display and w.has_class("shown")]
        assert shown == ["alternatives"]
        await pilot.press("v")
        shown = [w.id for w in app.query(".side.shown")]
        assert shown == ["layers"]
        assert app.stream.region.width > 30


async def test_resizing_the_terminal_relays_out_the_side_panes():
    """A terminal resized to 80×24 (and back) switches to one side pane at a time, and the panes'
    rows are laid out again for their new width instead of wrapping."""
    from rich.cells import cell_len

    from tokentui.tui.widgets.alternatives import AlternativesPane

    app = explorer(run=make_run())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert not app.screen.has_class("narrow")
        assert len([w for w in app.query(".side") if w.display]) == 3
        for size in ((80, 24), (120, 40), (80, 24)):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.1)
            narrow = size[0] < 110
            assert app.screen.has_class("narrow") == narrow and app.screen.has_class("short") == narrow
            assert len([w for w in app.query(".side") if w.display]) == (1 if narrow else 3)
            pane = app.query_one(AlternativesPane)
            parts = getattr(pane.content, "renderables", [pane.content])  # the Texts it was last given
            rows = [row for part in parts for row in part.plain.splitlines()]
            assert rows and max(cell_len(r) for r in rows) <= pane.content_region.width
            # the token stream is laid out to the width it shows, never under its scrollbar
            assert app.stream.view.width <= app.stream.scrollable_content_region.width


def test_decoded_view_joins_split_characters_and_holds_back_incomplete_ones():
    from tokentui.core.tokens import TokenTable
    from tokentui.tui.view import BranchView

    run = make_run(n_branch_steps=(5, 3))
    seq = run.sequence(0).tolist()
    pieces = [b"a", "é".encode()[:1], "é".encode()[1:] + b"\n", b"\x1b", "✓".encode()[:2], "✓".encode()[2:], b"z"]
    table = {tid: b"x" for tid in range(run.meta.vocab_size)}
    for pos in range(4, 9):  # the root's own tokens carry the split characters
        table[seq[pos]] = b"?"
    run.tokens = TokenTable(table)
    ids = seq[:4] + [1000 + i for i in range(5)]
    for i, p in enumerate(pieces[:5]):
        run.tokens.add(1000 + i, p)
    run.branches[0].steps._a["token_id"][:5] = ids[4:]
    run.meta.vocab_size = 2000
    tokens_view = BranchView(run, 0, "probability")
    decoded = BranchView(run, 0, "probability", decoded=True)
    assert tokens_view.texts[5] == "‹C3›" and tokens_view.texts[6] == "‹A9›↵"
    assert decoded.texts[5] == "" and decoded.texts[6] == "é" and decoded.newline[6]
    assert decoded.texts[7] == "␛" and decoded.texts[8] == ""  # ✓ not complete yet: held back


def run_of(pieces: list[bytes]):
    """A run (make_run's shape) whose tokens are `pieces`: the first four the prompt, the rest the
    root branch's first steps."""
    run = make_run(n_branch_steps=(6, 2))
    ids = [1000 + i for i in range(len(pieces))]
    table = {i: b"x" for i in range(run.meta.vocab_size)}
    table.update(zip(ids, pieces))
    run.tokens = TokenTable(table)
    run.meta.vocab_size = 2000
    run.prompt._a["token_id"][:4] = ids[:4]
    run.branches[0].steps._a["token_id"][: len(ids) - 4] = ids[4:]
    return run


async def test_indentation_after_a_line_break_opens_the_next_line():
    """'\\n    ' is one token: its newline ends the line, its spaces indent the next one, and the
    cursor on it lights up both parts."""
    run = run_of([b"def", b" f", b"():", b"\n    ", b"return", b" 1", b"\n"])
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()  # the run is laid out after the first frame
        app.show_branch(0, cursor=3)
        await pilot.pause()
        stream = app.stream
        lines = [stream.render_line(y).text.rstrip() for y in range(3)]
        assert lines[0] == "def f():↵"
        assert lines[1].startswith("    return 1↵")
        cursor_style = [seg.style for seg in stream.render_line(1) if seg.text == "    "][0]
        assert cursor_style.reverse  # the carried indentation belongs to the token under the cursor
        await pilot.press("down")  # moves to the token below, not into the indentation
        assert stream.cursor == 4


async def test_the_decoded_view_keeps_the_blank_line_of_a_double_newline_token():
    """'.\n\n' is one token: the decoded view (D) shows its blank line (a trial saw two paragraphs
    run together, the exported text had the blank line); the cursor steps over the blank line,
    up and down, and a click on it lands on the token that made it."""
    run = run_of([b"One", b" line", b".\n\n", b"    Two", b" more", b"\n"])
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        app.show_branch(0, cursor=1)
        await pilot.press("D")
        await pilot.pause()
        stream = app.stream
        assert [stream.render_line(y).text.rstrip() for y in range(3)] == ["One line.", "", "    Two more"]
        await pilot.press("down")
        assert stream.cursor == 3  # over the blank line, onto the line below
        await pilot.press("up")
        assert stream.cursor == 0  # (column 0 of the first line)
        inner = stream.content_region.offset - stream.region.offset  # (its border)
        await pilot.click(stream, offset=(inner.x + 2, inner.y + 1))
        assert stream.cursor == 2  # the blank line belongs to the token that ends with it
        await pilot.press("D")  # the tokens view: one line break, the token's own bytes escaped
        await pilot.pause()
        assert stream.render_line(0).text.rstrip() == "One line.↵↵"


async def test_prints_and_flushes_while_the_app_runs_do_not_break_it():
    """Textual captures stdout/stderr while the app runs and calls App._flush(stderr=…) on a flush
    (a library's warning, a progress bar): the app must not shadow that method."""
    app = explorer(run=make_run())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        print("a library's message", flush=True)
        sys.stderr.write("a warning\n")
        sys.stderr.flush()
        await pilot.press("home", "right")
        await pilot.pause()
        assert app.stream.cursor == 1 and app.return_code is None


async def test_after_a_resize_the_token_stream_never_runs_under_its_scrollbar():
    """A run that fits at 120×40 overflows at 80×24: the scrollbar appears, and the lines laid out
    for the new width must leave its columns free (they lost their last characters under it)."""
    from pathlib import Path

    from tokentui.store.runfile import load_run

    run = load_run(Path(__file__).parents[2] / "tests/fixtures/demo_runs" / "generate.tokentui")
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        stream = app.stream
        assert stream.virtual_size.height > stream.scrollable_content_region.height  # it overflows now
        assert stream.view.width <= stream.scrollable_content_region.width


def test_decoded_text_between_two_breaks_of_one_token_stays_in_place_and_wraps_make_no_blank_lines():
    """A token ' a\\nb\\n' showed 'ab' and a blank line (text moved across a break): the decoded view
    keeps it on one line with its inner break shown (↵). And a line a wrap starts right after a
    token's carried indentation was taken for a blank line: up/down stepped over it and the
    indentation moved; the carried text is drawn once, on the line the break opens."""
    from tokentui.tui.view import BranchView

    run = run_of([b"One", b" a\nb\n", b"c", b"\n" + b" " * 10, b"longer", b"x"])
    view = BranchView(run, 0, "probability", decoded=True, width=10)
    lines = []
    for line in range(view.n_lines):
        start, end = view.line_range(line)
        lines.append(view.carried(line)[1] + "".join(view.texts[start:end]))
    assert lines[0] == "One a↵b" and lines[1].startswith("c")
    # the carried spaces (cut to half the width: 5) then "longer" (11 > 10 columns): the wrap puts
    # "longer" on the next line; the spaces are drawn once, and no line counts as blank
    assert not view.blank
    assert sum(text.startswith(" " * 5) for text in lines) == 1
    assert any(text.startswith("longer") for text in lines), lines
