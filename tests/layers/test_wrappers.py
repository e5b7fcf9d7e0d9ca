"""Conv2d with a FrozenBatchNorm2d: folded into the convolution when no gradient is needed."""
from __future__ import annotations

import pytest
import torch

from mask2former.layers import Conv2d, FrozenBatchNorm2d


def _frozen_conv(bias: bool):
    torch.manual_seed(0)
    conv = Conv2d(4, 6, 3, padding=1, bias=bias, norm=FrozenBatchNorm2d(6), activation=torch.relu)
    for buf, (lo, hi) in zip((conv.norm.weight, conv.norm.bias, conv.norm.running_mean, conv.norm.running_var),
                             ((0.5, 2), (-1, 1), (-1, 1), (0.5, 2))):
        buf.uniform_(lo, hi)
    return conv


@pytest.mark.parametrize("bias", [False, True])
def test_conv_with_frozen_batchnorm_is_folded_without_gradients(bias):
    conv = _frozen_conv(bias)
    x = torch.randn(2, 4, 9, 11)
    unfolded = conv(x)  # with gradients: conv, then the norm
    by_hand = torch.relu((torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
                          - conv.norm.running_mean.view(1, -1, 1, 1))
                         / (conv.norm.running_var.view(1, -1, 1, 1) + conv.norm.eps).sqrt()
                         * conv.norm.weight.view(1, -1, 1, 1) + conv.norm.bias.view(1, -1, 1, 1))
    with torch.no_grad():
        folded = conv(x)
        cached = conv._folded
        assert conv(x) is not None and conv._folded is cached  # reused while nothing changes
        conv.norm.running_mean.add_(0.5)  # a new statistic invalidates the folded weights
        shifted = conv(x)
        assert conv._folded is not cached
    torch.testing.assert_close(folded, unfolded.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded, by_hand.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shifted, conv(x).detach(), atol=1e-5, rtol=1e-5)
