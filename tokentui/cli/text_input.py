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


# The most a text may hold: far more than any model's context (a million tokens is a few MiB),
# and a limit to what is read — `--file /dev/zero` read until memory ran out.
MAX_TEXT_BYTES = 64 << 20


def _too_long(what: str) -> RunError:
    return RunError(f"{what} is longer than {MAX_TEXT_BYTES >> 20} MiB: more than any model's context")


def _stdin() -> str:
    if hasattr(sys.stdin, "buffer"):
        data = sys.stdin.buffer.read(MAX_TEXT_BYTES + 1)
    else:
        data = sys.stdin.read(MAX_TEXT_BYTES + 1).encode()
    if len(data) > MAX_TEXT_BYTES:
        raise _too_long("standard input")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RunError("standard input is not UTF-8 text") from None


def _read_file(file: Path) -> bytes:
    """A file's or a pipe's bytes (`--file <(cmd)`, a FIFO, /dev/stdin), at most MAX_TEXT_BYTES;
    a device is refused (/dev/zero has no end)."""
    from tokentui.cli.output import waiting_for_pipe
    from tokentui.core.files import NotAFile, open_to_read

    try:
        f, _st = open_to_read(file, pipes=True, waiting=waiting_for_pipe)
    except NotAFile:
        raise RunError(f"{file} is not a regular file or a pipe") from None
    with f:
        data = f.read(MAX_TEXT_BYTES + 1)
    if len(data) > MAX_TEXT_BYTES:
        raise _too_long(str(file))
    return data


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
            value = _read_file(file).decode("utf-8")  # (as standard input: CR LF kept, not turned into LF)
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
