"""Keep freed memory in the process between training steps (glibc malloc).

By default glibc serves every large block (from 128 KiB up, the limit rising with use) with
a fresh ``mmap`` and unmaps it on free, and returns freed heap to the system. A push-pull
step frees large temporaries (the device update's) between two forward+backward passes, so
the next pass gets fresh pages and pays a page fault per 4 KiB. Measured on ResNet18 width 8
(bf16, one core): the forward+backward ran 5 % slower beside the device update than in a
float run, and the whole push-pull run 1.11-1.14x the float run; with large blocks kept in
the heap, 1.00-1.03x (``benchmarks/twin_step.py``). The cost: memory freed at peak stays
with the process instead of going back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LARGEST = 2**31 - 1  # mallopt takes a C int
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed memory (glibc's ``mallopt``); once
    per process. Returns whether the allocator took the settings (False off glibc)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _LARGEST))
    return _applied
