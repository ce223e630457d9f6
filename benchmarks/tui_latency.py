"""Explorer latency on a 100k-token run, in one script run:

- median and p95 CPU time per cursor step (→) and per page scroll (PgDn), key press to the
  frame being composed, in a headless app, next to a key bound to nothing (Pilot's own cost);
- time from process start to first frame of `tokentui replay RUN`, against a bare Textual app
  started the same way: both as fresh processes on a pseudo-terminal (the real terminal driver),
  timed to the moment their output first holds what their first frame shows (median of several
  starts); and for the replay also to the moment the run's tokens are on screen.

    python benchmarks/tui_latency.py [--tokens 100000] [--steps 300] [--starts 9]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from run_size import synthetic_run  # noqa: E402

from tests.terminal import Terminal, tokentui_command  # noqa: E402
from tokentui.store.runfile import load_run, save_run  # noqa: E402

# What each program draws in its first frame, and what only shows once the run is laid out.
BARE = "from textual.app import App\nfrom textual.widgets import Static\nclass Bare(App):\n    def compose(self):\n        yield Static('hello')\nBare().run()"
BARE_MARK = b"hello"
REPLAY_MARK = b" replay "  # the status bar's state
LAID_OUT_MARK = "━ tokens ━".encode()  # the focused stream's title once the run is laid out


def p95(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, int(0.95 * len(xs)))]


async def key_latency(path: Path, steps: int) -> dict[str, list[float]]:
    from tokentui.tui.start import explorer

    app = explorer(run=load_run(path))  # as `tokentui replay` builds it: themes loaded first
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


def first_frames(cmd: list[str], marks: list[bytes], pycache: Path) -> dict[bytes, float]:
    """Seconds from starting `cmd` on a 120x40 pseudo-terminal to each mark's first appearance.
    Bytecode is cached under `pycache` (as an installed package's is), even where the environment
    says not to write it."""
    env = {"PYTHONPYCACHEPREFIX": str(pycache), "PYTHONDONTWRITEBYTECODE": ""}
    with Terminal(cmd, size=(120, 40), env=env) as term:
        return term.wait_for(*marks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--starts", type=int, default=9)
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
        bare, first, laid_out = [], [], []
        replay = [*tokentui_command(), "replay", str(path)]
        pycache = Path(d) / "pycache"
        first_frames([sys.executable, "-c", BARE], [BARE_MARK], pycache)  # warm-up: bytecode compiled
        first_frames(replay, [REPLAY_MARK, LAID_OUT_MARK], pycache)
        for _ in range(args.starts):  # interleaved, so drift in the machine's load hits both alike
            bare.append(first_frames([sys.executable, "-c", BARE], [BARE_MARK], pycache)[BARE_MARK])
            t = first_frames(replay, [REPLAY_MARK, LAID_OUT_MARK], pycache)
            first.append(t[REPLAY_MARK])
            laid_out.append(t[LAID_OUT_MARK])
        b, f, lo = (statistics.median(x) * 1000 for x in (bare, first, laid_out))
        print(f"process start → first frame on a 120x40 pseudo-terminal (median of {args.starts}):")
        print(f"  bare Textual app (one Static)     {b:6.0f} ms")
        print(f"  tokentui replay RUN               {f:6.0f} ms   ratio {f / b:.2f}x")
        print(f"  … its {args.tokens} tokens on screen  {lo:6.0f} ms   ratio {lo / b:.2f}x")


if __name__ == "__main__":
    main()
