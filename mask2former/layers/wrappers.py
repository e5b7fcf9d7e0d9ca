"""``Conv2d`` with optional norm and activation, as detectron2's wrapper."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Conv2d", "c2_xavier_fill", "c2_msra_fill"]


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2's "XavierFill" (uniform, fan-in, a=1) for ``module.weight``; zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def c2_msra_fill(module: nn.Module) -> None:
    """Caffe2's "MSRAFill" (normal, fan-out, ReLU gain) for ``module.weight``; zero bias."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that also applies ``norm`` then ``activation`` (both optional).

    The norm module is registered as the child ``norm``, so state_dict keys read
    ``<name>.weight`` / ``<name>.norm.weight`` exactly as in detectron2 checkpoints.
    """

    def __init__(self, *args, norm: Optional[nn.Module] = None,
                 activation: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x
