"""Peak memory and device utilisation of a benchmark step: host peak RSS always, CUDA figures when present.

* host: the process's peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``), which only grows: the
  figure after a batch is the peak of everything the process did so far (every format loaded, every batch
  up to this one);
* CUDA (only when ``device == "cuda"``): ``torch.cuda.max_memory_allocated`` since the probe started, which
  counts torch's caching allocator only (ONNX Runtime's CUDA arena is not in it), and the mean of
  ``torch.cuda.utilization()`` samples (NVML, through ``pynvml``) taken after each timed round; ``None``
  when NVML is not installed. The CUDA branch is untested on the CPU-only build machines.
"""

from __future__ import annotations

import logging
import resource
import statistics
import sys
from dataclasses import dataclass, field

__all__ = ["MemoryProbe", "peak_rss_bytes"]

logger = logging.getLogger(__name__)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass
class MemoryProbe:
    """Start it before a step, ``sample()`` during it, read the figures after it."""

    device: str
    utilisation: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()

    def sample(self) -> None:
        """One utilisation sample (CUDA with NVML only)."""
        if self.device != "cuda":
            return
        import torch

        try:
            self.utilisation.append(float(torch.cuda.utilization()))
        except Exception as exc:  # pynvml missing or NVML failing: no figure, not a failed benchmark
            logger.debug("no GPU utilisation sample: %s", exc)

    @property
    def peak_host_rss_bytes(self) -> int:
        return peak_rss_bytes()

    @property
    def peak_device_memory_bytes(self) -> int | None:
        if self.device != "cuda":
            return None
        import torch

        return int(torch.cuda.max_memory_allocated())

    @property
    def device_utilisation_percent(self) -> float | None:
        return statistics.fmean(self.utilisation) if self.utilisation else None
