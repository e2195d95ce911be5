"""trainer.keep_freed_memory: freed activation buffers are reused instead of faulted in afresh."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# 80 blocks of 1 MB malloc()ed, written and freed, 20 times over: a training step's activations,
# without Python objects in between, so the C library's behaviour is the same on every run.
STEPS = """
import ctypes, ctypes.util, resource, sys
from poolstudy.utils.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
def step():
    blocks = [libc.malloc(1 << 20) for _ in range(80)]
    for block in blocks:
        libc.memset(block, 1, 1 << 20)
    for block in reversed(blocks):
        libc.free(block)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's mallopt; other C libraries ignore it")
def test_kept_memory_is_reused_without_page_faults():
    # 20 x 80 MB written = 409,600 pages. With the C library's defaults the freed heap top goes
    # back to the OS after every step and is faulted in again; kept, it is reused.
    assert _faults("system") > 300_000
    assert _faults("keep") < 1_000
