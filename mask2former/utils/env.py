"""Environment helpers: device resolution, seeding, graph capture and eager-only caches."""
from __future__ import annotations

import logging
import os
import random
from typing import Any, Callable, Dict, Hashable

import numpy as np
import torch

__all__ = ["cached_unless_capturing", "capturing_graph", "cpu_has_fast_bfloat16", "resolve_device", "seed_all_rng"]

_logger = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    """Return ``device``, or "cpu" with a warning when it names CUDA and none is available."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        _logger.warning("MODEL.DEVICE=%s but CUDA is not available; running on CPU instead.", device)
        return "cpu"
    return str(device)


def cpu_has_fast_bfloat16() -> bool:
    """Whether bfloat16 autocast is faster than float32 on this CPU: where it has AMX tiles
    (Intel Sapphire Rapids and newer), which oneDNN uses for bfloat16 convolutions and matmuls.

    With AVX512-BF16 alone, bfloat16 runs natively but slower than float32 (measured on a 2-core
    Xeon without AMX: matmuls and convolutions of the shapes model 1.0-2.0x slower, a shapes
    training iteration 1.25x slower, docs/performance.md); without it, it is emulated.
    """
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(amx()) if amx is not None else False


def seed_all_rng(seed: int | None = None) -> int:
    """Seed python, numpy and torch; a None / negative seed draws one from the OS. Returns it."""
    if seed is None or seed < 0:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
        _logger.info("Using a generated random seed %d", seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def capturing_graph() -> bool:
    """True while torch.compile / torch.export / ONNX export or ``torch.jit.trace`` records a
    graph: eager-only shortcuts (caches keyed by sizes or tensor versions, compiled kernels)
    must then compute inline."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def cached_unless_capturing(cache: Dict[Hashable, Any], key: Hashable, compute: Callable[[], Any],
                            max_entries: int = 16) -> Any:
    """``cache[key]``, filled by ``compute()`` on a miss (the cache is emptied once it holds
    ``max_entries``). While a graph is captured, ``compute()`` runs inline and nothing is cached."""
    if capturing_graph():
        return compute()
    if key not in cache:
        if len(cache) >= max_entries:
            cache.clear()
        cache[key] = compute()
    return cache[key]
