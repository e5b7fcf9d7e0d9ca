"""Multi-scale deformable attention (Deformable DETR): one op, several interchangeable backends.

``multi_scale_deformable_attention`` is the single entry point. It dispatches to a backend:

* ``pytorch`` -- always available; bilinear ``grid_sample`` (zeros padding,
  ``align_corners=False``), numerically the official ``ms_deform_attn_core_pytorch``;
* ``cuda`` / ``triton`` -- reserved names for compiled kernels, plugged in with
  :func:`register_ms_deform_attn_backend` (nothing in this file needs to change).

Which backend runs is chosen by :func:`set_ms_deform_attn_impl` (in code) or else by the
environment variable ``MASK2FORMER_MSDA_IMPL`` (one of ``auto``, ``pytorch``, ``cuda``,
``triton``; default ``auto``):

* ``auto`` picks the first registered, available backend that supports the inputs among
  cuda, triton, pytorch (logs its choice once);
* a backend named by ``set_ms_deform_attn_impl`` that is not registered / not available /
  cannot take the inputs falls back to ``pytorch`` with a one-time warning;
* a backend forced through ``MASK2FORMER_MSDA_IMPL`` that cannot run raises ``RuntimeError``;
* a name outside the list above raises ``ValueError`` either way.
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ENV_VAR",
    "IMPL_NAMES",
    "MSDABackend",
    "MSDeformAttn",
    "get_ms_deform_attn_impl",
    "multi_scale_deformable_attention",
    "ms_deform_attn_core_pytorch",
    "register_ms_deform_attn_backend",
    "resolve_ms_deform_attn_backend",
    "set_ms_deform_attn_impl",
]

logger = logging.getLogger(__name__)

ENV_VAR = "MASK2FORMER_MSDA_IMPL"
IMPL_NAMES: Tuple[str, ...] = ("auto", "pytorch", "cuda", "triton")
_AUTO_ORDER: Tuple[str, ...] = ("cuda", "triton", "pytorch")

SpatialShapes = Union[Tensor, Sequence[Sequence[int]]]


# --------------------------------------------------------------------------- pytorch path
def _shapes_as_list(value_spatial_shapes: SpatialShapes) -> List[Tuple[int, int]]:
    if isinstance(value_spatial_shapes, Tensor):
        value_spatial_shapes = value_spatial_shapes.tolist()
    return [(int(h), int(w)) for h, w in value_spatial_shapes]


def ms_deform_attn_core_pytorch(
    value: Tensor,
    value_spatial_shapes: SpatialShapes,
    value_level_start_index: Optional[Tensor],
    sampling_locations: Tensor,
    attention_weights: Tensor,
    im2col_step: int = 64,
) -> Tensor:
    """Pure-PyTorch multi-scale deformable attention (the ``pytorch`` backend).

    One ``grid_sample`` per level covers every batch element and head. Per level the
    P samples are weighted and summed, then levels are added, which matches the official
    single sum over L*P to float rounding (~1e-7) while skipping a (N*M, D, Lq, L*P) stack.
    ``value_level_start_index`` and ``im2col_step`` are unused (CUDA-kernel arguments).
    """
    N, S, M, D = value.shape
    _, Lq, _, L, P, _ = sampling_locations.shape
    shapes = _shapes_as_list(value_spatial_shapes)

    values = value.permute(0, 2, 3, 1)  # (N, M, D, S), a view
    grids = (2 * sampling_locations - 1).permute(3, 0, 2, 1, 4, 5).contiguous()  # (L, N, M, Lq, P, 2)
    weights = attention_weights.permute(3, 0, 2, 1, 4).reshape(L, N * M, 1, Lq, P)

    output: Optional[Tensor] = None
    start = 0
    for lvl, (H, W) in enumerate(shapes):
        value_l = values[..., start:start + H * W].reshape(N * M, D, H, W)
        start += H * W
        sampled = F.grid_sample(
            value_l, grids[lvl].flatten(0, 1), mode="bilinear", padding_mode="zeros",
            align_corners=False,
        )  # (N*M, D, Lq, P)
        contrib = (sampled * weights[lvl]).sum(-1)  # (N*M, D, Lq)
        output = contrib if output is None else output + contrib
    assert output is not None
    return output.view(N, M * D, Lq).transpose(1, 2).contiguous()  # (N, Lq, M*D)


# --------------------------------------------------------------------------- dispatch
@dataclass(frozen=True)
class MSDABackend:
    """An implementation of the op.

    ``forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
    im2col_step) -> (N, Lq, M*D)``; ``is_available()`` says whether it can run at all here
    (e.g. the extension compiled); ``supports(value)`` whether it takes these inputs
    (e.g. CUDA tensors only).
    """

    name: str
    forward: Callable[..., Tensor]
    is_available: Callable[[], bool] = lambda: True
    supports: Callable[[Tensor], bool] = lambda value: True


_BACKENDS: Dict[str, MSDABackend] = {
    "pytorch": MSDABackend("pytorch", ms_deform_attn_core_pytorch),
}
_impl_override: Optional[str] = None
_logged: Set[Tuple[str, str]] = set()


def register_ms_deform_attn_backend(backend: MSDABackend) -> None:
    """Add (or replace) the backend ``backend.name`` (``cuda`` or ``triton``)."""
    if backend.name not in IMPL_NAMES or backend.name == "auto":
        raise ValueError(
            f"backend name {backend.name!r} must be one of {[n for n in IMPL_NAMES if n != 'auto']}"
        )
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
    backend = _BACKENDS.get(name)
    if backend is None:
        return "not registered"
    if not backend.is_available():
        return "not available"
    if not backend.supports(value):
        return f"does not support {value.dtype} tensors on {value.device}"
    return None


def _log_once(requested: str, chosen: str, message: str, level: int) -> None:
    if (requested, chosen) not in _logged:
        _logged.add((requested, chosen))
        logger.log(level, message)


_compiled_backends_imported = False


def _import_compiled_backends() -> None:
    """Import the cuda / triton backend modules once; each registers itself (builds nothing)."""
    global _compiled_backends_imported
    if not _compiled_backends_imported:
        _compiled_backends_imported = True
        from . import ms_deform_attn_cuda, ms_deform_attn_triton  # noqa: F401


def resolve_ms_deform_attn_backend(value: Tensor) -> MSDABackend:
    """The backend that :func:`multi_scale_deformable_attention` uses for ``value``."""
    _import_compiled_backends()
    forced_by_env = _impl_override is None
    requested = get_ms_deform_attn_impl()
    if requested == "auto":
        reasons = []
        for name in _AUTO_ORDER:
            why = _why_not(name, value)
            if why is None:
                _log_once("auto", name, f"Multi-scale deformable attention: using the {name} backend "
                          f"({'; '.join(reasons) or 'first choice'})", logging.INFO)
                return _BACKENDS[name]
            reasons.append(f"{name}: {why}")
        raise RuntimeError(f"no deformable-attention backend can run: {reasons}")  # pytorch never fails

    why = _why_not(requested, value)
    if why is None:
        return _BACKENDS[requested]
    if forced_by_env:
        raise RuntimeError(
            f"{ENV_VAR}={requested!r} forces the {requested} deformable-attention backend, but it is "
            f"{why}; unset {ENV_VAR} or set it to 'auto' or 'pytorch'"
        )
    _log_once(requested, "pytorch", f"Multi-scale deformable attention: the {requested} backend is "
              f"{why}; falling back to the pytorch backend", logging.WARNING)
    return _BACKENDS["pytorch"]


def multi_scale_deformable_attention(
    value: Tensor,
    value_spatial_shapes: Tensor,
    value_level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    im2col_step: int = 64,
) -> Tensor:
    """Sample ``value`` at ``sampling_locations`` of every level and sum with ``attention_weights``.

    Args:
        value: (N, S, M, D), S = sum of H_l * W_l; M heads of D channels.
        value_spatial_shapes: (L, 2) long, (H_l, W_l) of each level.
        value_level_start_index: (L,) long, offset of each level in S.
        sampling_locations: (N, Lq, M, L, P, 2), (x, y) normalised to [0, 1] (outside is zero).
        attention_weights: (N, Lq, M, L, P).
        im2col_step: batch chunk of the CUDA kernel.
    Returns:
        (N, Lq, M * D).
    """
    _check_shapes(value, value_spatial_shapes, sampling_locations, attention_weights)
    backend = resolve_ms_deform_attn_backend(value)
    return backend.forward(value, value_spatial_shapes, value_level_start_index, sampling_locations,
                           attention_weights, im2col_step)


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


# --------------------------------------------------------------------------- module
def _is_power_of_2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module (Deformable DETR), official parameter names."""

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        """
        Args:
            d_model: hidden dimension; n_levels: number of feature levels;
            n_heads: attention heads; n_points: sampling points per head and level.
        """
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model must be divisible by n_heads, but got {d_model} and {n_heads}")
        if not _is_power_of_2(d_model // n_heads):
            warnings.warn("MSDeformAttn: a power-of-2 channel count per head is faster in the CUDA kernel.")
        self.im2col_step = 64
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points

        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Official init: offsets start on a ring of directions, one per head, scaled by point index."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid_init = torch.stack([thetas.cos(), thetas.sin()], -1)  # (M, 2)
        grid_init = grid_init / grid_init.abs().max(-1, keepdim=True)[0]
        grid_init = grid_init.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid_init = grid_init * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid_init.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, query: Tensor, reference_points: Tensor, input_flatten: Tensor,
                input_spatial_shapes: Tensor, input_level_start_index: Tensor,
                input_padding_mask: Optional[Tensor] = None) -> Tensor:
        """Attend from each query to P points per head around its reference point on every level.

        Args:
            query: (N, Lq, C).
            reference_points: (N, Lq, L, 2) in [0, 1] ((0, 0) top-left, padding included),
                or (N, Lq, L, 4) boxes (cx, cy, w, h).
            input_flatten: (N, S, C), the L levels flattened and concatenated.
            input_spatial_shapes: (L, 2) long (H_l, W_l); input_level_start_index: (L,) long.
            input_padding_mask: (N, S) bool, True on padding, or None.
        Returns:
            (N, Lq, C).
        """
        N, Len_q, _ = query.shape
        _, Len_in, _ = input_flatten.shape
        M, L, P = self.n_heads, self.n_levels, self.n_points

        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(N, Len_in, M, self.d_model // M)  # (N, S, M, D)
        sampling_offsets = self.sampling_offsets(query).view(N, Len_q, M, L, P, 2)
        attention_weights = self.attention_weights(query).view(N, Len_q, M, L * P)
        attention_weights = F.softmax(attention_weights, -1).view(N, Len_q, M, L, P)

        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: normalise by (W_l, H_l)
            offset_normalizer = torch.stack([input_spatial_shapes[..., 1], input_spatial_shapes[..., 0]], -1)
            sampling_locations = (reference_points[:, :, None, :, None, :]
                                  + sampling_offsets / offset_normalizer[None, None, None, :, None, :])
        elif reference_points.shape[-1] == 4:
            sampling_locations = (reference_points[:, :, None, :, None, :2]
                                  + sampling_offsets / P * reference_points[:, :, None, :, None, 2:] * 0.5)
        else:
            raise ValueError(
                f"last dim of reference_points must be 2 or 4, got {reference_points.shape[-1]}"
            )  # sampling_locations: (N, Lq, M, L, P, 2)
        output = multi_scale_deformable_attention(
            value, input_spatial_shapes, input_level_start_index, sampling_locations,
            attention_weights, self.im2col_step,
        )  # (N, Lq, C)
        return self.output_proj(output)
