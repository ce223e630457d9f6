"""Turn untrusted token bytes into text that is safe to put on a terminal.

Token text comes from model output, tokenizers and run files, so it may hold anything: terminal
escape sequences, bidi overrides, NUL, or half of a UTF-8 character. Every string a user sees goes
through here first. Nothing returned contains a C0/C1 control, DEL, or a Unicode format/separator
character; partial UTF-8 shows its bytes as ‹C3›.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache

HEX_ERRORS = "tokentui-hexbytes"  # codecs error handler: undecodable bytes → ‹XX›


def _hex_bytes(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeDecodeError):
        raise err
    bad = err.object[err.start : err.end]
    return "".join(f"‹{b:02X}›" for b in bad), err.end


codecs.register_error(HEX_ERRORS, _hex_bytes)

# Visible stand-ins for whitespace that would otherwise vanish or move the cursor.
_VISIBLE_WS = {"\n": "↵", "\t": "→", "\r": "␍"}


@lru_cache(maxsize=65536)
def _char(ch: str, visible_whitespace: bool) -> str:
    if visible_whitespace and ch in _VISIBLE_WS:
        return _VISIBLE_WS[ch]
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # control pictures: ␀ … ␟ (ESC → ␛)
    if code == 0x7F:
        return "␡"
    cat = unicodedata.category(ch)
    if cat in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
        return f"<U+{code:04X}>"
    return ch


def sanitize(text: str, visible_whitespace: bool = False) -> str:
    """Replace every character that could act on a terminal with a visible escape."""
    if text.isprintable() and not visible_whitespace:
        return text
    return "".join(_char(ch, visible_whitespace) for ch in text)


def decode_bytes(data: bytes) -> str:
    """UTF-8 decode; bytes that are not (part of) a valid character show as ‹XX›."""
    return data.decode("utf-8", errors=HEX_ERRORS)


def decode_open(data: bytes) -> tuple[str, bytes]:
    """`data` decoded as `decode_bytes` does, up to an incomplete UTF-8 character at its end,
    which is returned undecoded: text grown token by token stays exact across a character split
    between tokens (`text + decode_bytes(rest)` is `decode_bytes(data)`)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors=HEX_ERRORS)
    text = decoder.decode(data, final=False)
    return text, decoder.getstate()[0]


def display_token(data: bytes, visible_whitespace: bool = True) -> str:
    """The display form of one token: decoded, escaped, whitespace made visible."""
    return sanitize(decode_bytes(data), visible_whitespace)


VISIBLE_SPACE = "␠"  # a space in a token shown on its own (alternatives, headers, tree labels)


def lone_text(text: str) -> str:
    """Text shown on its own (a token, a forced prefix): escaped, and every whitespace character
    visible, spaces as ␠, so " the" and "the" (or a lone space) never look alike. The other space
    separators (no-break, thin, em, ideographic …) are named, `<U+00A0>`: on their own they look
    like a space or like nothing (in running text they stay, spacing words as written)."""
    shown = sanitize(text, visible_whitespace=True).replace(" ", VISIBLE_SPACE)
    if shown.isascii():
        return shown
    return "".join(f"<U+{ord(ch):04X}>" if unicodedata.category(ch) == "Zs" else ch for ch in shown)


# a named character (`lone_text`'s `<U+00A0>`) or any one character: the pieces a cut keeps whole
_PIECE = re.compile(r"<U\+[0-9A-F]{4,6}>|.", re.S)


def cut_middle(text: str, width: int, measure: Callable[[str], int] = len) -> str:
    """`text` in `width` characters (or cells, `measure`: rich's `cell_len`): whole if it fits,
    else its start and its end around "…" (the end gets the larger half: run ids, item labels and
    model folders differ there). A named character is kept whole or left out: a narrow column
    showed `<U+…A0>`."""
    if measure(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    pieces = _PIECE.findall(text)
    head = _fitting(pieces, (width - 1) // 2, measure)
    if not head and measure(pieces[0]) <= width - 3:  # (a leading named character over half the room: kept)
        head = pieces[:1]
    tail = _fitting(pieces[len(head) :][::-1], width - 1 - sum(map(measure, head)), measure)
    return "".join(head) + "…" + "".join(reversed(tail))


def cut_end(text: str, width: int, measure: Callable[[str], int] = len) -> str:
    """`text` in `width` characters (or cells, `measure`): whole if it fits, else its start and
    "…", a named character kept whole or left out."""
    if measure(text) <= width:
        return text
    return "".join(_fitting(_PIECE.findall(text), width - 1, measure)) + "…"[: max(0, width)]


def _fitting(pieces: list[str], room: int, measure: Callable[[str], int]) -> list[str]:
    """The first of `pieces` that fit in `room` together."""
    out, used = [], 0
    for piece in pieces:
        if used + measure(piece) > room:
            break
        out.append(piece)
        used += measure(piece)
    return out


def lone_token(data: bytes) -> str:
    """The display form of one token shown on its own (see `lone_text`)."""
    return lone_text(decode_bytes(data))


def safe_text(data: bytes) -> str:
    """Running text (several tokens joined) for display: newlines and tabs kept, the rest escaped.

    An incomplete UTF-8 character at the very end is held back (up to 3 bytes), since the next
    token will usually complete it.
    """
    cut = len(data)
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 != 0x80:  # lead byte or ASCII
            need = 1 if b < 0x80 else 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 else 4 if b >> 3 == 0b11110 else 1
            if need > back:
                cut = len(data) - back
            break
    out = []
    for ch in decode_bytes(data[:cut]):
        out.append(ch if ch in "\n\t" else _char(ch, False))
    return "".join(out)


def counted(n: int, word: str, plural: str | None = None) -> str:
    """A count with its noun, for messages: `1 position`, `2 positions` (`plural` when adding
    "s" is wrong: `entry`/`entries`)."""
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


def prob_text(p: float, digits: int = 4) -> str:
    """A probability with `digits` decimals, or, where that would read 0 for a token that was
    possible, in scientific form in at most as many characters (`3.2e-5`, `3e-10` for 4; `3e-4`
    for 3; `3e-100` is one more): a trial's sampled token of p = 0.0003 read `p=0.000`."""
    fixed = f"{p:.{digits}f}"
    if not (p > 0 and float(fixed) == 0):  # (also NaN and ∞: as Python writes them)
        return fixed
    mantissa, exponent = f"{p:.{max(0, digits - 3)}e}".split("e")
    if len(mantissa) + len(str(int(exponent))) + 1 > digits + 2:  # (a longer exponent: no decimals, "3e-10")
        mantissa, exponent = f"{p:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"
