"""Keep freed memory in the process for reuse instead of handing it back to the OS (glibc malloc).

Every training step frees and re-allocates the same activation-sized buffers (0.1-2 MB each).
With its default thresholds glibc serves such sizes with fresh mmap()s or trims them off the heap
top once freed, so the next step touches new pages, which the kernel zero-fills: every step pays
for thousands of minor page faults. With the thresholds raised the freed blocks are reused: far
fewer faults and a shorter epoch, for somewhat more peak memory, since the process keeps what it
once used until it exits (``python -m benchmarks.bench --sweeps`` measures both; docs/benchmark.md). PyTorch's CPU performance guides give the same advice (jemalloc/tcmalloc); this is
glibc's own knob for it.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the reusable heap; larger ones (decoded datasets) are still mmap()ed.
MMAP_THRESHOLD = 32 << 20  # glibc's own upper limit for its dynamic threshold on 64-bit
TRIM_THRESHOLD = 1 << 30


@functools.lru_cache(maxsize=1)  # process-wide: once per process, however many jobs it runs
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True where it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs on
    except (OSError, AttributeError):
        return False
    # mallopt returns 1 on success; musl and other C libraries accept the call and return 0
    done = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not done:
        log.debug("mallopt is not available here; memory is allocated with the C library's defaults")
    return done
