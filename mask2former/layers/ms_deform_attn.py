"""The multi-scale deformable attention module (Deformable DETR), official parameter names.

The op itself (:func:`multi_scale_deformable_attention`) and its backends live in
``ms_deform_attn_dispatch`` / ``ms_deform_attn_{pytorch,cuda,triton}``; their public names are
re-exported here.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import Tensor, nn

from .ms_deform_attn_dispatch import (
    ENV_VAR,
    IMPL_NAMES,
    MSDABackend,
    get_ms_deform_attn_impl,
    multi_scale_deformable_attention,
    register_ms_deform_attn_backend,
    resolve_ms_deform_attn_backend,
    set_ms_deform_attn_impl,
)
from .ms_deform_attn_pytorch import ms_deform_attn_core_pytorch

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
    "softmax_short_last_dim",
]


# --------------------------------------------------------------------------- module
def softmax_short_last_dim(x: Tensor) -> Tensor:
    """``softmax(x, -1)`` as exp / sum, for a short last dim (L * P attention weights, e.g. 12).

    On CPU, ATen's softmax over such a dim runs ~5x slower, forward and backward, than these few
    element-wise passes; results agree to float rounding. The max is detached: softmax does not
    depend on it, so its gradient is exactly zero. Other devices use ``softmax`` (one fused kernel)."""
    if x.device.type != "cpu":
        return x.softmax(-1)
    e = (x - x.amax(-1, keepdim=True).detach()).exp()
    return e / e.sum(-1, keepdim=True)


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
            input_spatial_shapes: (L, 2) long (H_l, W_l), or L Python pairs (for export);
                input_level_start_index: (L,) long (unused by the pytorch backend).
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
        attention_weights = softmax_short_last_dim(attention_weights).view(N, Len_q, M, L, P)

        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: normalise by (W_l, H_l)
            if isinstance(input_spatial_shapes, Tensor):
                offset_normalizer = torch.stack([input_spatial_shapes[..., 1], input_spatial_shapes[..., 0]], -1)
            else:  # Python (H_l, W_l) pairs, as torch.export traces them (possibly symbolic)
                one = sampling_offsets.new_ones(())
                offset_normalizer = torch.stack([torch.stack([one * w, one * h]) for h, w in input_spatial_shapes])
            # reference + offsets / (W_l, H_l) in one pass over (N, Lq, M, L*P*2), the divisors and
            # reference points laid out along that contiguous last dim (only M is broadcast): the
            # same numbers as the 6-D broadcast, which ran ~10x slower on CPU
            divisor = offset_normalizer.to(sampling_offsets.dtype)[:, None, :].expand(L, P, 2).reshape(L * P * 2)
            base = reference_points[:, :, None, :, None, :].expand(N, Len_q, 1, L, P, 2).reshape(N, Len_q, 1, L * P * 2)
            sampling_locations = torch.addcdiv(base, sampling_offsets.reshape(N, Len_q, M, L * P * 2),
                                               divisor).view(N, Len_q, M, L, P, 2)
        elif reference_points.shape[-1] == 4:
            sampling_locations = (reference_points[:, :, None, :, None, :2]
                                  + sampling_offsets / P * reference_points[:, :, None, :, None, 2:] * 0.5)
        else:
            raise ValueError(
                f"last dim of reference_points must be 2 or 4, got {reference_points.shape[-1]}"
            )  # sampling_locations: (N, Lq, M, L, P, 2)
        output = multi_scale_deformable_attention(
            value, input_spatial_shapes, input_level_start_index, sampling_locations,
            attention_weights,
        )  # (N, Lq, C)
        return self.output_proj(output)
