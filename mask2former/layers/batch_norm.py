"""Normalization layers: ``FrozenBatchNorm2d`` and ``get_norm`` (detectron2's norm names)."""
from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["FrozenBatchNorm2d", "GroupNorm", "get_norm"]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and affine parameters are fixed buffers.

    The four buffers (``weight``, ``bias``, ``running_mean``, ``running_var``) keep
    detectron2's names, so official checkpoints load unchanged.
    """

    _version = 3

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def scale_and_shift(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(C,) ``scale`` and ``shift`` with ``forward(x) = x * scale + shift`` per channel."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def fold_into_conv(self, weight: torch.Tensor, bias: Optional[torch.Tensor]
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weight (C, ...) and bias (C,) of one convolution that computes conv, then this norm."""
        scale, shift = self.scale_and_shift()
        folded_bias = shift if bias is None else bias * scale + shift
        return weight * scale.view(-1, *([1] * (weight.dim() - 1))), folded_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            # Folded scale / shift: cheaper and exactly what detectron2 computes in training.
            scale, bias = self.scale_and_shift()
            out_dtype = x.dtype
            return x * scale.view(1, -1, 1, 1).to(out_dtype) + bias.view(1, -1, 1, 1).to(out_dtype)
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias,
            training=False, eps=self.eps,
        )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            # Old checkpoints lack running statistics: use identity statistics.
            if prefix + "running_mean" not in state_dict:
                state_dict[prefix + "running_mean"] = torch.zeros_like(self.running_mean)
            if prefix + "running_var" not in state_dict:
                state_dict[prefix + "running_var"] = torch.ones_like(self.running_var)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def __repr__(self) -> str:
        return f"FrozenBatchNorm2d(num_features={self.num_features}, eps={self.eps})"

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Return ``module`` with every BatchNorm / SyncBatchNorm replaced by a frozen copy."""
        bn_types = (nn.BatchNorm2d, nn.SyncBatchNorm)
        if isinstance(module, bn_types):
            frozen = cls(module.num_features)
            if module.affine:
                frozen.weight.data = module.weight.data.clone().detach()
                frozen.bias.data = module.bias.data.clone().detach()
            frozen.running_mean.data = module.running_mean.data
            frozen.running_var.data = module.running_var.data
            frozen.eps = module.eps
            return frozen
        for name, child in module.named_children():
            new_child = cls.convert_frozen_batchnorm(child)
            if new_child is not child:
                module.add_module(name, new_child)
        return module


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters and state_dict keys) that stays accurate on channels-last
    CPU inputs.

    PyTorch's CPU kernel for channels-last inputs loses precision when a group's mean is large
    against its spread (error 3.9e-3 instead of 2.8e-6 for mean 30, std 1, against float64),
    which ``MODEL.CHANNELS_LAST`` would hand it. Such inputs are first centred by their group
    means (a shift group norm is invariant to; the channel means are one cheap reduction in that
    layout). Every other input takes ``nn.GroupNorm``'s path unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() == 4 and x.device.type == "cpu" and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            n, c = x.shape[:2]
            channel_means = x.mean(dim=(2, 3))  # (N, C)
            group_means = channel_means.view(n, self.num_groups, c // self.num_groups).mean(-1, keepdim=True)
            x = x - group_means.expand(n, self.num_groups, c // self.num_groups).reshape(n, c, 1, 1)
        return super().forward(x)


def get_norm(norm: Union[str, Callable[[int], nn.Module], None], out_channels: int):
    """Build a norm layer from a detectron2 name ("BN", "SyncBN", "FrozenBN", "GN", "LN", "")."""
    if norm is None:
        return None
    if isinstance(norm, str):
        if len(norm) == 0:
            return None
        factories = {
            "BN": nn.BatchNorm2d,
            "SyncBN": nn.SyncBatchNorm,
            "FrozenBN": FrozenBatchNorm2d,
            "GN": lambda channels: GroupNorm(32, channels),
            "nnSyncBN": nn.SyncBatchNorm,
            "LN": lambda channels: LayerNorm2d(channels),
        }
        if norm not in factories:
            raise ValueError(f"Unknown norm {norm!r}; expected one of {sorted(factories)} or ''")
        norm = factories[norm]
    return norm(out_channels)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of an (N, C, H, W) tensor."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]
