"""The ``pytorch`` backend of multi-scale deformable attention: ``ms_deform_attn_core_pytorch``.

Always available, on any device and dtype; differentiable through ``grid_sample``. The
dispatcher (``ms_deform_attn_dispatch``) loads this module by name.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch.nn.functional as F
from torch import Tensor

from .ms_deform_attn_dispatch import MSDABackend

__all__ = ["BACKEND", "ms_deform_attn_core_pytorch"]

SpatialShapes = Union[Tensor, Sequence[Sequence[int]]]


def _shapes_as_list(value_spatial_shapes: SpatialShapes) -> List[Tuple[int, int]]:
    if isinstance(value_spatial_shapes, Tensor):
        return [(int(h), int(w)) for h, w in value_spatial_shapes.tolist()]
    # Python sizes stay as given: int() would pin torch.export's symbolic sizes to constants
    return [(h, w) for h, w in value_spatial_shapes]


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

    Export-friendly: the loop runs over the L levels (a fixed count), each level's size
    is a Python (or torch.export symbolic) int, every op is ``grid_sample`` (ONNX opset >= 16)
    or plain tensor arithmetic; give ``value_spatial_shapes`` as Python pairs when tracing.
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


BACKEND = MSDABackend("pytorch", ms_deform_attn_core_pytorch)
