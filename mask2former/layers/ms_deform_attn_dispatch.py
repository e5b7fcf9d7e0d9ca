"""Multi-scale deformable attention (Deformable DETR): the op's one entry point and its backends.

:func:`multi_scale_deformable_attention` dispatches to a backend, loaded by name from its own
module the first time it is asked for (the backends import this module, never the reverse):

* ``pytorch`` (``ms_deform_attn_pytorch``) -- always available; bilinear ``grid_sample``
  (zeros padding, ``align_corners=False``), numerically the official ``ms_deform_attn_core_pytorch``;
* ``cuda`` (``ms_deform_attn_cuda``) -- our compiled CUDA kernels;
* ``triton`` (``ms_deform_attn_triton``) -- Triton kernels;
* ``cpu`` (``ms_deform_attn_cpu``) -- our compiled C++ CPU kernels (JIT-built on first use).

Each backend module defines ``BACKEND`` (an :class:`MSDABackend`); the compiled ones share
:func:`prepare_kernel_inputs`. :func:`register_ms_deform_attn_backend` replaces a backend in
this process (tests, experiments) without touching any caller.

Which backend runs is chosen by :func:`set_ms_deform_attn_impl` (in code) or else by the
environment variable ``MASK2FORMER_MSDA_IMPL`` (one of ``auto``, ``pytorch``, ``cuda``,
``triton``, ``cpu``; default ``auto``):

* ``auto`` picks the first backend that supports the inputs and is available among cuda, triton,
  cpu, pytorch (logs its choice once); while a graph is captured (``torch.compile``,
  ``torch.export``, ONNX export, ``torch.jit.trace``) it takes ``pytorch``, whose plain tensor ops
  the graph can hold;
* a backend named by ``set_ms_deform_attn_impl`` that is not available / cannot take the
  inputs falls back to ``pytorch`` with a one-time warning;
* a backend forced through ``MASK2FORMER_MSDA_IMPL`` that cannot run raises ``RuntimeError``;
* a name outside the list above raises ``ValueError`` either way.
"""
from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Set, Tuple, Union

import torch
from torch import Tensor

from ..utils.env import capturing_graph

__all__ = [
    "BACKEND_MODULES",
    "ENV_VAR",
    "IMPL_NAMES",
    "MSDABackend",
    "MSDeformAttnKernelFunction",
    "get_ms_deform_attn_impl",
    "multi_scale_deformable_attention",
    "prepare_kernel_inputs",
    "register_ms_deform_attn_backend",
    "resolve_ms_deform_attn_backend",
    "set_ms_deform_attn_impl",
]

logger = logging.getLogger(__name__)

ENV_VAR = "MASK2FORMER_MSDA_IMPL"
IMPL_NAMES: Tuple[str, ...] = ("auto", "pytorch", "cuda", "triton", "cpu")
_AUTO_ORDER: Tuple[str, ...] = ("cuda", "triton", "cpu", "pytorch")
# backend name -> module of this package defining ``BACKEND`` (imported on first use)
BACKEND_MODULES: Dict[str, str] = {
    "pytorch": "ms_deform_attn_pytorch",
    "cuda": "ms_deform_attn_cuda",
    "triton": "ms_deform_attn_triton",
    "cpu": "ms_deform_attn_cpu",
}

SpatialShapes = Union[Tensor, Sequence[Sequence[int]]]


@dataclass(frozen=True)
class MSDABackend:
    """An implementation of the op.

    ``forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    -> (N, Lq, M*D)``; ``is_available()`` says whether it can run at all here (e.g. the
    extension compiled); ``supports(value)`` whether it takes these inputs (e.g. CUDA tensors only).
    """

    name: str
    forward: Callable[..., Tensor]
    is_available: Callable[[], bool] = lambda: True
    supports: Callable[[Tensor], bool] = lambda value: True


_BACKENDS: Dict[str, MSDABackend] = {}  # loaded or registered backends, by name
_impl_override: Optional[str] = None
_logged: Set[Tuple[str, str]] = set()


def _backend(name: str) -> MSDABackend:
    """The backend ``name``: the registered one, else ``BACKEND`` of its module (imported once)."""
    if name not in _BACKENDS:
        module = importlib.import_module(f"{__package__}.{BACKEND_MODULES[name]}")
        _BACKENDS[name] = module.BACKEND
    return _BACKENDS[name]


def register_ms_deform_attn_backend(backend: MSDABackend) -> None:
    """Add (or replace) the backend ``backend.name`` (``pytorch``, ``cuda``, ``triton`` or ``cpu``)."""
    if backend.name not in BACKEND_MODULES:
        raise ValueError(f"backend name {backend.name!r} must be one of {list(BACKEND_MODULES)}")
    _BACKENDS[backend.name] = backend
    _logged.clear()


def _check_name(name: str, source: str) -> str:
    name = name.strip().lower()
    if name not in IMPL_NAMES:
        raise ValueError(f"{source}={name!r} is not a deformable-attention backend; use one of {IMPL_NAMES}")
    return name


def set_ms_deform_attn_impl(name: Optional[str]) -> None:
    """Prefer backend ``name`` in this process (``None``: back to ``$MASK2FORMER_MSDA_IMPL``)."""
    global _impl_override
    _impl_override = None if name is None else _check_name(name, "set_ms_deform_attn_impl")


def get_ms_deform_attn_impl() -> str:
    """The requested backend name (the override, else the environment variable, else ``auto``)."""
    if _impl_override is not None:
        return _impl_override
    return _check_name(os.environ.get(ENV_VAR, "auto") or "auto", ENV_VAR)


def _why_not(name: str, value: Tensor) -> Optional[str]:
    backend = _backend(name)
    if not backend.supports(value):  # first: is_available() may build an extension
        return f"does not support {value.dtype} tensors on {value.device}"
    if not backend.is_available():
        return "is not available"
    return None


def _log_once(requested: str, chosen: str, message: str, level: int) -> None:
    if (requested, chosen) not in _logged:
        _logged.add((requested, chosen))
        logger.log(level, message)


def resolve_ms_deform_attn_backend(value: Tensor) -> MSDABackend:
    """The backend that :func:`multi_scale_deformable_attention` uses for ``value``."""
    forced_by_env = _impl_override is None
    requested = get_ms_deform_attn_impl()
    if requested == "auto":
        if capturing_graph():
            return _backend("pytorch")
        reasons = []
        for name in _AUTO_ORDER:
            why = _why_not(name, value)
            if why is None:
                _log_once("auto", name, f"Multi-scale deformable attention: using the {name} backend "
                          f"({'; '.join(reasons) or 'first choice'})", logging.INFO)
                return _backend(name)
            reasons.append(f"{name}: {why}")
        raise RuntimeError(f"no deformable-attention backend can run: {reasons}")  # pytorch never fails

    why = _why_not(requested, value)
    if why is None:
        return _backend(requested)
    if forced_by_env:
        raise RuntimeError(
            f"{ENV_VAR}={requested!r} forces the {requested} deformable-attention backend, but it "
            f"{why}; unset {ENV_VAR} or set it to 'auto' or 'pytorch'"
        )
    _log_once(requested, "pytorch", f"Multi-scale deformable attention: the {requested} backend "
              f"{why}; falling back to the pytorch backend", logging.WARNING)
    return _backend("pytorch")


def multi_scale_deformable_attention(
    value: Tensor,
    value_spatial_shapes: Tensor,
    value_level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Sample ``value`` at ``sampling_locations`` of every level and sum with ``attention_weights``.

    Args:
        value: (N, S, M, D), S = sum of H_l * W_l; M heads of D channels.
        value_spatial_shapes: (L, 2) long, (H_l, W_l) of each level.
        value_level_start_index: (L,) long, offset of each level in S.
        sampling_locations: (N, Lq, M, L, P, 2), (x, y) normalised to [0, 1] (outside is zero).
        attention_weights: (N, Lq, M, L, P).
    Returns:
        (N, Lq, M * D).
    """
    _check_shapes(value, value_spatial_shapes, sampling_locations, attention_weights)
    backend = resolve_ms_deform_attn_backend(value)
    return backend.forward(value, value_spatial_shapes, value_level_start_index, sampling_locations,
                           attention_weights)


def _check_shapes(value: Tensor, spatial_shapes: SpatialShapes, locations: Tensor,
                  weights: Tensor) -> None:
    if value.dim() != 4 or locations.dim() != 6 or locations.shape[-1] != 2:
        raise ValueError(
            "expected value (N, S, M, D) and sampling_locations (N, Lq, M, L, P, 2), got "
            f"{tuple(value.shape)} and {tuple(locations.shape)}"
        )
    N, S, M, _ = value.shape
    n, lq, m, L, P, _ = locations.shape
    if (n, m) != (N, M) or tuple(weights.shape) != (n, lq, m, L, P):
        raise ValueError(
            f"inconsistent shapes: value {tuple(value.shape)}, sampling_locations "
            f"{tuple(locations.shape)}, attention_weights {tuple(weights.shape)}"
        )
    n_levels = spatial_shapes.shape[0] if isinstance(spatial_shapes, Tensor) else len(spatial_shapes)
    if n_levels != L:
        raise ValueError(f"value_spatial_shapes has {n_levels} levels, sampling_locations has {L}")
    if not torch.jit.is_tracing() and isinstance(spatial_shapes, Tensor) and spatial_shapes.device.type == "cpu":
        total = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
        if total != S:
            raise ValueError(f"value_spatial_shapes {spatial_shapes.tolist()} cover {total} positions, value has {S}")


def prepare_kernel_inputs(
    value: Tensor,
    value_spatial_shapes: SpatialShapes,
    value_level_start_index: Optional[Tensor],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Inputs as the compiled kernels (CUDA and Triton) take them: contiguous, one dtype, int64 shapes.

    Mixed dtypes (e.g. half ``value`` with float locations under autocast) are promoted to a
    common dtype so locations keep their precision; shapes / start indices move to value's
    device (start indices are derived from the shapes when None).
    """
    dtype = torch.promote_types(torch.promote_types(value.dtype, sampling_locations.dtype), attention_weights.dtype)
    shapes = torch.as_tensor(value_spatial_shapes, dtype=torch.long, device=value.device).contiguous()
    if value_level_start_index is None:
        starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    else:
        starts = torch.as_tensor(value_level_start_index, dtype=torch.long, device=value.device).contiguous()
    return (value.to(dtype).contiguous(), shapes, starts, sampling_locations.to(dtype).contiguous(),
            attention_weights.to(dtype).contiguous())


class MSDeformAttnKernelFunction(torch.autograd.Function):
    """Autograd wrapper of a compiled extension's ``forward`` / ``backward`` (the ``cpu`` and
    ``cuda`` backends): ``apply(extension, value, shapes, starts, locations, weights)`` with
    :func:`prepare_kernel_inputs`' inputs and ``extension`` a ``LazyExtension`` (loaded).
    Saves only the inputs; backward recomputes the bilinear taps."""

    @staticmethod
    def forward(ctx, extension, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
        module = extension.load()
        if module is None:
            raise RuntimeError(f"the multi-scale deformable attention {extension.label} extension is "
                               f"unavailable: {extension.reason}")
        output = module.forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        ctx.extension = extension
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        N, Lq, M, D = output.shape
        return output.view(N, Lq, M * D)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_locations, grad_weights = ctx.extension.load().backward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
            grad_output.contiguous(),
        )
        return None, grad_value, None, None, grad_locations, grad_weights
