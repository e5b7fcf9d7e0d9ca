"""FPN-style pixel decoders of MaskFormer / Mask2Former.

``BasePixelDecoder`` is a top-down FPN over all input levels; ``TransformerEncoderPixelDecoder``
runs a DETR transformer encoder on the lowest-resolution level first. Both return
``(mask_features, transformer_encoder_features, multi_scale_features)`` from
``forward_features``, ``multi_scale_features`` being the first 3 top-down outputs
(lowest resolution first). Module names (``adapter_{i}``, ``layer_{i}``, ``mask_features``,
``input_proj``, ``transformer``) match the official checkpoints.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch.nn.functional as F
from torch import Tensor, nn

from ...config.configurable import configurable
from ...layers import Conv2d, PositionEmbeddingSine, ShapeSpec, c2_xavier_fill, get_norm
from ..build import PIXEL_DECODER_REGISTRY
from ..transformer_decoder.transformer import TransformerEncoderOnly

__all__ = ["BasePixelDecoder", "TransformerEncoderPixelDecoder"]

logger = logging.getLogger(__name__)

NormSpec = Optional[Union[str, Callable[[int], nn.Module]]]


def _output_conv(in_channels: int, conv_dim: int, norm: NormSpec) -> Conv2d:
    """3x3 conv + norm + ReLU, bias only without norm (``norm == ""``), as official."""
    conv = Conv2d(in_channels, conv_dim, kernel_size=3, stride=1, padding=1, bias=norm == "",
                  norm=get_norm(norm, conv_dim), activation=F.relu)
    c2_xavier_fill(conv)
    return conv


def _lateral_conv(in_channels: int, conv_dim: int, norm: NormSpec) -> Conv2d:
    """1x1 conv + norm (no activation)."""
    conv = Conv2d(in_channels, conv_dim, kernel_size=1, bias=norm == "", norm=get_norm(norm, conv_dim))
    c2_xavier_fill(conv)
    return conv


@PIXEL_DECODER_REGISTRY.register()
class BasePixelDecoder(nn.Module):
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
        feature_channels = [v.channels for _, v in shapes]

        lateral_convs: List[Optional[Conv2d]] = []
        output_convs: List[Conv2d] = []
        for idx, in_channels in enumerate(feature_channels):
            if idx == len(feature_channels) - 1:  # lowest resolution: no lateral
                output_conv = _output_conv(in_channels, conv_dim, norm)
                self.add_module(f"layer_{idx + 1}", output_conv)
                lateral_convs.append(None)
            else:
                lateral_conv = _lateral_conv(in_channels, conv_dim, norm)
                output_conv = _output_conv(conv_dim, conv_dim, norm)
                self.add_module(f"adapter_{idx + 1}", lateral_conv)
                self.add_module(f"layer_{idx + 1}", output_conv)
                lateral_convs.append(lateral_conv)
            output_convs.append(output_conv)
        # top-down order (low to high resolution); plain lists, the modules are registered above
        self.lateral_convs = lateral_convs[::-1]
        self.output_convs = output_convs[::-1]

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

    def forward_features(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Optional[Tensor], List[Tensor]]:
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
        return self.mask_features(y), encoder_features, multi_scale_features

    def forward(self, features: Dict[str, Tensor], targets=None):
        logger.warning("Calling forward() may cause unpredicted behavior of PixelDecoder module.")
        return self.forward_features(features)


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
        output_conv = _output_conv(conv_dim, conv_dim, norm)
        self.add_module(last, output_conv)
        self.output_convs[0] = output_conv

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg, input_shape)
        ret["transformer_dropout"] = cfg.MODEL.MASK_FORMER.DROPOUT
        ret["transformer_nheads"] = cfg.MODEL.MASK_FORMER.NHEADS
        ret["transformer_dim_feedforward"] = cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD
        ret["transformer_enc_layers"] = cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS  # not ENC_LAYERS
        ret["transformer_pre_norm"] = cfg.MODEL.MASK_FORMER.PRE_NORM
        return ret

    def _lowest_level(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        pos = self.pe_layer(x)  # (B, conv_dim, H, W)
        encoded = self.transformer(self.input_proj(x), None, pos)  # (B, conv_dim, H, W)
        return self.output_convs[0](encoded), encoded
