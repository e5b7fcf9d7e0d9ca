"""Plain multi-layer perceptron (``layers.{i}`` linear layers with ReLU in between)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MLP"]


class MLP(nn.Module):
    """``num_layers`` Linear layers, ReLU between them (state_dict: ``layers.0.weight`` ...)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        self.num_layers = num_layers
        hidden = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(n, k) for n, k in zip([input_dim] + hidden, hidden + [output_dim])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x
