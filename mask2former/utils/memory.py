"""Keep freed CPU memory in the process instead of handing it back to the OS after every call.

glibc returns large blocks (``mmap``-ed above a threshold, or trimmed off the heap top) to the
kernel as soon as they are freed. A segmentation model frees and re-allocates the same large
temporaries on every forward pass, so each pass then page-faults and zero-fills that memory
again: on a 2-core CPU this was about a sixth of inference time for the R50 COCO panoptic model
at 480x640 (docs/benchmarks.md). Serving every allocation from the heap and never trimming it
makes the memory reusable, as PyTorch's caching allocator does for CUDA. The price is that the
process keeps its peak CPU memory until it exits.

Applied by the engine entry points (``DefaultPredictor``, ``DefaultTrainer``, the tools), not at
import. ``MASK2FORMER_CPU_MEMORY_CACHE=0`` turns it off. Only glibc (Linux) is affected; on any
other C library this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = ["keep_freed_cpu_memory"]

logger = logging.getLogger(__name__)

# mallopt() parameters from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_applied = False


def keep_freed_cpu_memory() -> bool:
    """Tell glibc to keep freed memory for reuse (once per process); True if it is in effect."""
    global _applied
    if _applied:
        return True
    if os.environ.get("MASK2FORMER_CPU_MEMORY_CACHE", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = (
        mallopt(_M_MMAP_MAX, 0) == 1  # large blocks from the heap, not from fresh mmap()s
        and mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1  # never give the heap top back
        and mallopt(_M_TOP_PAD, 64 * 2**20) == 1  # grow the heap in 64 MiB steps
    )
    _applied = ok
    if ok:
        logger.debug("glibc malloc keeps freed memory for reuse (MASK2FORMER_CPU_MEMORY_CACHE=0 turns it off)")
    return ok
