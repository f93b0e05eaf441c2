"""The server's fixed glibc mmap threshold: a freed batch-sized buffer goes back to the system."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from caloflow_server.malloc import MAX_MMAP_THRESHOLD, set_mmap_threshold
from caloflow_server.settings import Settings

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
SERVER = Path(__file__).resolve().parents[1] / "server"

# One 10 MiB buffer allocated and freed (glibc raises its dynamic threshold to 10 MiB), then two more, the first
# freed while the second is live: the RSS growth over the baseline, in MiB.
_PROBE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    import numpy as np
    from caloflow_server.malloc import set_mmap_threshold

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    if sys.argv[1] == "fixed":
        assert set_mmap_threshold(1 << 20)
    first = np.ones(10 << 20, np.uint8)
    del first
    base = rss_mib()
    freed, live = np.ones(10 << 20, np.uint8), np.ones(10 << 20, np.uint8)
    del freed
    print(rss_mib() - base)
    """
)


def _growth_mib(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode, str(SERVER)], capture_output=True, text=True, check=True)
    return float(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_a_freed_batch_buffer_is_returned_with_the_fixed_threshold() -> None:
    assert _growth_mib("dynamic") > 15.0  # glibc's default: the freed 10 MiB stays in the heap
    assert _growth_mib("fixed") < 15.0  # only the live buffer is resident


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_server_entry_point_fixes_the_threshold_and_says_so() -> None:
    """In a child process: the setting would otherwise change this test process's malloc for the whole session."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from caloflow_server.main import configure_logging, configure_malloc;"
        "configure_logging('info'); configure_malloc(1 << 20); configure_malloc(0)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(SERVER)], capture_output=True, text=True, check=True)
    assert out.stderr.count("malloc:") == 1
    assert "malloc: buffers above 1048576 bytes are mapped and returned when freed" in out.stderr


def test_thresholds_out_of_glibc_range_are_refused() -> None:
    for bad in (0, MAX_MMAP_THRESHOLD + 1):
        with pytest.raises(ValueError, match="mmap threshold"):
            set_mmap_threshold(bad)
    with pytest.raises(ValueError, match="malloc_mmap_threshold_bytes"):
        Settings(malloc_mmap_threshold_bytes=MAX_MMAP_THRESHOLD + 1)
