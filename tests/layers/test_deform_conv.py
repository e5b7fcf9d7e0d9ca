"""Deformable convs: DCNv2 math and offset layout, identity init, gradients, bad input."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mask2former.layers.deform_conv import DeformConv, ModulatedDeformConvPack


def _bilinear_zero_padded(img: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """DCNv2's sampler: img (B, C, H, W) at fractional (py, px) (B, h, w); corners outside read 0."""
    B, C, H, W = img.shape
    y0, x0 = py.floor(), px.floor()
    out = img.new_zeros(B, C, *py.shape[1:])
    for dy in (0, 1):
        for dx in (0, 1):
            yy, xx = y0 + dy, x0 + dx
            weight = (1 - (py - yy).abs()) * (1 - (px - xx).abs())  # (B, h, w)
            valid = (yy >= 0) & (yy <= H - 1) & (xx >= 0) & (xx <= W - 1)
            idx = (yy.clamp(0, H - 1) * W + xx.clamp(0, W - 1)).long().flatten(1)  # (B, h*w)
            vals = img.flatten(2).gather(2, idx[:, None].expand(B, C, idx.shape[1])).view_as(out)
            out += vals * (weight * valid)[:, None]
    return out


def _reference_modulated_deform_conv(x, offset, mask, weight, bias, padding: int, groups: int):
    """Direct loop over deformable groups and kernel taps, as DCNv2's im2col kernel (stride 1)."""
    B, C, H, W = x.shape
    c_out, _, kh, kw = weight.shape
    taps = kh * kw
    h_out, w_out = H + 2 * padding - kh + 1, W + 2 * padding - kw + 1
    ys, xs = torch.meshgrid(torch.arange(h_out, dtype=x.dtype), torch.arange(w_out, dtype=x.dtype),
                            indexing="ij")
    cols = x.new_zeros(B, C, taps, h_out, w_out)
    per_group = C // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                k = i * kw + j
                dy, dx = offset[:, 2 * (g * taps + k)], offset[:, 2 * (g * taps + k) + 1]
                sampled = _bilinear_zero_padded(x[:, g * per_group:(g + 1) * per_group],
                                                ys - padding + i + dy, xs - padding + j + dx)
                cols[:, g * per_group:(g + 1) * per_group, k] = sampled * mask[:, g * taps + k, None]
    out = torch.einsum("bckhw,ock->bohw", cols, weight.reshape(c_out, C, taps))
    return out + bias.view(1, -1, 1, 1)


def test_modulated_pack_matches_dcnv2_reference_math():
    torch.manual_seed(0)
    layer = ModulatedDeformConvPack(4, 6, 3, padding=1, deformable_groups=2, offset_in_channels=5)
    with torch.no_grad():
        layer.conv_offset_mask.weight.normal_(0, 0.3)  # offsets of a few pixels, some off-image
        layer.conv_offset_mask.bias.normal_(0, 0.5)
        layer.bias.normal_()
    x = torch.randn(2, 4, 7, 9, dtype=torch.float64)
    offset_input = torch.randn(2, 5, 7, 9, dtype=torch.float64)
    layer = layer.double()

    raw = layer.conv_offset_mask(offset_input)  # DCNv2's DCN: chunk(3) -> o1, o2, mask logits
    o1, o2, logits = raw.chunk(3, dim=1)
    offset, mask = torch.cat([o1, o2], 1), logits.sigmoid()
    assert offset.abs().max() > 2  # the test really samples away from the grid and off-image
    expected = _reference_modulated_deform_conv(x, offset, mask, layer.weight, layer.bias, 1, 2)
    torch.testing.assert_close(layer(x, offset_input), expected, atol=1e-10, rtol=1e-10)


def test_deform_conv_zero_offsets_is_conv2d_with_norm():
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(2, 8)
    layer = DeformConv(4, 8, 3, stride=2, padding=2, dilation=2, bias=True, norm=norm)
    x = torch.randn(1, 4, 11, 10)
    out_hw = F.conv2d(x, layer.weight, stride=2, padding=2, dilation=2).shape[-2:]
    offset = torch.zeros(1, 18, *out_hw)
    expected = norm(F.conv2d(x, layer.weight, layer.bias, stride=2, padding=2, dilation=2))
    torch.testing.assert_close(layer(x, offset), expected, atol=1e-5, rtol=1e-5)


def test_identity_init_returns_input_exactly_and_learns_offsets():
    torch.manual_seed(0)
    layer = ModulatedDeformConvPack(16, 16, 3, padding=1, deformable_groups=8)
    layer.init_identity()
    x = torch.randn(2, 16, 6, 5)
    out = layer(x, torch.randn(2, 16, 6, 5))  # offsets are predicted as 0 whatever the input
    assert torch.equal(out, x)

    (out * torch.randn_like(out)).sum().backward()
    grad = layer.conv_offset_mask.weight.grad
    n = 2 * 8 * 9  # offset channels, then mask channels
    assert grad[:n].abs().sum() > 0 and grad[n:].abs().sum() > 0


def test_bad_shapes_raise_clear_errors():
    layer = DeformConv(4, 4, 3, padding=1, deformable_groups=2)
    with pytest.raises(ValueError, match="offset has 18 channels; expected .* 36"):
        layer(torch.zeros(1, 4, 5, 5), torch.zeros(1, 18, 5, 5))
    with pytest.raises(ValueError, match="divisible by deformable_groups=3"):
        ModulatedDeformConvPack(4, 4, 3, padding=1, deformable_groups=3)
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        ModulatedDeformConvPack(4, 8, 3, padding=1).init_identity()
