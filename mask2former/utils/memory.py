"""How glibc's malloc treats freed CPU memory: keep it for reuse (fast) or return it (lean).

glibc returns large blocks (``mmap``-ed above a threshold, or trimmed off the heap top) to the
kernel when they are freed, and raises that threshold as the program frees large blocks, after
which freed blocks stay in the heap where they fragment. Two policies serve this project better
than that default:

- ``"cache"`` (the default): every allocation comes from the heap and the heap is never
  trimmed, so the large temporaries that a segmentation model frees and re-allocates on every
  forward pass are reused without page faults (about a sixth of inference time for the R50 COCO
  panoptic model at 480x640 on a 2-core CPU, docs/benchmarks.md), as PyTorch's caching
  allocator does for CUDA. The process keeps its peak memory until it exits.
- ``"release"``: every block of 1 MiB or more is ``mmap``-ed and handed back the moment it is
  freed, so the resident size follows the live tensors and no fragmentation accumulates: the
  lowest peak RSS (training the R50 model: about 0.5 GiB less, docs/performance.md), paid with
  page faults on every large allocation.
- ``"system"``: glibc's own behaviour, untouched.

Chosen by ``MASK2FORMER_CPU_MEMORY_CACHE`` (``1`` / ``cache``, ``0`` / ``system``, ``release``)
and applied by the engine entry points (``DefaultPredictor``, ``DefaultTrainer``, the tools) through
:func:`configure_cpu_memory`, never at import. Only glibc (Linux) is affected; on any other C
library this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Callable, Optional

__all__ = ["configure_cpu_memory", "keep_freed_cpu_memory", "release_freed_cpu_memory", "CPU_MEMORY_ENV"]

logger = logging.getLogger(__name__)

CPU_MEMORY_ENV = "MASK2FORMER_CPU_MEMORY_CACHE"
_MODES = {"1": "cache", "cache": "cache", "0": "system", "system": "system", "release": "release"}

# mallopt() parameters from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1
_RELEASE_FROM_BYTES = 2**20

_applied: Optional[str] = None  # the policy in effect in this process, once one was set


def _mallopt() -> Optional[Callable[[int, int], int]]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def _apply(mode: str, settings) -> bool:
    global _applied
    if _applied is not None:
        if _applied != mode:
            logger.warning(f"CPU memory policy {_applied!r} is already in effect; {mode!r} is ignored")
        return _applied == mode
    mallopt = _mallopt()
    if mallopt is None or not all(mallopt(param, value) == 1 for param, value in settings):
        return False
    _applied = mode
    logger.debug(f"glibc malloc policy {mode!r} ({CPU_MEMORY_ENV})")
    return True


def keep_freed_cpu_memory() -> bool:
    """The ``"cache"`` policy (once per process); True if it is in effect."""
    return _apply("cache", [
        (_M_MMAP_MAX, 0),  # large blocks from the heap, not from fresh mmap()s
        (_M_TRIM_THRESHOLD, _INT_MAX),  # never give the heap top back
        (_M_TOP_PAD, 64 * 2**20),  # grow the heap in 64 MiB steps
    ])


def release_freed_cpu_memory() -> bool:
    """The ``"release"`` policy (once per process); True if it is in effect."""
    return _apply("release", [
        (_M_MMAP_THRESHOLD, _RELEASE_FROM_BYTES),  # fixed: glibc no longer raises it
        (_M_TRIM_THRESHOLD, _RELEASE_FROM_BYTES),
    ])


def configure_cpu_memory(mode: Optional[str] = None) -> str:
    """Apply ``mode`` (default: ``$MASK2FORMER_CPU_MEMORY_CACHE``, else ``"cache"``).

    Returns the policy in effect: ``"cache"``, ``"release"`` or ``"system"`` (also when the C
    library is not glibc). The first policy set in a process stays.
    """
    source = "argument" if mode is not None else CPU_MEMORY_ENV
    value = mode if mode is not None else os.environ.get(CPU_MEMORY_ENV, "cache")
    if value.strip().lower() not in _MODES:
        raise ValueError(f"Unknown CPU memory policy {value!r} ({source}); expected one of "
                         "'cache' (or 1), 'release', 'system' (or 0)")
    mode = _MODES[value.strip().lower()]
    if mode == "cache" and keep_freed_cpu_memory():
        return "cache"
    if mode == "release" and release_freed_cpu_memory():
        return "release"
    return _applied or "system"
