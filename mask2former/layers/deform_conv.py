"""Deformable convolutions (v1 and modulated v2) on ``torchvision.ops.deform_conv2d``.

Offsets follow the layout shared by detectron2, DCNv2 and torchvision: for each deformable
group ``g`` and kernel tap ``k = i * kw + j`` (row-major), channel ``2 * (g * kh * kw + k)`` holds
the vertical (dy) and the next channel the horizontal (dx) displacement, in input pixels. A
modulation mask has one channel per (group, tap). Samples outside the input read zero.

- :class:`DeformConv`: the op with its ``weight`` / optional ``bias`` / optional ``norm`` child;
  offsets (and mask) come from the caller.
- :class:`ModulatedDeformConvPack`: DCNv2's ``DCN`` module (``weight``, ``bias`` and a child
  ``conv_offset_mask``), which predicts its own offsets and mask — the parameter names of the
  DCNv2 package, so FaPN checkpoints load unchanged.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

__all__ = ["DeformConv", "ModulatedDeformConvPack", "deform_conv"]


def deform_conv(x: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor,
                bias: Optional[Tensor], *, stride: int = 1, padding: int = 0, dilation: int = 1,
                deformable_groups: int = 1) -> Tensor:
    """Deformable conv (v2 when ``mask`` is given) after checking the offset / mask widths.

    x: (B, C_in, H, W); offset: (B, 2*G*k*k, H', W'); mask: (B, G*k*k, H', W') or None;
    weight: (C_out, C_in / groups, k, k) -> (B, C_out, H', W').
    """
    taps = weight.shape[-2] * weight.shape[-1]
    if offset.shape[1] != 2 * deformable_groups * taps:
        raise ValueError(f"deformable conv offset has {offset.shape[1]} channels; expected "
                         f"2 * deformable_groups ({deformable_groups}) * k * k = "
                         f"{2 * deformable_groups * taps}")
    if mask is not None and mask.shape[1] != deformable_groups * taps:
        raise ValueError(f"deformable conv mask has {mask.shape[1]} channels; expected "
                         f"deformable_groups ({deformable_groups}) * k * k = {deformable_groups * taps}")
    return deform_conv2d(x, offset, weight, bias, stride=stride, padding=padding,
                         dilation=dilation, mask=mask)


class DeformConv(nn.Module):
    """Deformable conv (v1; v2 when a ``mask`` is given) with an optional norm after it.

    Parameters ``weight`` (C_out, C_in / groups, k, k), optional ``bias`` and child ``norm`` are
    named as detectron2's ``DeformConv`` / ``ModulatedDeformConv``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, deformable_groups: int = 1,
                 bias: bool = False, norm: Optional[nn.Module] = None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"DeformConv channels ({in_channels}, {out_channels}) "
                             f"must be divisible by groups={groups}")
        if in_channels % deformable_groups:
            raise ValueError(f"DeformConv in_channels={in_channels} must be divisible by "
                             f"deformable_groups={deformable_groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = kernel_size
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.groups = groups
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.norm = norm
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    def forward(self, x: Tensor, offset: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x: (B, C_in, H, W); offset: (B, 2*G*k*k, H', W'); mask: (B, G*k*k, H', W') or None
        -> (B, C_out, H', W')."""
        x = deform_conv(x, offset, mask, self.weight, self.bias, stride=self.stride,
                        padding=self.padding, dilation=self.dilation,
                        deformable_groups=self.deformable_groups)
        return x if self.norm is None else self.norm(x)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, deformable_groups={self.deformable_groups}, "
                f"bias={self.bias is not None}")


class ModulatedDeformConvPack(nn.Module):
    """Modulated deformable conv (DCNv2) that predicts its offsets and mask itself.

    ``conv_offset_mask`` (a k x k conv with bias, same stride / padding as the deformable conv)
    reads ``offset_input`` (default: ``x`` itself) and gives ``3 * G * k * k`` channels: the
    first two thirds are the offsets, the last third the mask logits (``sigmoid`` -> mask).
    It starts at zero, so at initialisation every offset is 0 and every mask value is 0.5.
    Initialisation otherwise as the DCNv2 package: ``weight`` ~ U(+-1/sqrt(C_in * k * k)),
    zero ``bias``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, dilation: int = 1, deformable_groups: int = 1,
                 offset_in_channels: Optional[int] = None, bias: bool = True):
        """
        Args:
            in_channels, out_channels, kernel_size, stride, padding, dilation, deformable_groups:
                as :class:`DeformConv` (no grouped weights, as DCNv2).
            offset_in_channels: channels of the tensor the offsets are predicted from
                (default ``in_channels``).
            bias: learnable bias of the deformable conv (DCNv2 always has one).
        """
        super().__init__()
        if in_channels % deformable_groups:
            raise ValueError(f"ModulatedDeformConvPack in_channels={in_channels} must be divisible "
                             f"by deformable_groups={deformable_groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = kernel_size
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.conv_offset_mask = nn.Conv2d(
            offset_in_channels or in_channels, 3 * deformable_groups * kernel_size * kernel_size,
            kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, bias=True,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DCNv2's initialisation (zero offsets, mask 0.5, uniform weight)."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size ** 2)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def init_identity(self) -> None:
        """Make the layer an exact identity at the current (zero) offset prediction.

        ``conv_offset_mask`` is reset to zero (offsets 0, mask sigmoid(0) = 0.5), so the centre
        tap carries weight ``1 / 0.5 = 2`` per channel and every other weight is 0: at zero
        offsets the output equals the input bit for bit (``0.5 * 2`` is exact in floating point).
        """
        if self.in_channels != self.out_channels:
            raise ValueError(f"identity init needs in_channels == out_channels; got "
                             f"{self.in_channels} -> {self.out_channels}")
        if self.stride != 1 or 2 * self.padding != self.dilation * (self.kernel_size - 1):
            raise ValueError("identity init needs stride 1 and 'same' padding")
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)
        mask_at_zero = torch.sigmoid(torch.zeros(())).item()  # 0.5
        centre = self.kernel_size // 2
        with torch.no_grad():
            self.weight.zero_()
            idx = torch.arange(self.out_channels)
            self.weight[idx, idx, centre, centre] = 1.0 / mask_at_zero
            if self.bias is not None:
                self.bias.zero_()

    def offset_and_mask(self, offset_input: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C_off, H, W) -> offsets (B, 2*G*k*k, H', W'), mask in (0, 1) (B, G*k*k, H', W')."""
        out = self.conv_offset_mask(offset_input)  # (B, 3*G*k*k, H', W')
        o1, o2, mask_logits = torch.chunk(out, 3, dim=1)
        return torch.cat((o1, o2), dim=1), torch.sigmoid(mask_logits)

    def forward(self, x: Tensor, offset_input: Optional[Tensor] = None) -> Tensor:
        """x: (B, C_in, H, W); offset_input: (B, C_off, H, W) or None (use ``x``) -> (B, C_out, H', W')."""
        offset, mask = self.offset_and_mask(x if offset_input is None else offset_input)
        return deform_conv(x, offset, mask, self.weight, self.bias, stride=self.stride,
                           padding=self.padding, dilation=self.dilation,
                           deformable_groups=self.deformable_groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"deformable_groups={self.deformable_groups}")
