"""Drawing `core.stats.PlotSpec`s with plotext: as text (the CLI and the Stats screen) and as
plotext's own HTML page (`tokentui stats --plot-dir`).

plotext (6.x: `plotext.figure`, `signal`/`bar`, `draw`, `build`) keeps one global figure, so a plot
is drawn start to finish in one call, on the thread that asks (the CLI's, or the explorer's UI
thread). This module imports no Textual, so `tokentui stats` stays light. plotext's C++ core aborts
the whole process on a NaN, so only finite points are ever handed to it: an empty bin (NaN in the
spec) breaks the line into segments (`_segments`), each drawn alone; a lone point is drawn as a
dot marker (a line of one point is a quarter of a cell: a short run's plot looked empty)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokentui.core.stats import PlotSpec

MIN_WIDTH, MIN_HEIGHT = 20, 6  # below this a plot says so instead


def _finite(spec: PlotSpec) -> tuple[list[float], list[float], list[str]]:
    keep = [i for i, (x, y) in enumerate(zip(spec.x, spec.y)) if math.isfinite(x) and math.isfinite(y)]
    labels = [spec.labels[i] for i in keep] if spec.labels else []
    return [float(spec.x[i]) for i in keep], [float(spec.y[i]) for i in keep], labels


def _segments(spec: PlotSpec) -> list[tuple[list[float], list[float]]]:
    """The runs of finite points between empty bins (NaN), in order."""
    out: list[tuple[list[float], list[float]]] = []
    gap = True
    for x, y in zip(spec.x, spec.y):
        if not (math.isfinite(x) and math.isfinite(y)):
            gap = True
            continue
        if gap:
            out.append(([], []))
            gap = False
        out[-1][0].append(float(x))
        out[-1][1].append(float(y))
    return out


def _figure(spec: PlotSpec, width: int, height: int) -> Any:
    """plotext's figure with `spec` drawn, ready to build."""
    import plotext

    fig = plotext.figure
    fig.clear()
    fig.plot_size(width, height)
    x, y, labels = _finite(spec)
    if spec.kind == "bar" and labels:
        fig.draw(fig.bar(labels, y))
    elif x:
        for xs, ys in _segments(spec):  # (one line each: none crosses an empty bin)
            if len(xs) == 1:
                fig.draw(fig.text(xs[0], ys[0], "•"))
                continue
            line = fig.signal(xs, ys)
            line.lines()
            fig.draw(line)
        fig.ruler("x").lim(0.0, 1.0)
        fig.ruler("x").ticks([0.0, 0.25, 0.5, 0.75, 1.0])
        if spec.y_range is not None:
            fig.ruler("y").lim(*spec.y_range)
    fig.title(spec.title)
    fig.label(spec.x_label, axis="x")
    return fig


def plot_text(spec: PlotSpec, width: int, height: int) -> str:
    """The plot as plain text (no colour codes), `width` × `height` cells."""
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return f"{spec.title}: too small to draw"
    if not _finite(spec)[0]:
        return f"{spec.title}: no tokens"
    text: str = _figure(spec, width, height).build().string(colorless=True)
    return "\n".join(line.rstrip() for line in text.splitlines())


def _page(title: str, body: str) -> str:
    from html import escape

    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n"
        "<style>pre {font-family: monospace; line-height: 1.05}</style>\n"
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def plot_html(spec: PlotSpec, width: int, height: int) -> str:
    """The plot as an HTML page holding plotext's own HTML output (coloured spans in a <pre>)."""
    from html import escape

    if not _finite(spec)[0]:
        return _page(spec.title, f"<pre>{escape(spec.title)}: no tokens</pre>")
    body: str = _figure(spec, width, height).build().html()
    return _page(spec.title, body)
