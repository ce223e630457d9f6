r"""The text a command reads from `--text`, `--file` or standard input (`-`).

A shell passes `--text 'a\nb'` as a backslash and an n: that is what gets scored, unless
`--text-escapes` asks for \n, \t, \r, \\, \xNN and \uNNNN to be read as the characters they name.
`--text -` or `--file -` reads standard input, so a multi-line text needs no file."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tokentui.core.params import RunError, check_text

_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.|$)", re.DOTALL)
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
ESCAPES_HELP = r"\n, \t, \r, \\, \xNN and \uNNNN"


def unescape(text: str) -> str:
    r"""Interpret backslash escapes; an unknown one (or a lone trailing backslash) is an error."""

    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code in _SIMPLE:
            return _SIMPLE[code]
        if len(code) > 1:
            return chr(int(code[1:], 16))
        if code in ("x", "u"):  # (a known escape whose digits are missing or not hexadecimal)
            digits = "two" if code == "x" else "four"
            what = f"\\{code} in --text takes {digits} hexadecimal digits"
        else:
            what = f"unknown escape \\{code} in --text" if code else "--text ends in a lone \\"
        raise RunError(f"{what} (known escapes: {ESCAPES_HELP}; use \\\\ for a backslash)")

    return _ESCAPE.sub(one, text)


def _stdin() -> str:
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RunError("standard input is not UTF-8 text") from None


def read_text(text: str | None, file: Path | None, escapes: bool = False) -> str:
    """Exactly one of `text` and `file`; "-" for either reads standard input. Refuses an empty text."""
    if (text is None) == (file is None):
        raise RunError("give exactly one of --text or --file")
    if escapes and text is None:
        raise RunError("--text-escapes applies to --text only")
    if text == "-" or file == Path("-"):
        value = _stdin()
    elif file is not None:
        try:
            value = file.read_bytes().decode("utf-8")  # (as standard input: CR LF kept, not turned into LF)
        except UnicodeDecodeError:
            raise RunError(f"{file} is not UTF-8 text") from None
        except FileNotFoundError:
            raise RunError(f"{file}: no such file") from None
        except IsADirectoryError:
            raise RunError(f"{file} is a folder, not a file") from None
        except OSError as e:
            raise RunError(f"{file}: {e.strerror or e}") from None
    else:
        assert text is not None  # exactly one of text and file was given
        value = unescape(text) if escapes else text
    if not value.strip():
        raise RunError("the text is empty")
    return check_text(value, "the text")
