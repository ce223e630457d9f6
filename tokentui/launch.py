"""The `tokentui` command's entry point.

`tokentui replay RUN` is the command whose start a user feels on every use, so that plain form
goes straight to the explorer; every other command line goes to the Typer CLI (`tokentui.cli`),
whose import alone costs ~30 ms (benchmarks/tui_latency.py measures the replay start).
"""

from __future__ import annotations

import gc
import sys


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "replay" and not args[1].startswith("-"):
        # Start-up allocates tens of thousands of long-lived objects (modules, styles, widgets, the
        # run's layout); the cyclic collector would sweep them again and again for nothing. The
        # explorer turns it back on once the run is on screen (TokentuiApp._open_first_branch).
        gc.disable()
        from tokentui.store.header import RunFileError
        from tokentui.tui.start import ExplorerCrashed, replay

        try:
            replay(args[1])
        except RunFileError as e:
            print(f"tokentui: error: {e}", file=sys.stderr)
            sys.exit(2)
        except ExplorerCrashed as e:
            print(f"tokentui: error: {e}", file=sys.stderr)
            sys.exit(1)
        return
    from tokentui.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
