"""Explorer latency on a 100k-token run, in one script run:

- median and p95 CPU time per cursor step (→) and per page scroll (PgDn), key press to the
  frame being composed, in a headless app, next to a key bound to nothing (Pilot's own cost);
- time from process start to first frame of `tokentui replay RUN`, against a bare Textual app
  started the same way (both as fresh processes, median of several starts).

    python benchmarks/tui_latency.py [--tokens 100000] [--steps 300] [--starts 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_size import synthetic_run  # noqa: E402

from tokentui.store.runfile import load_run, save_run  # noqa: E402

FIRST_FRAME = """
import sys, time
t0 = time.perf_counter()
{setup}
def check():
    if {ready}:
        print(time.perf_counter() - t0)
        app.exit()
    else:
        app.call_after_refresh(check)
app.call_after_refresh(check)
app.run(headless=True)
"""
CONTENT = "app.stream.view is not None"  # the run's tokens are laid out (drawn on the next refresh)
BARE = "from textual.app import App\nfrom textual.widgets import Static\nclass Bare(App):\n    def compose(self):\n        yield Static('hello')\napp = Bare()"
REPLAY = "from tokentui.cli import load_ref\nfrom tokentui.tui.app import TokentuiApp\napp = TokentuiApp(run=load_ref({path!r}, None))"


def p95(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, int(0.95 * len(xs)))]


async def key_latency(path: Path, steps: int) -> dict[str, list[float]]:
    from tokentui.tui.app import TokentuiApp

    app = TokentuiApp(run=load_run(path))
    keys = (("f24", "no-op key (Pilot's own cost)"), ("right", "cursor step (→)"), ("pagedown", "page scroll (PgDn)"))
    out: dict[str, list[float]] = {label: [] for _, label in keys}
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("home")
        await pilot.pause()
        for key, label in keys:
            for _ in range(steps):
                # CPU time of this process: the key's handling and the frame it causes, without
                # the idle waits of the event loop between frames
                t0 = time.process_time()
                await pilot.press(key)
                await pilot.pause()
                out[label].append(time.process_time() - t0)
    return out


def process_start(setup: str, starts: int, ready: str = "True") -> tuple[float, float]:
    """(median seconds to the first frame where `ready` holds, measured inside; median process wall time)."""
    inside, wall = [], []
    for _ in range(starts):
        t0 = time.perf_counter()
        code = FIRST_FRAME.format(setup=setup, ready=ready)
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        wall.append(time.perf_counter() - t0)
        inside.append(float(res.stdout.strip().splitlines()[-1]))
    return statistics.median(inside), statistics.median(wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--starts", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = save_run(synthetic_run(args.tokens, 50_257, n_layers=12), Path(d) / "big.tokentui")
        lat = asyncio.run(key_latency(path, args.steps))
        print(f"{args.tokens}-token run, 120x40, headless, {args.steps} presses each, CPU ms per press:")
        base = statistics.median(lat["no-op key (Pilot's own cost)"])
        for label, xs in lat.items():
            net = (
                ""
                if label.startswith("no-op")
                else f"   net of Pilot {max(0.0, statistics.median(xs) - base) * 1000:6.2f} ms"
            )
            print(f"  {label:<30} median {statistics.median(xs) * 1000:6.2f}   p95 {p95(xs) * 1000:6.2f}{net}")
        bare_in, bare_wall = process_start(BARE, args.starts)
        rep_in, rep_wall = process_start(REPLAY.format(path=str(path)), args.starts)
        full_in, _ = process_start(REPLAY.format(path=str(path)), args.starts, CONTENT)
        print(f"process start → first frame (median of {args.starts}):")
        print(f"  bare Textual app     {bare_wall * 1000:7.0f} ms wall ({bare_in * 1000:5.0f} ms after imports began)")
        print(f"  tokentui replay      {rep_wall * 1000:7.0f} ms wall ({rep_in * 1000:5.0f} ms after imports began)")
        print(f"  ratio                {rep_wall / bare_wall:7.2f}x   (inside: {rep_in / bare_in:.2f}x)")
        print(f"  the run's {args.tokens} tokens laid out: {full_in * 1000:5.0f} ms after imports began")


if __name__ == "__main__":
    main()
