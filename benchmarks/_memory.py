"""Peak-memory measures for the benchmarks (Linux /proc; elsewhere they read 0)."""

from __future__ import annotations

from pathlib import Path


def status(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakRSS:
    """The rise of peak RSS over the RSS at the start of a block (Linux: VmHWM reset by writing 5
    to /proc/self/clear_refs)."""

    def __enter__(self) -> PeakRSS:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.start = status("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        self.rise = max(0, status("VmHWM") - self.start)
