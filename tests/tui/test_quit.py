"""Quitting while the model works: the explorer cancels the job, waits for the model's thread to
finish it and save the run, then exits with code 0. A trial saw `q` during a generation abort the
process (exit 134, "terminate called without an active exception") and lose the run's last steps:
Python's shutdown ran while the model's thread was still inside torch.

The process is `tokentui explore` through the real launcher on a pseudo-terminal, with one timing
fault injected: each flush of the logit lens first spends 3 s in torch (as the lens of a large
vocabulary does on a CPU), so the job is still working when `q` arrives and takes seconds to stop."""

from __future__ import annotations

import signal
import sys
import textwrap
import time

import pytest

from tests.terminal import Terminal
from tokentui.store.cache import list_runs
from tokentui.store.runfile import load_run

SLOW_LENS = textwrap.dedent("""
    import sys, time, torch
    from tokentui.engine.hf.backend import HFBackend
    flush = HFBackend._flush_lens
    def slow(self, *args):
        end = time.perf_counter() + 3.0
        x = torch.ones(64, 64)
        while time.perf_counter() < end:
            x = (x @ x).clamp_(-1, 1)
        return flush(self, *args)
    HFBackend._flush_lens = slow
    sys.argv = ["tokentui", "explore", *sys.argv[1:]]
    from tokentui.launch import main
    main()
""")


def explore(model_dir, cache) -> Terminal:
    cmd = [sys.executable, "-c", SLOW_LENS, "-m", str(model_dir), "-p", "import os", "-n", "5000", "--lens-chunk", "4"]
    return Terminal(cmd, size=(100, 30), env={"TOKENTUI_CACHE_DIR": str(cache)})


def started(term: Terminal, cache) -> None:
    """Wait for the generation to be under way, and save its run (ctrl+s, until there is one) so
    that it has a file before the first autosave."""
    term.wait_for(b"generating", timeout=60)
    end = time.monotonic() + 60
    while not list(cache.glob("*.tokentui")):
        assert time.monotonic() < end, term.text[-600:]
        term.press(b"\x13")
        term.wait_for(b"", timeout=0.3)


@pytest.mark.parametrize("presses", [1, 2])
def test_quit_during_a_generation_saves_the_run_and_exits_0(model_dirs, tmp_path, presses):
    """Once: the explorer waits for the job to stop and saves it (status cancelled). Twice: it
    leaves at once, the run file as last saved (and still exit 0, not an abort)."""
    cache = tmp_path / "cache"
    with explore(model_dirs["llama"], cache) as term:
        started(term, cache)
        term.press(b"q")
        term.wait_for(b"quitting once the job has stopped")
        if presses == 2:
            term.press(b"q")
        rc = term.wait_exit(timeout=60)
    assert rc == 0, term.text[-800:]
    [summary] = list_runs(cache)
    run = load_run(summary.path)
    run.validate()
    if presses == 1:
        assert run.branches[0].status == "cancelled" and run.length(0) > 1


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_a_hang_up_during_a_generation_saves_the_run_as_quit_does(model_dirs, tmp_path, sig):
    """The SSH session drops (SIGHUP) or the process is asked to end (SIGTERM): the explorer quits
    as `q` does, cancelling the job and saving the run (a trial's died at once with exit 129,
    keeping only the last autosave: status still "running" then)."""
    cache = tmp_path / "cache"
    with explore(model_dirs["llama"], cache) as term:
        started(term, cache)
        term.proc.send_signal(sig)
        rc = term.wait_exit(timeout=60)
    # (after a hang-up it leaves without Textual's shutdown, which writes to the lost terminal and
    # hung there: code 129, as a hang-up's)
    assert rc == (129 if sig == signal.SIGHUP else 0), term.text[-800:]
    [summary] = list_runs(cache)
    run = load_run(summary.path)
    run.validate()
    assert run.branches[0].status == "cancelled" and run.length(0) > 1
