"""Ctrl-C in headless commands: a real child process gets SIGINT at several moments. While the
model loads it ends with exit code 130 and one line (nothing to save); while it generates, what was
made is saved with status "cancelled", and the exit code is still 130. Never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time

import pytest

from tests.terminal import finish, read_until, tokentui_command
from tokentui.store.cache import list_runs
from tokentui.store.runfile import load_run


def _start(model_dir, cache_dir, *extra) -> subprocess.Popen:
    cmd = [*tokentui_command(), "generate", "-m", str(model_dir), "-p", "def f(x):", "-n", "100000",
           "--lens-chunk", "0", "--cache-dir", str(cache_dir), *extra]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _read_until(proc: subprocess.Popen, mark: bytes) -> bytes:
    """`read_until` on the child's standard output; a failure says what the child wrote on
    standard error and how it ended (a child that ended early under a loaded machine said nothing)."""
    try:
        return read_until(proc.stdout, mark)
    except AssertionError as e:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"{e}; exit code {proc.returncode}; stderr: {err.decode()[-1500:]}") from None


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_ctrl_c_while_the_model_loads_exits_130_in_one_line(model_dirs, cache_dir, delay):
    proc = _start(model_dirs["gpt2"], cache_dir)
    read_until(proc.stderr, b"loading")  # the first progress line: the model is being loaded
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    rc, err = finish(proc)
    assert rc == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1].startswith("tokentui: ")
    for summary in list_runs(cache_dir):  # a run saved only when it is whole or was cancelled
        assert load_run(summary.path).branches[0].status == "cancelled"


@pytest.mark.parametrize("tokens", [1, 40])
@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_while_generating_saves_the_run_as_cancelled(model_dirs, cache_dir, tokens, as_json):
    proc = _start(model_dirs["gpt2"], cache_dir, *(["--json"] if as_json else []))
    if as_json:  # one line per position: the prompt's 5, then generated ones
        got = b""
        while got.count(b"\n") < 5 + tokens:
            got += _read_until(proc, b"\n")
    else:  # the prompt, then the generated text as it comes
        got = _read_until(proc, b"def f(x):")
        while len(got) < len(b"def f(x):") + tokens:
            got += os.read(proc.stdout.fileno(), 4096)
    proc.send_signal(signal.SIGINT)
    rc, err = finish(proc)
    assert rc == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    [saved] = list_runs(cache_dir)
    run = load_run(saved.path)
    root = run.branches[0]
    assert root.status == "cancelled" and 0 < len(root.steps) < 100000
    assert "(cancelled: keeping the partial run)" in err


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_a_hang_up_or_sigterm_while_generating_saves_the_run_as_ctrl_c_does(model_dirs, cache_dir, sig):
    """An SSH session that drops sends SIGHUP: the generation stops and is saved as cancelled, as
    for Ctrl-C (a trial's `generate` died at once and saved nothing)."""
    proc = _start(model_dirs["gpt2"], cache_dir)
    got = _read_until(proc, b"def f(x):")
    while len(got) < len(b"def f(x):") + 40:
        got += os.read(proc.stdout.fileno(), 4096)
    proc.send_signal(sig)
    rc, err = finish(proc)
    assert rc == 128 + sig and "Traceback" not in err, err  # (143 for SIGTERM: what a job scheduler reads)
    [saved] = list_runs(cache_dir)
    root = load_run(saved.path).branches[0]
    assert root.status == "cancelled" and 0 < len(root.steps) < 100000


class _SwallowsCtrlC:
    """Ctrl-C arriving while Python runs a `__del__` (as it can in an import lock's weakref
    callback while torch imports): the KeyboardInterrupt raised there is ignored by Python."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)
        _call()  # (the handler runs here, inside __del__)


def _call() -> None:
    pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_that_python_swallowed_during_the_load_still_interrupts():
    """A real flake of the test above: the Ctrl-C was lost in an import lock's callback, and the
    command went on. `ctrl_c_not_lost` (around every headless load) raises it again at the end."""
    from tokentui.cli.output import ctrl_c_not_lost

    # Python's own handler, whatever started the tests (a shell's background job ignores SIGINT)
    launcher = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        went_on = []
        _SwallowsCtrlC()
        went_on.append("without")  # Python's own handling: the interrupt is gone
        with pytest.raises(KeyboardInterrupt):
            with ctrl_c_not_lost():
                _SwallowsCtrlC()
                went_on.append("with")  # the block goes on too; its end raises
        assert went_on == ["without", "with"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    finally:
        signal.signal(signal.SIGINT, launcher)


def test_a_second_ctrl_c_skips_the_lens_catch_up_and_saves_at_once(smollm2_models_dir, cache_dir):
    """The first Ctrl-C stops after the token and the lens then catches up on the tokens still
    without it (seconds on SmolLM2's 49k vocabulary, minutes on a large model: a trial's second
    Ctrl-C was ignored meanwhile). A second stops at once: the run is saved as cancelled with every
    token, the last ones without their lens values (which a finished catch-up would have filled)."""
    import numpy as np

    from tests.terminal import Terminal

    cmd = [*tokentui_command(), "generate", "-m", "smollm2", "--chat", "-p", "Write a long story about a dragon.",
           "-n", "2000",
           "--lens-chunk", "1000", "--cache-dir", str(cache_dir)]  # fmt: skip
    env = {"HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "TOKENTUI_MODELS_DIR": str(smollm2_models_dir)}
    with Terminal(cmd, env=env) as term:
        term.wait_for(b"dragon.", timeout=240)  # the prompt is out: tokens follow
        start = len(term.text)
        deadline = time.monotonic() + 120
        while len(term.text) - start < 200 and time.monotonic() < deadline:  # some 50 tokens
            term.wait_for(b" ", timeout=5)
        term.proc.send_signal(signal.SIGINT)
        term.wait_for(b"Ctrl-C again", timeout=30)
        term.proc.send_signal(signal.SIGINT)
        rc = term.wait_exit(timeout=120)
        raw = term.output  # (with its escape sequences)
        text = term.text.decode(errors="replace")
    assert rc == 130 and "Traceback" not in text, text
    # the message goes below the streamed tokens, not over them (clearing the line erased them)
    assert b"\ntokentui: stopping after this token" in raw and b"\x1b[2Ktokentui: stopping" not in raw
    assert raw.count(b"tokentui: stopping after this token") == 1  # (said once: the second press stops)
    [saved] = list_runs(cache_dir)
    run = load_run(saved.path)
    root = run.branches[0]
    lens = run.column(0, "layer_entropy")[root.fork_position :, 0]  # layer 1
    assert root.status == "cancelled" and len(root.steps) >= 10
    assert np.isnan(lens[-1])  # the catch-up was skipped


def test_a_ctrl_c_python_swallowed_in_a_finalizer_is_delivered_again_without_a_traceback(tmp_path):
    """Torch runs finalizers at any moment; a Ctrl-C landing in one made Python print 'Exception
    ignored in …' with a traceback and drop the press (a second Ctrl-C in `attribute` did so under
    load). Every command installs a hook: nothing printed, the interrupt arrives again just after."""
    import sys

    code = textwrap.dedent("""
        import time
        from tokentui.cli.output import ctrl_c_in_finalizers_delivered
        ctrl_c_in_finalizers_delivered()
        class Finalizer:
            def __del__(self):
                raise KeyboardInterrupt
        try:
            Finalizer()  # (ignored by Python itself)
            time.sleep(5)
            print("lost")
        except KeyboardInterrupt:
            print("delivered")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "delivered" and "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize("command", ["generate", "score"])
def test_ctrl_c_while_the_table_prints_says_the_run_is_saved(cli, model_dirs, cache_dir, monkeypatch, command):
    """The run is saved before its table prints: a Ctrl-C there (a real SIGINT, raised as the table
    is made) said "nothing saved" (the command's handler around the whole of it). It now names the
    saved run, exit 130."""
    from tokentui.cli import render

    table = render.table

    def press_then_table(*args, **kw):
        signal.raise_signal(signal.SIGINT)
        return table(*args, **kw)

    monkeypatch.setattr(render, "table", press_then_table)
    args = ["-p", "def f(x):", "-n", 3] if command == "generate" else ["--text", "def f(x): return x"]
    res = cli(command, "-m", model_dirs["gpt2"], *args, "--lens-chunk", 0)
    [summary] = list_runs(cache_dir)
    assert res.exit_code == 130, res.output
    last = res.stderr.strip().splitlines()[-1]
    assert last == f"tokentui: interrupted while printing the results: run {summary.run_id} is saved to {summary.path}"
