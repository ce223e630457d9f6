"""Run a command on a pseudo-terminal, as a user's shell would: the app gets Textual's real driver
(not the headless one `run_test` uses). Used by the end-to-end tests of `tokentui replay` and by
benchmarks/tui_latency.py to time its first frame."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

ESCAPES = re.compile(rb"\x1b\[[0-9;?<>=$]*[ -/]*[@-~]|\x1b[^\[]")


def tokentui_command() -> list[str]:
    """The installed `tokentui` command next to this Python, else `python -m tokentui`."""
    script = Path(sys.executable).with_name("tokentui")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tokentui"]


class Terminal:
    """`cmd` running on a fresh pseudo-terminal of `size` (columns, rows)."""

    def __init__(self, cmd: list[str], size=(120, 40), env: dict[str, str] | None = None) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "TERM": "xterm-256color", **(env or {})},
            start_new_session=True,
        )
        os.close(slave)
        self.output = b""

    @property
    def text(self) -> bytes:
        """Everything written so far with escape sequences removed (styles split a frame's words)."""
        return ESCAPES.sub(b"", self.output)

    def _read(self, timeout: float) -> bool:
        if select.select([self.master], [], [], timeout)[0]:
            try:
                chunk = os.read(self.master, 1 << 16)
            except OSError:  # the program ended
                return False
            self.output += chunk
            return bool(chunk)
        return True

    def wait_for(self, *marks: bytes, timeout: float = 30.0) -> dict[bytes, float]:
        """Seconds from the start to the first appearance of each mark; AssertionError if one never shows."""
        found: dict[bytes, float] = {}
        end = time.perf_counter() + timeout
        while len(found) < len(marks) and time.perf_counter() < end:
            alive = self._read(0.05)
            text = self.text
            for m in marks:
                if m not in found and m in text:
                    found[m] = time.perf_counter() - self.t0
            if not alive:
                break
        missing = [m for m in marks if m not in found]
        assert not missing, f"never shown: {missing}; output ended with {self.output[-600:]!r}"
        return found

    def press(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Drain the output until the program exits; its exit code."""
        end = time.perf_counter() + timeout
        while self.proc.poll() is None and time.perf_counter() < end:
            self._read(0.05)
        while self._read(0.05) and select.select([self.master], [], [], 0)[0]:
            pass
        return self.proc.wait(timeout=1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_until(stream, mark: bytes, timeout: float = 60.0) -> bytes:
    """Bytes from `stream` until `mark` appears (fails after `timeout`)."""
    got, end = b"", time.monotonic() + timeout
    while mark not in got:
        assert time.monotonic() < end, f"never saw {mark!r}: {got[-300:]!r}"
        if select.select([stream], [], [], 0.1)[0]:
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, f"stream ended before {mark!r}: {got[-300:]!r}"
            got += chunk
    return got


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    """The exit code and standard error of a child process, once it ends (fails after 60 s)."""
    out, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode()
