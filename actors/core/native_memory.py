"""Keep the process's native heap from creeping up over weeks: glibc malloc settings for a frame-shuffling process.

Every sampled frame is a 0.5-6 MB array allocated on an extractor thread and freed on an inference or writer thread.
With glibc's defaults the mmap threshold rises to the frame size after the first free, so frames then come from the
heap arenas (up to 8 per core), and fragmentation raises RSS in steps that a months-long run cannot afford. Measured
here, 6 cameras at 60 frames/s with alerts: RSS 122 -> 130 MB in 7 minutes and still rising with the defaults, flat at
115-117 MB with a fixed 256 KiB mmap threshold and 2 arenas (frames go back to the OS when freed).

``bound_native_memory()`` applies that through ``mallopt`` at start, before any thread exists. Settings given in the
environment (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``) win. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 256 * 1024
ARENA_MAX = 2


def bound_native_memory() -> bool:
    """Apply the malloc settings; False when this is not glibc (nothing changed)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(_M_ARENA_MAX, ARENA_MAX)
    return True
