"""Small pieces every transformer of the package shares (DETR's helpers, under public names)."""
from __future__ import annotations

import copy
from typing import Callable, Optional

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["get_activation_fn", "get_clones", "with_pos_embed", "xavier_init_matrices"]


def get_clones(module: nn.Module, n: int) -> nn.ModuleList:
    """``n`` independent deep copies of ``module``."""
    return nn.ModuleList([copy.deepcopy(module) for _ in range(n)])


def get_activation_fn(activation: str) -> Callable[[Tensor], Tensor]:
    """``"relu"`` / ``"gelu"`` / ``"glu"`` -> the functional form."""
    fns = {"relu": F.relu, "gelu": F.gelu, "glu": F.glu}
    if activation not in fns:
        raise ValueError(f"activation should be one of {sorted(fns)}, got {activation!r}")
    return fns[activation]


def with_pos_embed(tensor: Tensor, pos: Optional[Tensor]) -> Tensor:
    """``tensor + pos`` (positions are added to queries / keys, not values), or ``tensor``."""
    return tensor if pos is None else tensor + pos


def xavier_init_matrices(module: nn.Module) -> None:
    """Xavier-uniform every parameter of ``module`` with more than one dimension (DETR's init)."""
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
