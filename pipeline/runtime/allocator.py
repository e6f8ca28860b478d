"""glibc's malloc tuned for the big, short-lived numpy temporaries of the native engine.

By default glibc serves blocks ≥ 128 KiB with fresh mmap pages, raising that threshold
only after such a block is freed, and gives freed heap tops back to the kernel above
128 KiB: a solve of a 2,000-sample batch then page-faults ~7,000 times (≈ 27 MB of
zeroed pages) per call. Keeping blocks up to 64 MiB on the heap and not trimming below
128 MiB removes the faults: ~30 % less CPU per such solve (docs/results-main-job.md).
Linux/glibc only; elsewhere, or when the user set either MALLOC_*_ variable, nothing."""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1   # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 128 << 20
_USER_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def tune() -> bool:
    """Set both thresholds; True when they were set."""
    if not sys.platform.startswith("linux") or any(v in os.environ for v in _USER_VARS):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):   # musl and other C libraries: no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
