"""DETR transformer (decoder side; the encoder is tested in tests/layers/): torch.nn equivalents,
positional encodings, stacking, official keys."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mask2former.modeling.transformer_decoder.transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoderOnly,
)

D, H, FF = 16, 4, 32


def _randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module


@pytest.mark.parametrize("pre_norm", [False, True])
def test_decoder_layer_matches_torch_without_pos(pre_norm):
    ours = _randomize(TransformerDecoderLayer(D, H, FF, dropout=0.0, normalize_before=pre_norm)).eval()
    theirs = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, norm_first=pre_norm).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    tgt, memory = torch.randn(5, 2, D), torch.randn(9, 2, D)
    with torch.no_grad():
        torch.testing.assert_close(ours(tgt, memory), theirs(tgt, memory), atol=1e-5, rtol=0)


def test_positional_encodings_go_to_queries_and_keys_only():
    layer = _randomize(TransformerDecoderLayer(D, H, FF, dropout=0.0)).eval()
    tgt, memory = torch.randn(5, 2, D), torch.randn(9, 2, D)
    query_pos, pos = torch.randn(5, 2, D), torch.randn(9, 2, D)
    with torch.no_grad():
        out = layer(tgt, memory, pos=pos, query_pos=query_pos)
        q = tgt + query_pos
        x = layer.norm1(tgt + layer.self_attn(q, q, tgt)[0])
        x = layer.norm2(x + layer.multihead_attn(x + query_pos, memory + pos, memory)[0])
        x = layer.norm3(x + layer.linear2(torch.relu(layer.linear1(x))))
    torch.testing.assert_close(out, x)


def test_transformer_shapes_and_intermediate_outputs():
    torch.manual_seed(0)
    kwargs = dict(d_model=D, nhead=H, num_encoder_layers=1, num_decoder_layers=3, dim_feedforward=FF,
                  dropout=0.0)
    deep = Transformer(**kwargs, return_intermediate_dec=True).eval()
    last_only = Transformer(**kwargs, return_intermediate_dec=False).eval()
    last_only.load_state_dict(deep.state_dict())
    src, pos = torch.randn(2, D, 3, 5), torch.randn(2, D, 3, 5)
    query = torch.randn(6, D)
    mask = torch.zeros(2, 3, 5, dtype=torch.bool)
    mask[1, :, 4:] = True
    with torch.no_grad():
        hs, memory = deep(src, mask, query, pos)
        hs_last, memory2 = last_only(src, mask, query, pos)
    assert hs.shape == (3, 2, 6, D) and memory.shape == (2, D, 3, 5)
    assert hs_last.shape == (1, 2, 6, D)
    torch.testing.assert_close(hs[-1], hs_last[0])
    torch.testing.assert_close(memory, memory2)
    assert not torch.allclose(hs[0], hs[1])
    # each intermediate output is that layer's output passed through the shared final norm
    with torch.no_grad():
        tgt = torch.zeros(6, 2, D)
        mem = memory.flatten(2).permute(2, 0, 1)
        qpos = query.unsqueeze(1).repeat(1, 2, 1)
        for i, layer in enumerate(deep.decoder.layers):
            tgt = layer(tgt, mem, memory_key_padding_mask=mask.flatten(1),
                        pos=pos.flatten(2).permute(2, 0, 1), query_pos=qpos)
            torch.testing.assert_close(hs[i], deep.decoder.norm(tgt).transpose(0, 1))


def test_decoder_without_norm_returns_raw_outputs():
    layer = TransformerDecoderLayer(D, H, FF, dropout=0.0)
    dec = TransformerDecoder(layer, 2, norm=None, return_intermediate=True).eval()
    out = dec(torch.randn(4, 1, D), torch.randn(6, 1, D))
    assert out.shape == (2, 4, 1, D)


def test_encoder_only_matches_transformer_encoder():
    torch.manual_seed(0)
    full = Transformer(D, H, 2, 1, FF, dropout=0.0, normalize_before=True).eval()
    enc = TransformerEncoderOnly(D, H, 2, FF, dropout=0.0, normalize_before=True).eval()
    enc.encoder.load_state_dict(full.encoder.state_dict(), strict=True)
    src, pos = torch.randn(2, D, 3, 4), torch.randn(2, D, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(enc(src, None, pos), full(src, None, torch.randn(5, D), pos)[1])


def test_keys_match_official_maskformer_predictor(reference_dir):
    path = reference_dir / "official_keys" / "maskformer" / "coco-panoptic__maskformer_panoptic_R50_bs64_554k.txt"
    prefix = "sem_seg_head.predictor.transformer."
    official = [(k[len(prefix):], tuple(int(s) for s in shape.split(",")))
                for k, shape, _ in (line.split("\t") for line in path.read_text().splitlines())
                if k.startswith(prefix)]
    model = Transformer(d_model=256, nhead=8, num_encoder_layers=0, num_decoder_layers=6,
                        dim_feedforward=2048, return_intermediate_dec=True)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == official
