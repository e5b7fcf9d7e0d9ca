"""The ``cuda`` backend of multi-scale deformable attention: our compiled op (``csrc/ms_deform_attn``).

The extension is found, in order:

1. prebuilt: the module ``mask2former.layers._msda_C`` that ``pip install -e .`` compiles when a
   CUDA toolkit is present (see docs/ms_deform_attn.md for the setup.py hook);
2. JIT: ``torch.utils.cpp_extension.load`` on first use on a CUDA machine, cached in
   ``$MASK2FORMER_EXTENSIONS_DIR`` (default ``~/.cache/mask2former/torch_extensions``) under a
   sub-directory keyed by torch version, CUDA version and GPU arch; ``MASK2FORMER_MSDA_JIT=0``
   turns the JIT build off.

Anything that goes wrong (no GPU, no toolkit, no ninja, a compile error) only makes
:func:`is_available` return False, with the reason logged once (:func:`unavailable_reason`);
importing this module never fails and never builds anything.

The dispatcher (``ms_deform_attn_dispatch``) loads ``BACKEND`` from here by name; importing this
module has no side effect.
"""
from __future__ import annotations

import importlib
import logging
import os
import re
import threading
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .ms_deform_attn_dispatch import MSDABackend, prepare_kernel_inputs, register_ms_deform_attn_backend

__all__ = [
    "MSDeformAttnCUDAFunction",
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
JIT_ENV = "MASK2FORMER_MSDA_JIT"
CACHE_ENV = "MASK2FORMER_EXTENSIONS_DIR"
SOURCE_DIR = Path(__file__).resolve().parent / "csrc" / "ms_deform_attn"
SOURCES: Tuple[str, ...] = ("ms_deform_attn.cpp", "ms_deform_attn_forward.cu", "ms_deform_attn_backward.cu")
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
NVCC_FLAGS: Tuple[str, ...] = ("-O3", "--expt-relaxed-constexpr", "-lineinfo")

_lock = threading.Lock()
_ext: Optional[ModuleType] = None
_reason: Optional[str] = None  # why the extension is unavailable; None while untried or loaded
_tried = False


# --------------------------------------------------------------------------- loading
def _device_arch() -> Optional[Tuple[int, int]]:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(torch.cuda.current_device())


def extension_cache_dir(arch: Optional[Tuple[int, int]] = None) -> Path:
    """Build directory of the JIT extension for this torch / CUDA version and GPU ``arch``.

    ``arch`` defaults to the current device's (or ``"any"`` without one).
    """
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mask2former" / "torch_extensions")
    arch = arch or _device_arch()
    arch_key = f"sm{arch[0]}{arch[1]}" if arch else "any"
    key = f"torch{torch.__version__}_cuda{torch.version.cuda}_{arch_key}"
    return root / re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def build_extension(build_directory: Optional[Union[str, Path]] = None, verbose: bool = False) -> ModuleType:
    """JIT-compile and import the extension (raises on failure). Needs nvcc and ninja, not a GPU."""
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None:
        raise RuntimeError("no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)")
    build_dir = Path(build_directory) if build_directory is not None else extension_cache_dir()
    build_dir.mkdir(parents=True, exist_ok=True)
    logger.info("Multi-scale deformable attention: building the CUDA extension in %s "
                "(first use; takes a few minutes)", build_dir)
    return cpp_extension.load(
        name=JIT_NAME,
        sources=[str(SOURCE_DIR / s) for s in SOURCES],
        build_directory=str(build_dir),
        extra_cflags=["-O3"],
        extra_cuda_cflags=list(NVCC_FLAGS),
        verbose=verbose,
    )


def _load() -> Optional[ModuleType]:
    """The extension module, or None (reason in ``_reason``). Tries once per process."""
    global _ext, _reason, _tried
    if _tried:
        return _ext
    with _lock:
        if _tried:
            return _ext
        try:
            _ext, where = _find_extension()
            logger.info("Multi-scale deformable attention: CUDA extension loaded from %s", where)
        except Exception as e:  # noqa: BLE001 -- any failure only disables this backend
            message = " ".join(str(e).split())  # compiler output can be long: keep its end
            _ext, _reason = None, f"{type(e).__name__}: {message if len(message) < 800 else '...' + message[-800:]}"
            logger.info("Multi-scale deformable attention: cuda backend unavailable (%s)", _reason)
        _tried = True
    return _ext


def _find_extension() -> Tuple[ModuleType, str]:
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device")
    try:
        module = importlib.import_module(PREBUILT_MODULE)
        return module, getattr(module, "__file__", PREBUILT_MODULE)
    except ImportError as e:
        logger.debug("no prebuilt %s (%s); trying a JIT build", PREBUILT_MODULE, e)
    if os.environ.get(JIT_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        raise RuntimeError(f"no prebuilt {PREBUILT_MODULE} and the JIT build is off ({JIT_ENV}=0)")
    build_dir = extension_cache_dir()
    module = build_extension(build_dir)
    return module, str(build_dir)


def is_available() -> bool:
    """True if the extension is loaded (builds it on the first call on a CUDA machine)."""
    return _load() is not None


def unavailable_reason() -> Optional[str]:
    """Why :func:`is_available` is False (None if it is True or was not asked yet)."""
    return _reason


def supports(value: Tensor) -> bool:
    """The kernels take CUDA tensors of half, bfloat16, float or double."""
    return value.is_cuda and value.dtype in SUPPORTED_DTYPES


# --------------------------------------------------------------------------- autograd
class MSDeformAttnCUDAFunction(torch.autograd.Function):
    """Autograd wrapper of the extension's forward / backward (inputs contiguous, one dtype)."""

    @staticmethod
    def forward(ctx, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
        ext = _load()
        if ext is None:
            raise RuntimeError(f"the multi-scale deformable attention CUDA extension is unavailable: {_reason}")
        output = ext.forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        N, Lq, M, D = output.shape
        return output.view(N, Lq, M * D)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_locations, grad_weights = _load().backward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
            grad_output.contiguous(),
        )
        return grad_value, None, None, grad_locations, grad_weights


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
    return MSDeformAttnCUDAFunction.apply(*prepare_kernel_inputs(
        value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights))


# --------------------------------------------------------------------------- registration
BACKEND = MSDABackend("cuda", ms_deform_attn_cuda, is_available=is_available, supports=supports)


def register() -> None:
    """(Re-)register the ``cuda`` backend with the dispatcher (the dispatcher also loads ``BACKEND`` by name)."""
    register_ms_deform_attn_backend(BACKEND)
