"""Normalization layers (layers/batch_norm.py): GroupNorm on channels-last inputs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mask2former.layers import GroupNorm, get_norm


@pytest.mark.parametrize("shift", [0.0, 30.0])
def test_group_norm_is_accurate_in_channels_last(shift):
    """A large group mean against a unit spread: PyTorch's channels-last CPU kernel was off by ~4e-3
    there (torch 2.15, docs/performance.md); ours stays at float rounding."""
    g = torch.Generator().manual_seed(0)
    norm = GroupNorm(8, 64)
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.5, generator=g)
        norm.bias.normal_(0.0, 0.5, generator=g)
    x = torch.randn(2, 64, 40, 48, generator=g) + shift
    x_cl = x.contiguous(memory_format=torch.channels_last)
    exact = nn.functional.group_norm(x.double(), 8, norm.weight.double(), norm.bias.double(), norm.eps)
    with torch.no_grad():
        out = norm(x_cl)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert (out.double() - exact).abs().max() < 2e-5
    assert torch.equal(norm(x), nn.GroupNorm.forward(norm, x))  # NCHW: nn.GroupNorm's path, untouched


def test_gn_name_builds_the_accurate_group_norm_with_the_official_keys():
    norm = get_norm("GN", 64)
    assert isinstance(norm, GroupNorm) and isinstance(norm, nn.GroupNorm) and norm.num_groups == 32
    assert sorted(norm.state_dict()) == ["bias", "weight"]
    x = torch.randn(1, 64, 8, 8, generator=torch.Generator().manual_seed(0)) * 3 + 2
    grads = []
    for layout in (torch.contiguous_format, torch.channels_last):  # gradients through the centring too
        leaf = x.clone(memory_format=layout).requires_grad_()
        (norm(leaf) * torch.arange(64.0).view(1, 64, 1, 1)).sum().backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-5)
