"""The pixel-decoder contract: declared output shapes match what forward_features returns."""
from __future__ import annotations

import logging
from typing import Dict

import pytest
import torch

from mask2former.layers import ShapeSpec
from mask2former.modeling.pixel_decoder.base import PixelDecoder, PixelDecoderOutput, predictor_input
from mask2former.modeling.pixel_decoder.fapn import FaPNPixelDecoder, MSFaPNPixelDecoder
from mask2former.modeling.pixel_decoder.fpn import BasePixelDecoder, TransformerEncoderPixelDecoder
from mask2former.modeling.pixel_decoder.msdeformattn import MSDeformAttnPixelDecoder

SHAPES = {f"res{i + 2}": ShapeSpec(channels=c, stride=4 * 2 ** i) for i, c in enumerate((8, 16, 24, 32))}
TRANSFORMER = dict(transformer_dropout=0.0, transformer_nheads=2, transformer_dim_feedforward=16,
                   transformer_enc_layers=1)
DECODERS = {
    "BasePixelDecoder": lambda: BasePixelDecoder(SHAPES, conv_dim=32, mask_dim=8, norm="GN"),
    "TransformerEncoderPixelDecoder": lambda: TransformerEncoderPixelDecoder(
        SHAPES, conv_dim=32, mask_dim=8, norm="GN", transformer_pre_norm=False, **TRANSFORMER),
    "MSDeformAttnPixelDecoder": lambda: MSDeformAttnPixelDecoder(
        SHAPES, conv_dim=32, mask_dim=8, norm="GN", transformer_in_features=["res3", "res4", "res5"],
        common_stride=4, **TRANSFORMER),
    "FaPNPixelDecoder": lambda: FaPNPixelDecoder(SHAPES, conv_dim=32, mask_dim=8, norm="GN"),
    "MSFaPNPixelDecoder": lambda: MSFaPNPixelDecoder(SHAPES, conv_dim=32, mask_dim=8, norm="GN"),
}
HAS_ENCODER = {"TransformerEncoderPixelDecoder", "MSDeformAttnPixelDecoder", "MSFaPNPixelDecoder"}


def _features(size: int = 64) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(2, s.channels, size // s.stride, size // s.stride, generator=g)
            for k, s in SHAPES.items()}


def _declared(shape: ShapeSpec, tensor: torch.Tensor, size: int = 64) -> None:
    assert tensor.shape[1] == shape.channels
    assert tensor.shape[-1] * shape.stride == size and tensor.shape[-2] * shape.stride == size


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_output_shape_matches_forward_features(name: str) -> None:
    torch.manual_seed(0)
    decoder = DECODERS[name]().eval()
    assert isinstance(decoder, PixelDecoder)
    shapes = decoder.output_shape()
    with torch.no_grad():
        out = decoder.forward_features(_features())
    assert isinstance(out, PixelDecoderOutput) and isinstance(shapes, PixelDecoderOutput)
    _declared(shapes.mask_features, out.mask_features)
    assert shapes.mask_features == ShapeSpec(channels=8, stride=4)
    assert (out.transformer_encoder_features is not None) == (name in HAS_ENCODER)
    assert (shapes.transformer_encoder_features is not None) == (name in HAS_ENCODER)
    if name in HAS_ENCODER:
        _declared(shapes.transformer_encoder_features, out.transformer_encoder_features)
        assert shapes.transformer_encoder_features.stride == 32
    assert [s.stride for s in shapes.multi_scale_features] == [32, 16, 8]
    assert len(out.multi_scale_features) == 3
    for shape, tensor in zip(shapes.multi_scale_features, out.multi_scale_features):
        _declared(shape, tensor)


def test_forward_warns_once_and_returns_forward_features(caplog) -> None:
    decoder = DECODERS["BasePixelDecoder"]().eval()
    features = _features()
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        out = decoder(features)
        expected = decoder.forward_features(features)
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "unpredicted behavior" in caplog.records[0].getMessage()
    torch.testing.assert_close(out.mask_features, expected.mask_features)


def test_predictor_input_picks_the_named_output() -> None:
    out = PixelDecoderOutput("mask", None, ["low", "mid", "high"])
    backbone = {"res5": "r5"}
    assert predictor_input("pixel_embedding", out, backbone) == "mask"
    assert predictor_input("multi_scale_pixel_decoder", out, backbone) == ["low", "mid", "high"]
    assert predictor_input("res5", out, backbone) == "r5"
    with pytest.raises(ValueError, match="transformer encoder"):
        predictor_input("transformer_encoder", out, backbone)
    with pytest.raises(KeyError, match="res6"):
        predictor_input("res6", out, backbone)
