"""Defects a second user trial of the explorer found (two models, attribution, tree search, stats,
export, hostile prompts at 80×24 and 120×40), each driven with real key presses."""

from __future__ import annotations

from rich.cells import cell_len
from textual import events
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


HOSTILE_PROMPT = (
    "Say \x1b[31mred\x1b[0m, \x1b]2;pwned\x07 \x1b]52;c;cHduZWQ=\x07 \x00\x7f\x9b2J \u202eevil\ttab 🙂 مرحبا"
)


async def test_a_prompt_with_escape_sequences_is_drawn_escaped_and_kept_exact(model_dirs, cache_dir):
    """`explore --prompt` put its text into the prompt box as it was, and the box drew it raw: an
    OSC 2 retitled the terminal, OSC 52 would set the clipboard, SGR codes and a bidi override
    garbled the screen. The box draws one visible stand-in per such character, while the prompt
    itself — what is generated, what editing keys change — stays exact."""
    app = explorer(model=str(model_dirs["gpt2"]), prompt=HOSTILE_PROMPT)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the model")
        box = app.prompt_box
        for size in ((80, 24), (120, 40)):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.1)
            shown = rendered(box)
            assert not [ch for ch in shown if ch not in "\t\n" and not ch.isprintable()], shown
            assert "␛[31mred␛[0m" in shown and "␛]2;pwned␇" in shown
        drawn = "".join(box.get_line(i).plain for i in range(box.document.line_count))  # (all of it)
        assert "␛]52;c;cHduZWQ=␇ ␀␡�2J �evil\ttab" in drawn and len(drawn) == len(HOSTILE_PROMPT)
        await pilot.press("i", "up", "up", "up", "home", "right", "!")  # typed after the S: the rest untouched
        await pilot.pause(0.1)
        assert box.prompt == "S!" + HOSTILE_PROMPT[1:]
        assert "S!ay ␛[31mred" in rendered(box)
        await pilot.press("ctrl+z")  # undone: exactly the prompt given
        await pilot.pause(0.1)
        assert box.prompt == HOSTILE_PROMPT
        await pilot.press("ctrl+y")
        await pilot.pause(0.1)
        assert box.prompt == "S!" + HOSTILE_PROMPT[1:]
        await pilot.press("escape", "ctrl+r")
        await wait_generated(pilot, app)
        assert app.run_obj is not None and app.run_obj.meta.prompt == "S!" + HOSTILE_PROMPT[1:]
        assert "\x1b" not in rendered(box) and "\x1b" not in app.export_screenshot()


async def test_a_prompt_of_control_characters_wraps_whole_and_pastes_exactly(tmp_path):
    """Stand-ins drawn for characters Textual counts as 0 columns wide made each line wider than it
    had wrapped it: the end of a wrapped line fell outside the box. The box holds the stand-ins, so
    every character is on screen; the prompt (and a paste's control characters) stays exact, and a
    vertical tab or a lone CR does not break the line — except a paste's CR: terminals send a
    pasted line break as CR (a trial's two-line paste reached the model as one line with ␍)."""
    from tests.factories import make_run

    prompt = "xy\x1b" * 12 + " END\x0bnext\rmore"
    app = explorer(run=make_run(), prompt=prompt, cache_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        box = app.prompt_box
        assert box.prompt == prompt and box.document.line_count == 1
        assert "xy␛" * 12 in rendered(box)  # the first row whole
        sections = box.wrapped_document.get_sections(0)  # the line as wrapped: every part fits
        assert "".join(sections) == box.document.get_line(0) and len(sections) == 2
        assert all(cell_len(part.rstrip()) <= box.wrap_width for part in sections), (sections, box.wrap_width)
        await pilot.press("i", "down")  # the second row scrolled into view: the rest of the line
        await pilot.pause(0.1)
        assert sections[1].strip() in rendered(box) and "END" in rendered(box) and "more" in rendered(box)
        await pilot.press("end")
        app.post_message(events.Paste(" \x1b[2Jpasted\r\nline"))  # (a terminal's bracketed paste)
        await pilot.pause(0.2)
        assert box.prompt == prompt + " \x1b[2Jpasted\nline"
        assert "\x1b" not in box.text and "␛[2Jpasted" in box.text and "\x1b" not in app.export_screenshot()
        app.post_message(events.Paste("\rthird\r\rfifth"))  # (tmux, xterm and VTE paste a line break as CR)
        await pilot.pause(0.2)
        assert box.prompt == prompt + " \x1b[2Jpasted\nline\nthird\n\nfifth" and box.document.line_count == 5


async def test_x_exports_the_attribution_on_show_to_seed_004s_file(tmp_path, monkeypatch):
    """A run holds several attribution records; `x` with a .seed004.json name wrote the newest
    (here the association matrix), whatever the pane showed, and said only 'exported'. It writes
    the record on show and names it; with none on show, the newest, saying so."""
    import json

    from tests.factories import attributed_run

    monkeypatch.chdir(tmp_path)
    app = explorer(run=attributed_run(30), cache_dir=tmp_path / "cache")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("end", "left", "left", "left", "M", "M", "a")  # input × gradient of position 30
        await pilot.pause(0.2)
        shown = app.session.attribution
        assert shown is not None and shown.record.method == "input-x-gradient"
        notes: list[str] = []
        monkeypatch.setattr(app, "notify", lambda message, **kw: notes.append(message))
        await pilot.press("x", "ctrl+u", *"a.seed004.json", "enter")
        await pilot.pause(0.3)
        saved = json.loads((tmp_path / "a.seed004.json").read_text())
        assert saved["tokentui"]["attribution"] == 1 and saved["metadata"]["attribution_method"] == "input-x-gradient"
        assert "attribution 1, on show: input-x-gradient of position 30" in notes[-1]
        await pilot.press("escape")  # back to the metric: nothing on show
        await pilot.pause(0.1)
        await pilot.press("x", "ctrl+u", *"b.seed004.json", "enter")
        await pilot.pause(0.3)
        assert json.loads((tmp_path / "b.seed004.json").read_text())["tokentui"]["attribution"] == 2
        assert "attribution 2, the newest: gradient-norm of positions 4–33" in notes[-1]


def test_the_prompt_lens_progress_says_escape_cancels_and_gives_way_when_the_run_starts():
    """A long prompt's lens reports progress before the run starts: the status bar kept the last
    report ('1,500 of 1,500 positions') for the whole generation and lost 'escape cancels'."""
    from tests.factories import make_run
    from tokentui.engine.events import Progress, RunStarted
    from tokentui.tui.state import Session

    s = Session(AppState.IDLE)
    s.begin("generating a new run from the prompt … · escape cancels")
    s.apply(Progress("the prompt's logit lens: 64 of 1,500 positions", 64 / 1500))
    assert s.note == "the prompt's logit lens: 64 of 1,500 positions · escape cancels"
    s.apply(RunStarted(make_run()))
    assert s.note == "generating a new run from the prompt … · escape cancels"


def test_the_prompt_box_keeps_the_zero_width_joiners_and_escapes_the_rest():
    """ZWNJ (Persian) and ZWJ (emoji sequences) act on nothing: kept; a bidi override, C0 and C1
    controls get one stand-in each (the box's document is one character for one)."""
    from tokentui.tui.widgets.prompt_area import shown_text

    for text in ("می\u200cخواهم", "👩\u200d💻", "a\tb\nc"):
        assert shown_text(text) == text
    hostile = "\x1b[2J\u202eevil\x85\x0b\r\x00"
    shown = shown_text(hostile)
    assert len(shown) == len(hostile) and shown.isprintable() and shown.startswith("␛[2J")


async def test_a_forms_error_goes_once_the_field_is_corrected(model_dirs, cache_dir):
    """Enter on a bad value names it under the fields; the name stayed while the field was
    corrected and others changed, until the next Enter. Now each edit checks again: a field still
    wrong keeps it, the fields right clear it, and nothing is applied before Enter."""
    app = explorer(model=str(model_dirs["gpt2"]), prompt="hello")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the model")
        await pilot.press("ctrl+r")
        await wait_generated(pilot, app)
        await pilot.press("e")
        await pilot.pause(0.2)
        form = app.screen
        before = form.query_one(Input).value
        await pilot.press("end", "ctrl+u", "x", "enter")
        await pilot.pause(0.2)
        error = form.query_one("#form-error")
        assert "not a number: min branch threshold" in rendered(error)
        await pilot.press("backspace", "y")  # still wrong: still named
        await pilot.pause(0.1)
        assert "not a number: min branch threshold" in rendered(error)
        await pilot.press("backspace", *before)  # right again: gone, and the form still open
        await pilot.pause(0.1)
        assert not rendered(error).strip() and app.screen is form
        await pilot.press("escape")


async def test_typed_format_characters_are_kept_as_pasted_ones_are(tmp_path):
    """A trial typed a family emoji (three emoji joined by U+200D) and a bidi mark: TextArea
    inserts printable keys only, so the joiners and the mark were dropped without a word, while
    the same text pasted kept them. Typed, they are kept too, the mark shown as its stand-in."""
    from tests.factories import make_run

    app = explorer(run=make_run(), prompt="", cache_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        await pilot.press("i")
        box = app.prompt_box
        before = box.prompt  # (the run's; typing goes on at its end)
        for ch in "a\u202eb👨\u200d👩\u200d👧":
            box.post_message(events.Key(ch, ch))  # (as the terminal's input parser sends a typed character)
            await pilot.pause()
        await pilot.pause(0.1)
        assert box.prompt == before + "a\u202eb👨\u200d👩\u200d👧"
        assert "\u202e" not in box.text and "\u202e" not in app.export_screenshot()
