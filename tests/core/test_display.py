"""Untrusted token text never reaches the terminal raw."""

import math
import unicodedata

import numpy as np
import pytest

from tokentui.core.display import decode_bytes, display_token, safe_text, sanitize

HOSTILE = [
    b"\x1b[31mred\x1b[0m",
    b"\x1b]0;title\x07",
    b"\x9b2J",
    "\u202eevil".encode(),
    b"a\x00b\x7f",
    "\u2066x\u2069".encode(),
    b"[/]",
    b"[@click=app.quit]x[/]",
    "\u200b".encode(),
    b"\r\n\t",
]


def _is_safe(text: str) -> bool:
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Zl", "Zp") and ch not in "\n\t":
            return False
    return True


@pytest.mark.parametrize("data", HOSTILE)
def test_display_forms_hold_no_control_or_format_characters(data):
    assert _is_safe(display_token(data))
    assert "\n" not in display_token(data) and "\t" not in display_token(data)
    assert _is_safe(safe_text(data))


def test_visible_escapes():
    assert display_token(b"\x1b[31m") == "␛[31m"
    assert display_token("\u202e".encode()) == "<U+202E>"
    assert display_token(b"a\nb\tc\r") == "a↵b→c␍"
    assert display_token(b"\x7f\x00") == "␡␀"
    assert display_token("\x85".encode()) == "<U+0085>"
    assert sanitize("plain text") == "plain text"


def test_partial_utf8_shows_bytes():
    e_acute = "é".encode()  # c3 a9
    assert display_token(e_acute[:1]) == "‹C3›"
    assert display_token(e_acute[1:]) == "‹A9›"
    assert decode_bytes(e_acute) == "é"
    # running text holds back an incomplete trailing character
    assert safe_text(b"caf" + e_acute[:1]) == "caf"
    assert safe_text(b"caf" + e_acute) == "café"
    assert safe_text("✓".encode()[:2]) == ""
    assert safe_text(b"a\xff") == "a‹FF›"


def test_a_token_shown_on_its_own_shows_its_spaces():
    from tokentui.core.display import lone_text, lone_token

    assert lone_token(b" the") == "␠the" and lone_token(b"the") == "the"
    assert lone_token(b" ") == "␠" and lone_token(b"\n  ") == "↵␠␠"
    assert lone_token(b"\x1b[1m x") == "␛[1m␠x"  # still escaped
    assert lone_text(" parser (x)") == "␠parser␠(x)"
    # every other space separator (no-break, thin, em, ideographic …) on its own is named: shown
    # as itself it looks like a space, or like nothing at all
    others = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Zs" and c != 0x20]
    assert len(others) == 16
    for ch in others:
        assert lone_text(ch) == f"<U+{ord(ch):04X}>"
        assert safe_text(ch.encode()) == display_token(ch.encode()) == ch  # running text keeps it as written


def test_probabilities_that_round_to_zero_show_in_scientific_form():
    """`prob_text` writes p with its decimals, unless they would read 0 for a possible token: then
    it is p to two significant figures (one for 3 decimals, or below 1e-9), in a string no longer
    (the alternatives' column: 6 cells), but for 3 decimals below 1e-99."""
    from tokentui.core.display import prob_text

    for p in np.concatenate([np.logspace(-320, 0, 4000), [0.0, 0.5, 1.0, 5e-324]]).tolist():
        for digits in (3, 4):
            text = prob_text(p, digits)
            if round(p, digits) > 0 or p == 0:
                assert text == f"{p:.{digits}f}"
                continue
            e = math.floor(math.log10(p))
            decimals = digits - 3 if e > -10 else 0  # (a two-digit exponent: no decimals)
            assert float(text) > 0 and abs(float(text) - p) <= 0.5001 * 10 ** (e - decimals), (p, text)
            assert "e-" in text and len(text) <= digits + 2 + (e <= -100 and digits == 3), (p, text)
    assert prob_text(float("nan")) == "nan"


@pytest.mark.parametrize(
    "text", ["\u00a0the end of it", "ab\u00a0\u00a0x", "x\u3000y", "abcdefghij", "\u2009", "漢\u00a0漢\u00a0漢"]
)
def test_a_cut_keeps_a_named_character_whole_or_leaves_it_out(text):
    """A narrow column cut a no-break space's `<U+00A0>` into `<U+…A0>`: a cut now keeps each
    named character whole, or leaves it out, and fits the width exactly (in terminal cells: a
    wide character is two)."""
    import re

    from rich.cells import cell_len

    from tokentui.core.display import cut_end, cut_middle, lone_text
    from tokentui.tui.widgets.token_text import lone  # (the alternatives', lens's and tree's cells)

    shown = lone_text(text)
    whole = re.findall(r"<U\+[0-9A-F]{4}>|.", shown)
    heads = {"".join(whole[:i]) for i in range(len(whole) + 1)}
    tails = {"".join(whole[len(whole) - i :]) for i in range(len(whole) + 1)}
    for width in range(0, cell_len(shown) + 2):
        cuts = (cut_middle(shown, width, cell_len), cut_end(shown, width, cell_len))
        cuts += (lone(text, width).plain, lone(text, width, middle=True).plain)
        for cut in cuts:
            assert cell_len(cut) <= width
            if cell_len(shown) <= width:
                assert cut == shown
                continue
            head, ellipsis, tail = cut.partition("…")
            assert ellipsis or width == 0
            assert head in heads and tail in tails, (width, cut)  # whole pieces, from the start and the end
