"""The explorer's terminal driver: Textual's own, with output that survives the terminal going.

Textual writes the screen from a thread of its own, through a queue of 30 writes, to standard
error. When an SSH session drops, the terminal refuses writes (EIO) at once, while the hang-up
signal is handled only when the explorer's event loop next runs. A write in between raised in
the output thread, which ended; the loop then blocked for good putting the next frame into the
full queue, the hang-up was never handled, and the process stayed on the server at 70 % of a
core, holding the model, until killed with SIGKILL (seen with the layer map open, whose frames
are the largest). Here a write the terminal refuses is dropped, and every later one: the loop
goes on, handles the hang-up, saves the run and leaves (`TokentuiApp._leave`).
"""

from __future__ import annotations

import errno
from typing import IO, Any

from textual.drivers.linux_driver import LinuxDriver

# what a write to a terminal that is gone raises (a hung-up tty, a closed pseudo-terminal)
GONE = (errno.EIO, errno.ENXIO, errno.EPIPE, errno.EBADF)


class TerminalOutput:
    """A text file (standard error) whose writes and flushes stop once the terminal is gone
    (GONE): nothing written to it matters any more. Another error (a full disk under a redirected
    standard error, a terminal left non-blocking) loses that write only: the next frame may pass."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file
        self.gone = False

    def _failed(self, e: OSError) -> None:
        self.gone = self.gone or e.errno in GONE

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._file.write(text)
            except OSError as e:
                self._failed(e)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._file.flush()
            except OSError as e:
                self._failed(e)

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding …: the file's own
        return getattr(self._file, name)


class Driver(LinuxDriver):
    """LinuxDriver writing through TerminalOutput (see the module's docstring), reading through
    PasteSafeParser (`tui/paste_input.py`)."""

    def run_input_thread(self) -> None:
        from textual.drivers import linux_driver

        from tokentui.tui.paste_input import PasteSafeParser

        linux_driver.XTermParser = PasteSafeParser  # type: ignore[misc]  # (the input thread's parser is made from this name)
        super().run_input_thread()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._file is not None:  # (sys.__stderr__: None without a standard error)
            self._file = TerminalOutput(self._file)  # type: ignore[assignment]  # (what WriterThread takes)
