"""``Conv2d`` with optional norm and activation, as detectron2's wrapper."""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .batch_norm import FrozenBatchNorm2d
from ..utils.env import capturing_graph

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

    Without gradients, a ``FrozenBatchNorm2d`` is folded into the convolution's weight and
    bias (one pass over the output less; the same result up to float rounding, ~1e-6
    relative). The folded pair is cached until a parameter or statistic changes.
    """

    def __init__(self, *args, norm: Optional[nn.Module] = None,
                 activation: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation
        self._folded: Optional[Tuple[tuple, torch.Tensor, torch.Tensor]] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias, norm = self.weight, self.bias, self.norm
        if isinstance(norm, FrozenBatchNorm2d) and not torch.is_grad_enabled():
            weight, bias = self._folded_frozen_norm()
            norm = None
        x = F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        if norm is not None:
            x = norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def _folded_frozen_norm(self) -> Tuple[torch.Tensor, torch.Tensor]:
        if capturing_graph():
            return self.norm.fold_into_conv(self.weight, self.bias)  # inside the captured graph
        tensors = [t for t in (self.weight, self.bias, self.norm.weight, self.norm.bias,
                               self.norm.running_mean, self.norm.running_var) if t is not None]
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)
        if self._folded is None or self._folded[0] != key:
            self._folded = (key, *self.norm.fold_into_conv(self.weight, self.bias))
        return self._folded[1], self._folded[2]
