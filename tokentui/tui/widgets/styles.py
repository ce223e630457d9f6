"""Component-class styles laid over a widget's text."""

from __future__ import annotations

from rich.style import Style
from textual.widget import Widget


def part_style(widget: Widget, name: str) -> Style:
    """The style of `widget`'s component class `name`, to lay over its text: the attributes (bold,
    italic …) of Textual's partial style, with the colour resolved against the widget's background.
    The partial style alone resolves an `auto` colour — `$text-muted` is "auto 60%" — against no
    background at all, which gives pure white: unreadable on the light theme, not muted on a dark
    one."""
    partial = widget.get_component_rich_style(name, partial=True)
    if partial.color is None:
        return partial
    return partial + Style(color=widget.get_component_rich_style(name).color)
