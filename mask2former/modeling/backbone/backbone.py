"""Abstract ``Backbone``: a network that returns a dict of named feature maps."""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Dict

import torch
from torch import nn

from ...layers import ShapeSpec

__all__ = ["Backbone"]


class Backbone(nn.Module, metaclass=ABCMeta):
    """Base class of backbones; subclasses set ``_out_features``, strides and channels."""

    def __init__(self):
        super().__init__()

    @abstractmethod
    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(B, C, H, W) image batch -> {feature name: (B, C_i, H / s_i, W / s_i)}."""

    @property
    def size_divisibility(self) -> int:
        """Input sizes must be divisible by this (0: no constraint)."""
        return 0

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """{feature name: ShapeSpec(channels, stride)} for every output feature."""
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name],
                            stride=self._out_feature_strides[name])
            for name in self._out_features
        }
