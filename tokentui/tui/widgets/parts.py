"""Lines made of parts joined by " · " (the legend, the settings line): a line breaks between two
parts, never inside one that fits, so a narrow terminal shows "chat off" whole and no line ends
on a stray separator."""

from __future__ import annotations

from rich.text import Text


def join_parts(parts: list[Text], width: int) -> Text:
    """`parts` joined by " · " on a line while the next fits in `width` cells, else on the next
    line (a part wider than a line is left for the widget to wrap)."""
    out = Text()
    used = 0
    for part in parts:
        if not out:
            used = part.cell_len
        elif used + 3 + part.cell_len <= width:
            out.append(" · ")
            used += 3 + part.cell_len
        else:
            out.append("\n")
            used = part.cell_len
        out.append_text(part)
    return out
