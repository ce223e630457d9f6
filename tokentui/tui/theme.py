"""Themes from the top-level `themes/` folder (shipped as `tokentui.themes`): validated TOML files
turned into Textual themes plus a metric colour scale. A broken theme file is reported once and
skipped; the built-in dark theme always exists."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import tomllib
from rich.style import Style
from textual.theme import Theme

import tokentui.themes
from tokentui.core.files import open_to_read

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_THEME_KEYS = (
    "primary",
    "secondary",
    "accent",
    "background",
    "surface",
    "panel",
    "foreground",
    "error",
    "warning",
    "success",
)


@dataclass(frozen=True)
class MetricScale:
    """Background colours from sure (0) to uncertain (last), with readable text colours."""

    backgrounds: tuple[str, ...]
    texts: tuple[str, ...]

    def style(self, level: float, no_color: bool = False) -> Style:
        """Style of a token whose normalised uncertainty is `level` in [0, 1] (NaN: unknown)."""
        n = len(self.backgrounds)
        if level != level:  # NaN: nothing known about this token (e.g. the first one)
            return Style(dim=True)
        i = min(n - 1, int(level * n))
        if no_color:  # the metric still shows: plain → underline → bold → bold underline → reverse
            return [
                Style(),
                Style(),
                Style(underline=True),
                Style(bold=True),
                Style(bold=True, underline=True),
                Style(reverse=True),  # (not bold: the cursor is reverse bold italic underlined: TokenStream)
            ][min(5, i * 6 // n)]
        return Style(color=self.texts[i], bgcolor=self.backgrounds[i])


@dataclass(frozen=True)
class DivergingScale:
    """Background colours for signed scores (attribution by input × gradient or integrated
    gradients): strongly negative (first) through neutral (the middle one) to strongly positive
    (last), blue against orange so the sign stays distinct for colour-blind readers, lightness
    growing with the magnitude away from the theme's background."""

    backgrounds: tuple[str, ...]  # an odd number of colours
    texts: tuple[str, ...]

    def style(self, value: float) -> Style:
        """Style of a score `value` in [-1, 1] (its share of the largest magnitude; NaN: none)."""
        if value != value:
            return Style(dim=True)
        mid = len(self.backgrounds) // 2
        step = min(mid, int(abs(value) * (mid + 1)))
        i = mid - step if value < 0 else mid + step
        return Style(color=self.texts[i], bgcolor=self.backgrounds[i])


DEFAULT_THEME = "tokentui-dark"  # themes/dark.toml; the explorer starts in it
DEFAULT_SCALE = MetricScale(
    ("#00224e", "#35456c", "#666970", "#948e77", "#c8b866", "#fee838"),
    ("#e4e4e4", "#e4e4e4", "#ffffff", "#000000", "#000000", "#000000"),
)

# Signed scores on a dark background (weak: near the background, strong: bright) and on a light one
# (weak: near white, strong: dark). A theme file may give its own (`diverging_scale`/`_text`).
DARK_DIVERGING = DivergingScale(
    ("#7ab8f5", "#4a8fd6", "#2c66a8", "#1d3f66", "#303030", "#5c3a14", "#9a5a12", "#d98a1c", "#ffc266"),
    ("#000000", "#000000", "#ffffff", "#e4e4e4", "#e4e4e4", "#e4e4e4", "#ffffff", "#000000", "#000000"),
)
LIGHT_DIVERGING = DivergingScale(
    ("#08306b", "#2171b5", "#6baed6", "#c6dbef", "#f0f0f0", "#fdd0a2", "#fd8d3c", "#d94801", "#7f2704"),
    ("#ffffff", "#ffffff", "#000000", "#1c1c1c", "#1c1c1c", "#1c1c1c", "#000000", "#ffffff", "#ffffff"),
)


@dataclass(frozen=True)
class TokentuiTheme:
    theme: Theme
    scale: MetricScale
    diverging: DivergingScale = DARK_DIVERGING  # signed scores (attribution)


def parse_theme(text: str, origin: str) -> TokentuiTheme:
    """One theme file → theme; raises ValueError with a one-line reason."""
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{origin}: not valid TOML ({e})") from None
    except RecursionError:  # (tomllib recurses per nesting level: `q = [[[[…` 3,000 deep crashed the start)
        raise ValueError(f"{origin}: not a theme (nested too deeply)") from None
    name = d.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9-]{1,40}", name):
        raise ValueError(f"{origin}: 'name' must be 1-40 lowercase letters, digits or dashes")
    colors: dict[str, str] = {}
    for key in _THEME_KEYS:
        v = d.get(key)
        if v is not None:
            if not isinstance(v, str) or not _HEX.match(v):
                raise ValueError(f"{origin}: {key} must be a #rrggbb colour")
            colors[key] = v
    if "primary" not in colors:
        raise ValueError(f"{origin}: a theme needs a primary colour")
    scale, texts = d.get("metric_scale"), d.get("metric_text")
    if (
        not isinstance(scale, list)
        or not isinstance(texts, list)
        or len(scale) != len(texts)
        or not 3 <= len(scale) <= 12
        or not all(isinstance(c, str) and _HEX.match(c) for c in scale + texts)
    ):
        raise ValueError(f"{origin}: metric_scale and metric_text must be equal lists of 3-12 #rrggbb colours")
    diverging = LIGHT_DIVERGING if d.get("dark", True) is False else DARK_DIVERGING
    signed, signed_texts = d.get("diverging_scale"), d.get("diverging_text")
    if signed is not None or signed_texts is not None:
        if (
            not isinstance(signed, list)
            or not isinstance(signed_texts, list)
            or len(signed) != len(signed_texts)
            or not 3 <= len(signed) <= 13
            or len(signed) % 2 == 0
            or not all(isinstance(c, str) and _HEX.match(c) for c in signed + signed_texts)
        ):
            raise ValueError(f"{origin}: diverging_scale and diverging_text must be equal lists of 3-13 (odd) colours")
        diverging = DivergingScale(tuple(signed), tuple(signed_texts))
    theme = Theme(
        name=name,
        primary=colors["primary"],
        secondary=colors.get("secondary"),
        accent=colors.get("accent"),
        background=colors.get("background"),
        surface=colors.get("surface"),
        panel=colors.get("panel"),
        foreground=colors.get("foreground"),
        error=colors.get("error"),
        warning=colors.get("warning"),
        success=colors.get("success"),
        dark=bool(d.get("dark", True)),
    )
    return TokentuiTheme(theme, MetricScale(tuple(scale), tuple(texts)), diverging)


def load_themes() -> tuple[dict[str, TokentuiTheme], list[str]]:
    """All shipped themes (plus any in $TOKENTUI_THEMES_DIR), and the problems found."""
    found: dict[str, TokentuiTheme] = {}
    problems: list[str] = []
    # the package folder itself (importlib.resources costs ~25 ms of imports at start-up; themes
    # ship as plain files inside the wheel)
    shipped = Path(tokentui.themes.__file__).parent
    sources = [(f.name, f.read_text(encoding="utf-8")) for f in sorted(shipped.glob("*.toml"))]
    extra = os.environ.get("TOKENTUI_THEMES_DIR")
    if extra and os.path.isdir(extra):
        for fn in sorted(os.listdir(extra)):
            if fn.endswith(".toml"):
                try:  # (a regular file only: a FIFO named *.toml blocked the start for good)
                    f, _ = open_to_read(Path(extra, fn))
                    with f:
                        sources.append((fn, f.read(65536).decode("utf-8")))
                except (OSError, UnicodeDecodeError) as e:
                    problems.append(f"{fn}: {e}")
    for origin, text in sorted(sources):
        try:
            t = parse_theme(text, origin)
            found[t.theme.name] = t
        except ValueError as e:
            problems.append(str(e))
    return found, problems
