"""The FPN lateral / output convolutions shared by every pixel decoder, in official key order.

Level ``i`` (1 = highest resolution) owns ``adapter_{i}`` (lateral 1x1 conv + norm) and
``layer_{i}`` (3x3 conv + norm + ReLU); FaPN adds ``align_{i}`` between them. Biases only
without a norm (``norm == ""``), weights ``c2_xavier_fill``-ed, as the official decoders.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch.nn.functional as F
from torch import nn

from ...layers import Conv2d, c2_xavier_fill, get_norm

__all__ = ["NormSpec", "add_fpn_convs", "lateral_conv", "output_conv"]

NormSpec = Optional[Union[str, Callable[[int], nn.Module]]]


def lateral_conv(in_channels: int, conv_dim: int, norm: NormSpec, *, fill: bool = True) -> Conv2d:
    """1x1 conv + norm (no activation)."""
    conv = Conv2d(in_channels, conv_dim, kernel_size=1, bias=norm == "", norm=get_norm(norm, conv_dim))
    if fill:
        c2_xavier_fill(conv)
    return conv


def output_conv(in_channels: int, conv_dim: int, norm: NormSpec, *,
                norm_module: Optional[nn.Module] = None, fill: bool = True) -> Conv2d:
    """3x3 conv + norm + ReLU (``norm_module``, if given, is used as the norm: it may be shared)."""
    conv = Conv2d(in_channels, conv_dim, kernel_size=3, stride=1, padding=1, bias=norm == "",
                  norm=norm_module if norm_module is not None else get_norm(norm, conv_dim),
                  activation=F.relu)
    if fill:
        c2_xavier_fill(conv)
    return conv


def add_fpn_convs(
    owner: nn.Module,
    feature_channels: Sequence[int],
    conv_dim: int,
    norm: NormSpec,
    *,
    lowest_without_lateral: bool,
    make_lateral: Optional[Callable[[int], nn.Module]] = None,
    make_align: Optional[Callable[[nn.Module], nn.Module]] = None,
    init_lateral_first: bool = True,
) -> Tuple[List[Optional[nn.Module]], List[Optional[nn.Module]], List[Conv2d]]:
    """Register the lateral / (align) / output convs of every level on ``owner``.

    Args:
        owner: the pixel decoder; gets ``adapter_{i}``, ``align_{i}``, ``layer_{i}``.
        feature_channels: input channels per level, highest resolution first.
        conv_dim: channels of every conv output.
        norm: norm of the convs (detectron2 name or factory).
        lowest_without_lateral: the last (lowest-resolution) level has only ``layer_{i}``,
            a 3x3 conv on the input itself (the FPN top); otherwise every level has a lateral.
        make_lateral: ``in_channels -> module`` replacing the 1x1 lateral conv (it initialises
            itself); default :func:`lateral_conv`.
        make_align: ``shared_norm -> module`` registered as ``align_{i}``; the output conv of
            that level then uses the same norm module (as the FaPN reference code).
        init_lateral_first: initialise the 1x1 lateral conv before building the level's output
            conv (official FPN / FaPN decoders), or after it (official MSDeformAttn decoder):
            only the random-number order of the initialisation differs, kept as official.
    Returns:
        (laterals, aligns, outputs) in top-down order (lowest resolution first); plain lists,
        the modules are registered on ``owner`` above. ``None`` where a level has no such module.
    """
    laterals: List[Optional[nn.Module]] = []
    aligns: List[Optional[nn.Module]] = []
    outputs: List[Conv2d] = []
    for idx, in_channels in enumerate(feature_channels):
        align: Optional[nn.Module] = None
        if lowest_without_lateral and idx == len(feature_channels) - 1:
            lateral: Optional[nn.Module] = None
            output = output_conv(in_channels, conv_dim, norm)
        else:
            lateral = make_lateral(in_channels) if make_lateral else lateral_conv(
                in_channels, conv_dim, norm, fill=init_lateral_first)
            shared_norm = get_norm(norm, conv_dim)
            if make_align is not None:
                align = make_align(shared_norm)
            output = output_conv(conv_dim, conv_dim, norm, norm_module=shared_norm, fill=False)
            if make_lateral is None and not init_lateral_first:
                c2_xavier_fill(lateral)
            c2_xavier_fill(output)
            owner.add_module(f"adapter_{idx + 1}", lateral)
            if align is not None:
                owner.add_module(f"align_{idx + 1}", align)
        owner.add_module(f"layer_{idx + 1}", output)
        laterals.append(lateral)
        aligns.append(align)
        outputs.append(output)
    return laterals[::-1], aligns[::-1], outputs[::-1]
