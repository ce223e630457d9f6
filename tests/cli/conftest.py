"""Running the CLI: in-process through Typer's runner, or as the installed command in a child
process (for pipes, standard input and the environment read at import)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from tests.terminal import tokentui_command
from tokentui.cli import app


@pytest.fixture
def cli():
    """`cli(*args, input=None)` → the Typer runner's result (stdout and stderr apart)."""
    runner = CliRunner()

    def invoke(*args, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def run_tokentui(cache_dir):
    """`run_tokentui(*args, env=…, **popen)` → the installed `tokentui` as a finished child process."""

    def run(*args, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
        full = {**os.environ, "TOKENTUI_CACHE_DIR": str(cache_dir), **(env or {})}
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 120)
        return subprocess.run([*tokentui_command(), *map(str, args)], env=full, text=True, **kw)

    return run


@pytest.fixture(scope="session")
def weightless_model(model_dirs, tmp_path_factory):
    """The tiny GPT-2's folder without its weights: loading it fails only when the weights are read,
    so a command that reports another error first has checked before loading them."""
    d = tmp_path_factory.mktemp("weightless")
    for f in model_dirs["gpt2"].iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, d / f.name)
    return d


@pytest.fixture
def unwritable_dir(tmp_path):
    """A folder that takes no new file: a read-only one, or (for root, whom permission bits do not
    stop) /sys, which refuses every new file; skipped where neither refuses."""
    import tempfile

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, pathlib.Path("/sys")):
        try:
            fd, name = tempfile.mkstemp(dir=candidate)
        except OSError:
            yield candidate
            break
        os.close(fd)
        os.unlink(name)
    else:
        pytest.skip("no folder here refuses a new file")
    folder.chmod(0o755)
