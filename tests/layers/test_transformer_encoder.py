"""DETR's transformer encoder (layers/transformer_encoder.py) against torch.nn's."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mask2former.layers import TransformerEncoderLayer

D, H, FF = 16, 4, 32


def _randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module


@pytest.mark.parametrize("pre_norm", [False, True])
def test_encoder_layer_matches_torch_without_pos(pre_norm):
    ours = _randomize(TransformerEncoderLayer(D, H, FF, dropout=0.0, normalize_before=pre_norm)).eval()
    theirs = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, norm_first=pre_norm).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)  # same parameter names
    src = torch.randn(7, 2, D)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    with torch.no_grad():
        torch.testing.assert_close(ours(src, src_key_padding_mask=pad),
                                   theirs(src, src_key_padding_mask=pad), atol=1e-5, rtol=0)
