"""Opening a saved run in the explorer, for `tokentui replay` (the launcher's fast path and the
Typer command alike): a bad reference or a file that is not a run is a one-line error before the
screen opens; the app then draws its first frame from the header and reads the arrays after."""

from __future__ import annotations

from pathlib import Path

from tokentui.store.cache import cache_dir as resolve_dir
from tokentui.store.cache import resolve
from tokentui.store.header import RunFileError
from tokentui.tui.app import TokentuiApp


def replay(ref: str, model: str | None = None, cache_dir: Path | None = None) -> None:
    """Run the explorer on run `ref` (id, id prefix or path). Raises RunFileError when it cannot
    be opened, also when the arrays turn out damaged after the screen was up (the app closes)."""
    path = resolve(ref, resolve_dir(cache_dir))
    app = TokentuiApp(model=model, run_path=path, cache_dir=cache_dir)  # reads the header, once
    if app.opening is not None and app.opening.error:
        raise RunFileError(path, app.opening.error)
    app.run()
    if app.open_error is not None:
        raise app.open_error
