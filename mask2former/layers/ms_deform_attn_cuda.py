"""The ``cuda`` backend of multi-scale deformable attention: our compiled op (``csrc/ms_deform_attn``).

The extension is found, in order:

1. prebuilt: the module ``mask2former.layers._msda_C`` that ``pip install -e .`` compiles when a
   CUDA toolkit is present (see docs/ms_deform_attn.md for the setup.py hook);
2. JIT: ``torch.utils.cpp_extension.load`` on first use on a CUDA machine, cached (see
   ``extension_loader``) under a sub-directory keyed by torch version, CUDA version and GPU arch;
   ``MASK2FORMER_MSDA_JIT=0`` turns the JIT build off.

Anything that goes wrong (no GPU, no toolkit, no ninja, a compile error) only makes
:func:`is_available` return False, with the reason logged once (:func:`unavailable_reason`);
importing this module never fails and never builds anything.

The dispatcher (``ms_deform_attn_dispatch``) loads ``BACKEND`` from here by name; importing this
module has no side effect.
"""
from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .extension_loader import LazyExtension, cache_dir_for
from .ms_deform_attn_dispatch import (
    MSDABackend,
    MSDeformAttnKernelFunction,
    prepare_kernel_inputs,
    register_ms_deform_attn_backend,
)

__all__ = [
    "EXTENSION",
    "SOURCES",
    "build_extension",
    "extension_cache_dir",
    "is_available",
    "ms_deform_attn_cuda",
    "register",
    "supports",
    "unavailable_reason",
]

logger = logging.getLogger(__name__)

PREBUILT_MODULE = "mask2former.layers._msda_C"
JIT_NAME = "mask2former_msda"
SOURCE_DIR = Path(__file__).resolve().parent / "csrc" / "ms_deform_attn"
SOURCES: Tuple[str, ...] = ("ms_deform_attn.cpp", "ms_deform_attn_forward.cu", "ms_deform_attn_backward.cu")
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
NVCC_FLAGS: Tuple[str, ...] = ("-O3", "--expt-relaxed-constexpr", "-lineinfo")

# --------------------------------------------------------------------------- loading
def _device_arch() -> Optional[Tuple[int, int]]:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(torch.cuda.current_device())


def _cache_key(arch: Optional[Tuple[int, int]] = None) -> str:
    arch = arch or _device_arch()
    arch_key = f"sm{arch[0]}{arch[1]}" if arch else "any"
    return f"torch{torch.__version__}_cuda{torch.version.cuda}_{arch_key}"


def extension_cache_dir(arch: Optional[Tuple[int, int]] = None) -> Path:
    """Build directory of the JIT extension for this torch / CUDA version and GPU ``arch``.

    ``arch`` defaults to the current device's (or ``"any"`` without one).
    """
    return cache_dir_for(_cache_key(arch))


def _jit_build(build_dir: Path, verbose: bool) -> ModuleType:
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None:
        raise RuntimeError("no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)")
    return cpp_extension.load(
        name=JIT_NAME,
        sources=[str(SOURCE_DIR / s) for s in SOURCES],
        build_directory=str(build_dir),
        extra_cflags=["-O3"],
        extra_cuda_cflags=list(NVCC_FLAGS),
        verbose=verbose,
    )


def _require_gpu() -> None:
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device")


EXTENSION = LazyExtension(label="CUDA", jit_name=JIT_NAME, sources=[SOURCE_DIR / s for s in SOURCES],
                          prebuilt=PREBUILT_MODULE, cache_key=_cache_key, build=_jit_build,
                          precondition=_require_gpu)


def build_extension(build_directory: Optional[Union[str, Path]] = None, verbose: bool = False) -> ModuleType:
    """JIT-compile and import the extension (raises on failure). Needs nvcc and ninja, not a GPU.
    (Takes a few minutes.)"""
    return EXTENSION.build(build_directory, verbose)


def _load() -> Optional[ModuleType]:
    """The extension module, or None. Tries once per process."""
    return EXTENSION.load()


def is_available() -> bool:
    """True if the extension is loaded (builds it on the first call on a CUDA machine)."""
    return _load() is not None


def unavailable_reason() -> Optional[str]:
    """Why :func:`is_available` is False (None if it is True or was not asked yet)."""
    return EXTENSION.reason


def supports(value: Tensor) -> bool:
    """The kernels take CUDA tensors of half, bfloat16, float or double."""
    return value.is_cuda and value.dtype in SUPPORTED_DTYPES


# --------------------------------------------------------------------------- autograd
def ms_deform_attn_cuda(
    value: Tensor,
    value_spatial_shapes: Union[Tensor, Sequence[Sequence[int]]],
    value_level_start_index: Optional[Tensor],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """The op on the compiled kernels; same contract as ``multi_scale_deformable_attention``.

    Inputs go through :func:`prepare_kernel_inputs` (the kernels need no batch chunking, so there
    is no ``im2col_step``). Returns (N, Lq, M * D).
    """
    return MSDeformAttnKernelFunction.apply(EXTENSION, *prepare_kernel_inputs(
        value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights))


# --------------------------------------------------------------------------- registration
BACKEND = MSDABackend("cuda", ms_deform_attn_cuda, is_available=is_available, supports=supports)


def register() -> None:
    """(Re-)register the ``cuda`` backend with the dispatcher (the dispatcher also loads ``BACKEND`` by name)."""
    register_ms_deform_attn_backend(BACKEND)
