"""The explorer's overhead on a tree search: the same search (the bundled demo model, seed 002's
parameters below) run as the engine's job alone, and in a headless explorer that shows it live
(the tree pane growing, the status bar counting), in one process, interleaved; medians printed
with their ratio. The explorer's side is timed from Enter in the search form to the search's end
as the app sees it; the job's from its first event to its last.

    python benchmarks/explorer_tree.py [--nodes 3000] [--repeats 3]

Target: the explorer within 2.5× of the job alone (the search shares the interpreter with the
UI thread; on 2 cores the UI's share is about half). On this project's 2-core AMD EPYC (native
bf16; the demo model runs in float32), quiet, 3,000 nodes: 10.2× before the status bar was drawn
once a frame, the tree pane twice a second and a node's label computed once (2.15 s alone,
21.8 s shown), 2.03× after (2.16 s, 4.39 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from tokentui.core.params import GenerationSettings, TreeParams  # noqa: E402

PROMPT = "def foo(x):"
FIELDS = {"min_branch_threshold": "0.03", "max_branch_threshold": "0.1", "max_depth": "60"}


def params(nodes: int) -> TreeParams:
    return TreeParams(min_branch_threshold=0.03, max_branch_threshold=0.1, max_depth=60, max_nodes=nodes)


def job_alone(backend, nodes: int) -> float:
    from tokentui.engine import jobs

    t0 = time.perf_counter()
    for _ in jobs.TreeSearch(backend, params(nodes), PROMPT, GenerationSettings()):
        pass
    return time.perf_counter() - t0


async def in_explorer(nodes: int) -> float:
    from textual.widgets import Input

    from tokentui.tui.start import explorer
    from tokentui.tui.state import AppState

    app = explorer(model="demo", prompt=PROMPT)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.state is not AppState.IDLE:
            await pilot.pause(0.1)
        await pilot.press("e")
        await pilot.pause(0.2)
        for key, value in {**FIELDS, "max_nodes": str(nodes)}.items():
            app.screen.query_one(f"#set-{key}", Input).value = value
        app.screen.query_one(Input).focus()
        t0 = time.perf_counter()
        await pilot.press("enter")
        while not app.session.tree_search and app.state is AppState.IDLE:
            await pilot.pause(0.01)
        while app.session.tree_search or app.state is not AppState.IDLE:
            await pilot.pause(0.02)
        seconds = time.perf_counter() - t0
        assert app.run_obj is not None and len(app.run_obj.branches) == nodes, "the search ended early"
        return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("TOKENTUI_CACHE_DIR", tempfile.mkdtemp(prefix="tokentui-bench-"))
    from tokentui.engine.backend import ModelSpec
    from tokentui.engine.hf.backend import HFBackend

    backend = HFBackend.load(ModelSpec("demo"))
    alone, shown = [], []
    for _ in range(args.repeats):  # interleaved
        alone.append(job_alone(backend, args.nodes))
        shown.append(asyncio.run(in_explorer(args.nodes)))
    a, s = statistics.median(alone), statistics.median(shown)
    print(f"tree search of {args.nodes} nodes on the demo model, medians of {args.repeats}:")
    print(f"  the job alone     {a:7.2f} s")
    print(f"  in the explorer   {s:7.2f} s   ratio {s / a:.2f}× (target ≤ 2.5×)")


if __name__ == "__main__":
    main()
