"""A token shown on its own (alternatives, headers, tree labels): escaped, its whitespace visible,
the ␠ of a space dimmed so the word stays readable. Never parsed as markup."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text

from tokentui.core.display import VISIBLE_SPACE, cut_end, cut_middle, decode_bytes, lone_text

if TYPE_CHECKING:  # numpy (under Run) stays out of a replay's first frame
    from tokentui.core.run import Run

_DIM = Style(dim=True)


@lru_cache(maxsize=4096)
def _plain(text: str) -> str:
    return lone_text(text)


def lone(text: str, width: int | None = None, style: Style | str = "", middle: bool = False) -> Text:
    """`text` as a Text on its own, cut to `width` cells with … when given (`middle`: its start
    and end kept around the …, where a narrow column cut "␠scattered" and "␠scattering" alike)."""
    shown = _plain(text)
    if width is not None and cell_len(shown) > width:  # (in cells, named characters kept whole)
        shown = (cut_middle if middle else cut_end)(shown, width, cell_len)
    out = Text(shown, style=style)
    start = 0
    while (i := shown.find(VISIBLE_SPACE, start)) >= 0:
        out.stylize(_DIM, i, i + 1)
        start = i + 1
    if width is not None:
        out.truncate(width, overflow="ellipsis")
    return out


def lone_id(run: Run, token_id: int, width: int | None = None, style: Style | str = "", middle: bool = False) -> Text:
    """Token `token_id` of `run` on its own (its bytes decoded here: TokenTable.display keeps spaces)."""
    return lone(decode_bytes(run.tokens.bytes_of(int(token_id))), width, style, middle)


OPEN, CLOSE = "“", "”"  # around a token that follows a number ("pos 45 “1”", not "pos 45 1")


def quoted_id(run: Run, token_id: int, width: int | None = None, style: Style | str = "") -> Text:
    """`lone_id` between quotes (the quotes unstyled, cut as part of the width): after a position
    a digit token would read as part of the number."""
    inner = lone_id(run, token_id, None if width is None else max(1, width - 2), style)
    return Text(OPEN) + inner + Text(CLOSE)
