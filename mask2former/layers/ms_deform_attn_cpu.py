"""The ``cpu`` backend of multi-scale deformable attention: a compiled C++ kernel (``csrc/ms_deform_attn``).

One pass per (batch, query, head) gathers the bilinear taps of all levels and points straight from
``value`` and sums them into the output, on ATen's thread pool (``torch.set_num_threads`` applies).
The PyTorch path instead runs ``grid_sample`` per level into (N*M, D, Lq, P) temporaries, then a
multiply and a sum; for training it also keeps those temporaries for backward. This kernel's
backward recomputes the taps from the saved inputs (value, locations, weights), so nothing of size
(Lq, L, P, D) is kept between forward and backward. Same bilinear taps as the CUDA kernels
(``ms_deform_attn_core.cuh``); results equal the PyTorch path to float rounding (the sums run in
another order). float32 / float64 / bfloat16 / float16 (half types accumulate in float32).

The extension is JIT-compiled on first use (C++ only: a C++ compiler and ninja, no CUDA toolkit;
about a minute on 2 cores) and cached, keyed by torch version, the CPU's vector ISA and the OpenMP
flag (see ``extension_loader``; ``MASK2FORMER_MSDA_JIT=0`` turns the build off). If it cannot be
built, :func:`is_available` is False and ``auto`` uses the ``pytorch`` backend.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .extension_loader import LazyExtension
from .ms_deform_attn_dispatch import (
    MSDABackend,
    MSDeformAttnKernelFunction,
    prepare_kernel_inputs,
    register_ms_deform_attn_backend,
)

__all__ = ["EXTENSION", "is_available", "ms_deform_attn_cpu", "register", "supports",
           "unavailable_reason"]

JIT_NAME = "mask2former_msda_cpu"
SOURCE_DIR = Path(__file__).resolve().parent / "csrc" / "ms_deform_attn"
SOURCES: Tuple[str, ...] = ("ms_deform_attn_cpu.cpp",)
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Vector ISA flags by torch's own CPU capability: the binary runs wherever torch picked the same kernels.
_ISA_FLAGS = {
    "AVX512": ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma"),
    "AVX2": ("-mavx2", "-mfma"),
}


def _isa() -> str:
    capability = torch.backends.cpu.get_cpu_capability()
    return capability if capability in _ISA_FLAGS else "DEFAULT"


def _openmp_flags() -> Tuple[str, ...]:
    """``-fopenmp`` where torch itself threads with OpenMP (the Linux wheels).

    ``at::parallel_for`` is a header template: in code compiled without OpenMP its
    ``#pragma omp parallel`` is ignored and the whole range runs on the calling thread, whatever
    ``torch.set_num_threads`` says (the kernels were single-threaded so, 2x slower on 2 cores).
    The compiled code then shares torch's OpenMP runtime and thread count.
    """
    if sys.platform.startswith("linux") and torch.backends.openmp.is_available():
        return ("-fopenmp",)
    return ()


def _cache_key() -> str:
    threading = "_omp" if _openmp_flags() else ""
    return f"torch{torch.__version__}_cpu_{_isa()}{threading}"


def _jit_build(build_dir: Path, verbose: bool) -> ModuleType:
    # importing cpp_extension warns when it finds no CUDA runtime: irrelevant to a C++-only build
    cpp_logger = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_logger.level
    cpp_logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        cpp_logger.setLevel(level)

    return cpp_extension.load(
        name=JIT_NAME,
        sources=[str(SOURCE_DIR / s) for s in SOURCES],
        build_directory=str(build_dir),
        extra_cflags=["-O3", *_ISA_FLAGS.get(_isa(), ()), *_openmp_flags()],
        extra_ldflags=list(_openmp_flags()),
        verbose=verbose,
    )


EXTENSION = LazyExtension(label="CPU", jit_name=JIT_NAME, sources=[SOURCE_DIR / s for s in SOURCES],
                          prebuilt=None, cache_key=_cache_key, build=_jit_build)


def is_available() -> bool:
    """True if the extension is loaded (builds it on the first call)."""
    return EXTENSION.load() is not None


def unavailable_reason() -> Optional[str]:
    """Why :func:`is_available` is False (None if it is True or was not asked yet)."""
    return EXTENSION.reason


def supports(value: Tensor) -> bool:
    """The kernels take CPU tensors of half, bfloat16, float or double."""
    return value.device.type == "cpu" and value.dtype in SUPPORTED_DTYPES


def ms_deform_attn_cpu(
    value: Tensor,
    value_spatial_shapes: Union[Tensor, Sequence[Sequence[int]]],
    value_level_start_index: Optional[Tensor],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """The op on the CPU kernel; same contract as ``multi_scale_deformable_attention``. Returns (N, Lq, M * D)."""
    return MSDeformAttnKernelFunction.apply(EXTENSION, *prepare_kernel_inputs(
        value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights))


BACKEND = MSDABackend("cpu", ms_deform_attn_cpu, is_available=is_available, supports=supports)


def register() -> None:
    """(Re-)register the ``cpu`` backend with the dispatcher (the dispatcher also loads ``BACKEND`` by name)."""
    register_ms_deform_attn_backend(BACKEND)
