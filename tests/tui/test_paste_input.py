"""Bracketed pastes holding an ESC: the pasted text arrives whole as one Paste, never as key
presses (Textual's parser let the characters after a pasted ESC out as keys: a pasted `\\t`, `d`,
`q` moved the focus, deleted, quit)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from textual import events

from tests.terminal import Terminal
from tokentui.tui.paste_input import ESC_STAND_IN, PASTE_END, PASTE_START, PasteEscapes, PasteSafeParser

SAMPLE = Path(__file__).resolve().parents[2] / "sample_runs" / "chat.tokentui"


def reference(stream: str) -> str:
    """The whole stream at once: every ESC strictly inside a start … end marker pair stood in for."""
    return re.sub(
        re.escape(PASTE_START) + "(.*?)" + re.escape(PASTE_END),
        lambda m: PASTE_START + m.group(1).replace("\x1b", ESC_STAND_IN) + PASTE_END,
        stream,
        flags=re.S,
    )


def test_escapes_inside_pastes_are_stood_in_for_however_the_reads_split_them():
    stream = (
        "a\x1bb" + PASTE_START + "x\x1b[31mRED\x1b[0m\x1b" + PASTE_END + "\x1b[A"
        + PASTE_START + "\x1b[201" + "~tail" + PASTE_END + "z\x1b"
    )  # fmt: skip
    # (the second paste's text "\x1b[201" + "~tail" holds its own end marker: it ends there, as a terminal's does)
    want = reference(stream)
    assert want.count(ESC_STAND_IN) == 3
    for a in range(len(stream) + 1):
        for b in range(a, len(stream) + 1, 3):
            f = PasteEscapes()
            got = f(stream[:a]) + f(stream[a:b]) + f(stream[b:])
            assert got + f.held == want, (a, b)
    f = PasteEscapes()
    assert "".join(f(ch) for ch in stream) == want  # a character a read
    assert f("\x1b") == "\x1b"  # outside a paste nothing waits: an escape key press goes on at once


def _tokens(parser, data: str) -> list:
    out = list(parser.feed(data))
    time.sleep(0.2)
    return out + list(parser.tick())


def test_the_parser_gives_one_paste_and_no_keys_from_it():
    pasted = "note\x1b[0m\tdelete q"
    got = _tokens(PasteSafeParser(), "i" + PASTE_START + pasted + PASTE_END)
    keys = [t.key for t in got if isinstance(t, events.Key)]
    pastes = [t.text for t in got if isinstance(t, events.Paste)]
    assert keys == ["i"] and pastes == [pasted.replace("\x1b", ESC_STAND_IN)]


def test_a_paste_with_an_escape_goes_into_the_prompt_and_runs_no_key(tmp_path):
    """The real launcher on a pseudo-terminal: the paste ends in ` q`; had its characters leaked as
    keys, the tab would have left the prompt and q quit the explorer."""
    cmd = [sys.executable, "-m", "tokentui", "replay", str(SAMPLE)]
    with Terminal(cmd, size=(100, 30), env={"TOKENTUI_CACHE_DIR": str(tmp_path)}) as term:
        term.wait_for(b"tokens", timeout=60)
        term.press(b"i")
        time.sleep(0.5)
        term.press((PASTE_START + "note\x1b[0m\tdelete q" + PASTE_END).encode())
        term.wait_for("note␛[0m".encode(), b"delete", timeout=20)  # (the ESC shown as ␛, the tab as spaces)
        time.sleep(1.0)
        assert term.proc.poll() is None, term.text[-800:]  # still running: no q reached the app


async def test_a_pasted_escape_in_a_one_line_field_shows_as_a_symbol_and_comes_back_an_escape():
    """A trial pasted ' \\e[31mred' as a branch's text (`t`): the field showed nothing for the ESC
    and the model was given U+E01B (the parser's stand-in) instead of the ESC; the prompt box gives
    the ESC and shows ␛. One-line fields now do the same."""
    from tests.factories import make_run
    from tokentui.tui.screens.text_prompt import TextPrompt
    from tokentui.tui.start import explorer
    from tokentui.tui.widgets.text_field import TextField

    pasted = " \x1b[31mred"
    got: list[str | None] = []
    app = explorer(run=make_run())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.push_screen(TextPrompt("branch at position 3: take this text, then continue"), got.append)
        await pilot.pause()
        field = app.screen.query_one(TextField)
        assert app.focused is field
        field.post_message(events.Paste(pasted.replace("\x1b", ESC_STAND_IN)))  # (as the parser hands it on)
        await pilot.pause()
        assert field._value.plain == " ␛[31mred" and "\x1b" not in field._value.plain
        await pilot.press("enter")
        await pilot.pause()
    assert got == [pasted]
