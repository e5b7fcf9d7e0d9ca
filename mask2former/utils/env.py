"""Environment helpers: device resolution, seeding, graph capture and eager-only caches."""
from __future__ import annotations

import functools
import logging
import os
import random
import time
from typing import Any, Callable, Dict, Hashable

import numpy as np
import torch

__all__ = ["CPU_BF16_ENV", "cached_unless_capturing", "capturing_graph", "cpu_has_fast_bfloat16", "module_device_type",
           "resolve_device", "seed_all_rng"]

_logger = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    """Return ``device``, or "cpu" with a warning when it names CUDA and none is available."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        _logger.warning("MODEL.DEVICE=%s but CUDA is not available; running on CPU instead.", device)
        return "cpu"
    return str(device)


def module_device_type(module: torch.nn.Module) -> str:
    """Device type ("cpu", "cuda", ...) of a module's first parameter; "cpu" without parameters."""
    param = next(module.parameters(), None)
    return param.device.type if param is not None else "cpu"


CPU_BF16_ENV = "MASK2FORMER_CPU_BF16"
# bfloat16 counts as fast from this matmul speed-up over float32 (measured: 2.1-2.6x or <= 1.0x)
_FAST_BF16_SPEEDUP = 1.3


@functools.lru_cache(maxsize=None)
def cpu_has_fast_bfloat16() -> bool:
    """Whether bfloat16 matmuls beat float32 on this CPU, so that bfloat16 autocast pays off.

    ``MASK2FORMER_CPU_BF16=fast`` / ``slow`` decides by hand. Otherwise: AMX tiles (Intel Sapphire
    Rapids and newer) -> True; no AVX512-BF16 (bfloat16 emulated) -> False; AVX512-BF16 without
    AMX -> measured once per process (``_bfloat16_matmul_speedup``, ~0.1 s), because the same
    instruction set is fast on some CPUs and slow on others: an AMD EPYC Zen 4 ran the model's
    matmuls 2.5x and its convolutions 2x faster in bfloat16, a Xeon whose AMX the VM hid 1.0-2.0x
    slower (docs/performance.md). The measured margins are wide, so the 1.3x threshold gives the
    same answer run after run on one machine.
    """
    choice = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if choice in ("fast", "slow"):
        return choice == "fast"
    if choice not in ("", "auto"):
        raise ValueError(f"{CPU_BF16_ENV}={os.environ[CPU_BF16_ENV]!r}: expected 'fast', 'slow' or 'auto'")
    if _cpu_feature("_is_amx_tile_supported"):
        return True
    if not _cpu_feature("_is_avx512_bf16_supported"):
        return False
    speedup = _bfloat16_matmul_speedup()
    _logger.info("bfloat16 matmul on this CPU (AVX512-BF16, no AMX): %.2fx the speed of float32 (%s)",
                 speedup, "bfloat16 autocast pays off" if speedup >= _FAST_BF16_SPEEDUP else "float32 is faster")
    return speedup >= _FAST_BF16_SPEEDUP


def _cpu_feature(probe_name: str) -> bool:
    """``torch.cpu.<probe_name>()``, False where this torch has no such probe."""
    probe = getattr(torch.cpu, probe_name, None)
    return bool(probe()) if probe is not None else False


def _bfloat16_matmul_speedup(rounds: int = 7) -> float:
    """float32 time / bfloat16 time of a (2048, 256) @ (256, 256) matmul (the size class of the
    models' linears), medians of ``rounds`` interleaved timings on torch's current threads."""
    generator = torch.Generator().manual_seed(0)  # leaves the global random streams alone
    a = torch.randn(2048, 256, generator=generator)
    b = torch.randn(256, 256, generator=generator)
    pairs = ((a, b), (a.bfloat16(), b.bfloat16()))
    times: list = [[], []]
    with torch.no_grad():
        for round_index in range(rounds + 2):
            for variant, (x, y) in enumerate(pairs):
                start = time.perf_counter()
                for _ in range(4):
                    torch.mm(x, y)
                if round_index >= 2:  # two warm-up rounds
                    times[variant].append(time.perf_counter() - start)
    fp32, bf16 = (sorted(t)[len(t) // 2] for t in times)
    return fp32 / bf16


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
