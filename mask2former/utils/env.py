"""Environment helpers: device resolution, seeding."""
from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

__all__ = ["capturing_graph", "resolve_device", "seed_all_rng"]

_logger = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    """Return ``device``, or "cpu" with a warning when it names CUDA and none is available."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        _logger.warning("MODEL.DEVICE=%s but CUDA is not available; running on CPU instead.", device)
        return "cpu"
    return str(device)


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
