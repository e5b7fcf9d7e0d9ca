"""Shared transformer helpers (layers/transformer_utils.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mask2former.layers import get_activation_fn, get_clones, with_pos_embed, xavier_init_matrices


def test_activation_names():
    assert get_activation_fn("gelu") is torch.nn.functional.gelu
    with pytest.raises(ValueError, match="swish"):
        get_activation_fn("swish")


def test_get_clones_are_independent_deep_copies():
    layer = nn.Linear(3, 2)
    clones = get_clones(layer, 3)
    assert isinstance(clones, nn.ModuleList) and len(clones) == 3
    with torch.no_grad():
        clones[0].weight.fill_(7.0)
    assert not torch.equal(clones[1].weight, clones[0].weight)
    torch.testing.assert_close(clones[1].weight, layer.weight)
    assert clones[1].weight.data_ptr() != layer.weight.data_ptr()


def test_with_pos_embed_adds_or_passes_through():
    x, pos = torch.ones(2, 3), torch.arange(6.0).view(2, 3)
    assert with_pos_embed(x, None) is x
    torch.testing.assert_close(with_pos_embed(x, pos), x + pos)


def test_xavier_init_touches_matrices_only():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(40, 60), nn.LayerNorm(60))
    bias, ln_weight = module[0].bias.clone(), module[1].weight.clone()
    xavier_init_matrices(module)
    bound = (6.0 / (40 + 60)) ** 0.5  # xavier-uniform limit
    weight = module[0].weight
    assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound
    assert torch.equal(module[0].bias, bias) and torch.equal(module[1].weight, ln_weight)
