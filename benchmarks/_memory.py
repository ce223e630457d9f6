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


class PeakCUDA:
    """The rise of the CUDA allocator's peak over what it held at the start of a block (the GPU
    counterpart of PeakRSS: bytes of tensors, not of the process)."""

    def __enter__(self) -> PeakCUDA:
        import gc

        import torch

        gc.collect()  # the last variant's tensors held only by reference cycles: freed before, not during
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.start = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        torch.cuda.synchronize()
        self.rise = max(0, torch.cuda.max_memory_allocated() - self.start)


def peak_memory(device: str) -> type[PeakRSS] | type[PeakCUDA]:
    """The peak measure for a device: the allocator's on CUDA, the process's RSS elsewhere."""
    return PeakCUDA if device.startswith("cuda") else PeakRSS
