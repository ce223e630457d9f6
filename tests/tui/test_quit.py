"""Quitting while the model works: the explorer cancels the job, waits for the model's thread to
finish it and save the run, then exits with code 0. A trial saw `q` during a generation abort the
process (exit 134, "terminate called without an active exception") and lose the run's last steps:
Python's shutdown ran while the model's thread was still inside torch.

The process is `tokentui explore` through the real launcher on a pseudo-terminal, with one timing
fault injected: each flush of the logit lens first spends 3 s in torch (as the lens of a large
vocabulary does on a CPU), so the job is still working when `q` arrives and takes seconds to stop."""

from __future__ import annotations

import signal
import subprocess
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
        assert b" stopping " in term.text  # (the state cell: a trial read "idle" while the job still stopped)
        if presses == 2:
            term.press(b"q")
        rc = term.wait_exit(timeout=60)
    assert rc == 0, term.text[-800:]
    [summary] = list_runs(cache)
    run = load_run(summary.path)
    run.validate()
    if presses == 1:
        assert run.branches[0].status == "cancelled" and run.length(0) > 1
        # the last line says where the run is (a newcomer found it only through `tokentui runs`)
        assert f"tokentui replay {run.id} opens it".encode() in term.text, term.text[-400:]


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


BUSY_FRAMES = textwrap.dedent("""
    import sys
    from tokentui.tui.app import TokentuiApp
    mount = TokentuiApp.on_mount
    def busy(self):  # a frame 50 times a second, as a generation with the layer map open draws
        self.set_interval(0.02, lambda: self.screen.refresh())
        return mount(self)
    TokentuiApp.on_mount = busy
    sys.argv = ["tokentui", *sys.argv[1:]]
    from tokentui.launch import main
    main()
""")


def test_a_terminal_that_refuses_writes_before_the_hang_up_arrives_still_lets_the_explorer_leave(tmp_path):
    """When an SSH session drops, writes to the terminal fail (EIO) at once, and the hang-up is
    handled only when the event loop next runs. A frame written in between ended Textual's output
    thread; the loop then blocked for good on its full queue of writes, never handled the hang-up,
    and stayed on the server at 70 % of a core, holding the model (a trial: 8 times in 12 with the
    layer map open). The writes the terminal refuses are dropped: the hang-up ends it (code 129)."""
    import os

    from tests.tui.test_explorer_defects import SAMPLES

    cmd = [sys.executable, "-c", BUSY_FRAMES, "replay", str(SAMPLES / "generate.tokentui")]
    with Terminal(cmd, size=(100, 30), env={"TOKENTUI_CACHE_DIR": str(tmp_path / "cache")}) as term:
        term.wait_for(b"replay", timeout=60)
        os.close(term.master)  # (the terminal is gone: its writes fail with EIO)
        term.master = os.open(os.devnull, os.O_RDONLY)  # (what close() closes)
        time.sleep(3)  # (150 frames: Textual's queue holds 30)
        term.proc.send_signal(signal.SIGHUP)
        try:
            rc = term.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = None
    assert rc == 129


def test_the_explorers_output_stops_for_a_terminal_gone_and_only_then():
    """EIO (a hung-up terminal) ends the output for good; a write that fails otherwise (a full
    disk under a redirected standard error, a terminal left non-blocking) loses itself only."""
    import errno
    import os

    from tokentui.tui.driver import TerminalOutput

    class Flaky:
        def __init__(self) -> None:
            self.fail: int | None = None
            self.written: list[str] = []

        def write(self, text: str) -> int:
            if self.fail is not None:
                raise OSError(self.fail, os.strerror(self.fail))
            self.written.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    file = Flaky()
    out = TerminalOutput(file)  # type: ignore[arg-type]
    file.fail = errno.EAGAIN
    assert out.write("a") == 1 and not out.gone
    file.fail = None
    out.write("b")
    file.fail = errno.EIO
    out.write("c")
    file.fail = None
    out.write("d")
    assert out.gone and file.written == ["b"]
