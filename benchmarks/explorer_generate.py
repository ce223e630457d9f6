"""The explorer's overhead on a generation: the same greedy generation run as the engine's job
alone, and in a headless explorer that shows it live (the stream growing, the side panes
following the newest token, the status bar counting), in one process, interleaved; medians of the
tokens per second printed with their ratio. The explorer's side is timed from ctrl+r to the
generation's end as the app sees it; the job's from its start to its last event. Both make the
same tokens (greedy; asserted).

    python benchmarks/explorer_generate.py [--model smollm2] [--chat] [--tokens 200] [--repeats 3]

On a small model the per-token forward is short, so the UI's share of the interpreter shows most;
on a GPU server's model the forward dominates and the ratio nears 1.
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

from tokentui.core.params import GenerationSettings, SamplingParams  # noqa: E402

PROMPT = "Write a long story about a lighthouse keeper and the sea."


CHAT = False  # (--chat: the prompt in the model's chat template; SmolLM2 answers it at length)


def settings(tokens: int) -> GenerationSettings:
    return GenerationSettings(sampling=SamplingParams(temperature=0.0, max_new_tokens=tokens), chat=CHAT)


def job_alone(backend, tokens: int) -> tuple[float, list[int]]:
    from tokentui.engine import jobs

    job = jobs.Generate(backend, PROMPT, settings(tokens))
    t0 = time.perf_counter()
    for _ in job:
        pass
    seconds = time.perf_counter() - t0
    assert job.run is not None
    return seconds, job.run.branch(0).steps.col("token_id").tolist()


async def in_explorer(model: str, tokens: int, size: tuple[int, int]) -> tuple[float, list[int]]:
    from tokentui.tui.start import explorer
    from tokentui.tui.state import AppState

    app = explorer(model=model, prompt=PROMPT, settings=settings(tokens))
    async with app.run_test(size=size) as pilot:
        while app.state is not AppState.IDLE:
            await pilot.pause(0.1)
        before = app.run_obj
        t0 = time.perf_counter()
        await pilot.press("ctrl+r")
        while app.run_obj is before or app.state is not AppState.IDLE:
            await pilot.pause(0.02)
        seconds = time.perf_counter() - t0
        assert app.run_obj is not None
        return seconds, app.run_obj.branch(0).steps.col("token_id").tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", default="120x40", help="the headless terminal, columns x rows")
    ap.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    args = ap.parse_args()
    global CHAT
    CHAT = args.chat
    size = tuple(int(x) for x in args.size.split("x"))
    os.environ.setdefault("TOKENTUI_CACHE_DIR", tempfile.mkdtemp(prefix="tokentui-bench-"))
    from tokentui.engine.backend import ModelSpec
    from tokentui.engine.hf.backend import HFBackend

    backend = HFBackend.load(ModelSpec(args.model))
    job_alone(backend, 8)  # warm-up of both: the first forward, the first app's stylesheet
    asyncio.run(in_explorer(args.model, 8, size))  # type: ignore[arg-type]
    alone, shown = [], []
    for _ in range(args.repeats):  # interleaved
        a, ids_a = job_alone(backend, args.tokens)
        s, ids_s = asyncio.run(in_explorer(args.model, args.tokens, size))  # type: ignore[arg-type]
        assert ids_a == ids_s, "the explorer made other tokens than the job alone"
        alone.append(len(ids_a) / a)
        shown.append(len(ids_s) / s)
    a, s = statistics.median(alone), statistics.median(shown)
    print(f"greedy generation of {len(ids_a)} tokens on {args.model}, {args.size}, medians of {args.repeats}:")
    print(f"  the job alone     {a:7.1f} tok/s")
    print(f"  in the explorer   {s:7.1f} tok/s   ratio {s / a:.2f}×")


if __name__ == "__main__":
    main()
