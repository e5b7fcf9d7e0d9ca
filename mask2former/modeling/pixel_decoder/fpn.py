"""FPN-style pixel decoders of MaskFormer / Mask2Former.

``BasePixelDecoder`` is a top-down FPN over all input levels; ``TransformerEncoderPixelDecoder``
runs a DETR transformer encoder on the lowest-resolution level first. Both return a
:class:`~.base.PixelDecoderOutput` from ``forward_features``, ``multi_scale_features`` being
the first 3 top-down outputs (lowest resolution first). Module names (``adapter_{i}``,
``layer_{i}``, ``mask_features``, ``input_proj``, ``transformer``) match the official checkpoints.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch.nn.functional as F
from torch import Tensor

from ...config.configurable import configurable
from ...layers import Conv2d, PositionEmbeddingSine, ShapeSpec, TransformerEncoderOnly, c2_xavier_fill
from ..build import PIXEL_DECODER_REGISTRY
from .base import PixelDecoder, PixelDecoderOutput
from .fpn_convs import NormSpec, add_fpn_convs, output_conv

__all__ = ["BasePixelDecoder", "TransformerEncoderPixelDecoder"]


@PIXEL_DECODER_REGISTRY.register()
class BasePixelDecoder(PixelDecoder):
    """Modified FPN: lateral 1x1 + nearest upsampling + 3x3 output conv, then a 3x3 mask conv."""

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, conv_dim: int, mask_dim: int,
                 norm: NormSpec = None):
        """
        Args:
            input_shape: channels / stride of each input feature (e.g. res2..res5).
            conv_dim: channels of the intermediate convs.
            mask_dim: channels of the output mask features.
            norm: norm of every conv except the mask conv (detectron2 name or factory).
        """
        super().__init__()
        shapes = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        self.in_features: List[str] = [k for k, _ in shapes]  # high to low resolution
        self.in_strides: List[int] = [v.stride for _, v in shapes]
        self.lateral_convs, _, self.output_convs = add_fpn_convs(
            self, [v.channels for _, v in shapes], conv_dim, norm, lowest_without_lateral=True)
        self.conv_dim = conv_dim

        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=3, stride=1, padding=1)
        c2_xavier_fill(self.mask_features)
        self.maskformer_num_feature_levels = 3  # always 3 scales for the transformer decoder

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
        }

    def _lowest_level(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """Lowest-resolution map -> (its FPN output, transformer encoder features or None)."""
        return self.output_convs[0](x), None

    def output_shape(self) -> PixelDecoderOutput:
        top_down = self.in_strides[::-1]  # lowest resolution first
        return PixelDecoderOutput(
            mask_features=ShapeSpec(channels=self.mask_dim, stride=top_down[-1]),
            transformer_encoder_features=None,
            multi_scale_features=[ShapeSpec(channels=self.conv_dim, stride=s)
                                  for s in top_down[:self.maskformer_num_feature_levels]],
        )

    def forward_features(self, features: Dict[str, Tensor]) -> PixelDecoderOutput:
        """Backbone features {name: (B, C_l, H_l, W_l)} -> (mask_features (B, mask_dim, H_0, W_0),
        transformer encoder features (B, conv_dim, H_L, W_L) or None,
        multi_scale_features: 3 maps (B, conv_dim, ., .), lowest resolution first)."""
        multi_scale_features: List[Tensor] = []
        encoder_features: Optional[Tensor] = None
        y: Optional[Tensor] = None
        for idx, name in enumerate(self.in_features[::-1]):
            x = features[name]
            lateral_conv = self.lateral_convs[idx]
            if lateral_conv is None:
                y, encoder_features = self._lowest_level(x)
            else:
                cur_fpn = lateral_conv(x)
                y = cur_fpn + F.interpolate(y, size=cur_fpn.shape[-2:], mode="nearest")
                y = self.output_convs[idx](y)
            if len(multi_scale_features) < self.maskformer_num_feature_levels:
                multi_scale_features.append(y)
        return PixelDecoderOutput(self.mask_features(y), encoder_features, multi_scale_features)


@PIXEL_DECODER_REGISTRY.register()
class TransformerEncoderPixelDecoder(BasePixelDecoder):
    """``BasePixelDecoder`` whose lowest level first goes through a DETR transformer encoder."""

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, transformer_dropout: float,
                 transformer_nheads: int, transformer_dim_feedforward: int,
                 transformer_enc_layers: int, transformer_pre_norm: bool, conv_dim: int,
                 mask_dim: int, norm: NormSpec = None):
        """
        Args:
            input_shape, conv_dim, mask_dim, norm: as :class:`BasePixelDecoder`.
            transformer_*: dropout, heads, FFN width, layer count and pre-norm of the encoder.
        """
        super().__init__(input_shape, conv_dim=conv_dim, mask_dim=mask_dim, norm=norm)
        shapes = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        in_channels = shapes[-1][1].channels

        self.input_proj = Conv2d(in_channels, conv_dim, kernel_size=1)
        c2_xavier_fill(self.input_proj)
        self.transformer = TransformerEncoderOnly(
            d_model=conv_dim,
            dropout=transformer_dropout,
            nhead=transformer_nheads,
            dim_feedforward=transformer_dim_feedforward,
            num_encoder_layers=transformer_enc_layers,
            normalize_before=transformer_pre_norm,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

        # the lowest level now reads the encoder output (conv_dim channels); re-registering it
        # last also reproduces the official state_dict order
        last = f"layer_{len(self.in_features)}"
        delattr(self, last)
        layer = output_conv(conv_dim, conv_dim, norm)
        self.add_module(last, layer)
        self.output_convs[0] = layer

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg, input_shape)
        ret["transformer_dropout"] = cfg.MODEL.MASK_FORMER.DROPOUT
        ret["transformer_nheads"] = cfg.MODEL.MASK_FORMER.NHEADS
        ret["transformer_dim_feedforward"] = cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD
        ret["transformer_enc_layers"] = cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS  # not ENC_LAYERS
        ret["transformer_pre_norm"] = cfg.MODEL.MASK_FORMER.PRE_NORM
        return ret

    def output_shape(self) -> PixelDecoderOutput:
        encoder = ShapeSpec(channels=self.conv_dim, stride=max(self.in_strides))
        return super().output_shape()._replace(transformer_encoder_features=encoder)

    def _lowest_level(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        pos = self.pe_layer(x)  # (B, conv_dim, H, W)
        encoded = self.transformer(self.input_proj(x), None, pos)  # (B, conv_dim, H, W)
        return self.output_convs[0](encoded), encoded
