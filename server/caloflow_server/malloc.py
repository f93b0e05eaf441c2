"""glibc's malloc told to hand large buffers back to the system: a fixed mmap threshold.

glibc serves an allocation above its mmap threshold (128 KiB at start) with a mapping of its own, unmapped when
freed. The threshold is dynamic, though: freeing such a block raises it to that block's size (up to 32 MiB), so
from then on buffers of that size come from the per-thread heaps, which keep the memory once it is freed. A
server's per-batch buffers are exactly those: a batch of 64 DS3 showers is a 10 MB model output, copied per
request and framed per chunk, on several threads. Measured on the DS3 demo model (``icaloflow_ds3``, 2 calls of 64
showers in parallel): with glibc's dynamic threshold the server's RSS went from 643 MB after its first requests to
~950 MB during and after a stream; with the threshold fixed at 1 MiB it stayed at 550-580 MB, and the same
stream's rate did not change measurably (each 10 MB mapping costs ~1-2 ms of page faults against ~2 s per call).

``mallopt(M_MMAP_THRESHOLD, n)`` fixes the threshold and turns the adjustment off. It exists in glibc only: with
another C library (musl in Alpine images, macOS) nothing is changed and ``set_mmap_threshold`` says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["MAX_MMAP_THRESHOLD", "set_mmap_threshold"]

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's HEAP_MAX_SIZE / 2 on 64-bit: mallopt refuses more


def set_mmap_threshold(nbytes: int) -> bool:
    """Fix glibc's mmap threshold at ``nbytes``; False where this C library has no ``mallopt`` or refuses it."""
    if not 0 < nbytes <= MAX_MMAP_THRESHOLD:
        raise ValueError(f"the mmap threshold must be in 1 .. {MAX_MMAP_THRESHOLD} bytes, got {nbytes}")
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, nbytes))
