"""FaPN pixel decoders: a top-down FPN whose upsampled features are aligned by deformable convs.

FaPN (Huang et al., "FaPN: Feature-aligned Pyramid Network for Dense Image Prediction",
ICCV 2021) adds two modules to each top-down step of an FPN:

- the feature-alignment module (FAM, :class:`FeatureAlign`): the coarser map is upsampled
  (bilinear) to the lateral map's size; a 1x1 conv (``offset``) reads the concatenation
  ``[lateral, 2 * upsampled]`` and DCNv2's own 3x3 conv (``dcpack_L2.conv_offset_mask``) turns
  it into offsets and a modulation mask for a modulated deformable 3x3 conv with 8 deformable
  groups that resamples the *upsampled* map; the result goes through ReLU and is added to the
  lateral map;
- the feature-selection module (FSM, :class:`FeatureSelectionModule`): channel attention from
  global average pooling (1x1 conv, sigmoid), ``x + x * attention``, then a 1x1 projection,
  used in place of the lateral 1x1 conv.

``FaPNPixelDecoder`` (also registered as ``BasePixelFANDecoder``, the name of the published
MaskFormer + FaPN code) follows that code: FAM only, plain 1x1 laterals, submodules
``adapter_{i}``, ``align_{i}`` (``offset``, ``dcpack_L2``), ``layer_{i}``, ``mask_features``,
so its checkpoints load unchanged. ``MSFaPNPixelDecoder`` is the full paper version (FSM + FAM)
packaged for Mask2Former's multi-scale transformer decoder.

One deliberate difference from the reference code, in initialisation only: the deformable conv
starts as an exact identity (centre tap ``2 * I``, because the mask starts at sigmoid(0) = 0.5;
offsets start at 0 as in DCNv2), instead of DCNv2's random uniform weight. At start-up each
FAM therefore returns ``relu(bilinear_upsample(coarse)) + lateral`` — an FPN with bilinear
upsampling (the coarse maps come out of a ReLU, so the ReLU is a no-op there) — and learns the
alignment from that point, rather than starting from a random 3x3 conv on the top-down path.
Forward math and parameters are unchanged, so trained checkpoints behave exactly as in the
reference code. See ``docs/fapn.md``.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...config.configurable import configurable
from ...layers import Conv2d, ShapeSpec, c2_xavier_fill, get_norm
from ...layers.deform_conv import ModulatedDeformConvPack
from ..build import PIXEL_DECODER_REGISTRY
from .base import PixelDecoder, PixelDecoderOutput
from .fpn_convs import NormSpec, add_fpn_convs

__all__ = [
    "FeatureAlign", "FeatureSelectionModule", "FaPNPixelDecoder", "BasePixelFANDecoder",
    "MSFaPNPixelDecoder",
]


class FeatureSelectionModule(nn.Module):
    """FSM: ``conv(x + x * sigmoid(conv_atten(avgpool(x))))``.

    ``conv_atten`` (C_in -> C_in, 1x1, no bias, no norm, as the reference FaPN code) gives the
    channel attention; ``conv`` (C_in -> C_out, 1x1) with ``norm`` projects like an FPN lateral.
    """

    def __init__(self, in_channels: int, out_channels: int, *, norm: NormSpec = None):
        super().__init__()
        self.conv_atten = Conv2d(in_channels, in_channels, kernel_size=1, bias=False)
        self.conv = Conv2d(in_channels, out_channels, kernel_size=1, bias=norm == "",
                           norm=get_norm(norm, out_channels))
        c2_xavier_fill(self.conv_atten)
        c2_xavier_fill(self.conv)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        attention = torch.sigmoid(self.conv_atten(x.mean(dim=(2, 3), keepdim=True)))  # (B, C_in, 1, 1)
        return self.conv(x + x * attention)


class FeatureAlign(nn.Module):
    """FAM: resample the upsampled coarse map with a modulated deformable 3x3 conv, add the lateral.

    ``offset``: 1x1 conv (2C -> C, no bias, optional norm) on ``[lateral, 2 * upsampled]``;
    ``dcpack_L2``: :class:`ModulatedDeformConvPack` (C -> C, ``deformable_groups`` groups) whose
    ``conv_offset_mask`` reads that C-channel map. Initialised so that :meth:`align` returns the
    upsampled map exactly (see the module docstring).
    """

    def __init__(self, channels: int, *, norm: Optional[nn.Module] = None, deformable_groups: int = 8):
        """
        Args:
            channels: channels of both inputs and of the output.
            norm: norm module of the ``offset`` conv (a module, so a caller may share one, as
                the reference decoder shares it with the following output conv).
            deformable_groups: offset groups of the deformable conv (8 in FaPN).
        """
        super().__init__()
        self.offset = Conv2d(2 * channels, channels, kernel_size=1, bias=False, norm=norm)
        self.dcpack_L2 = ModulatedDeformConvPack(channels, channels, 3, padding=1,
                                                 deformable_groups=deformable_groups)
        c2_xavier_fill(self.offset)
        self.dcpack_L2.init_identity()

    def align(self, feat_up: Tensor, feat_lateral: Tensor) -> Tensor:
        """Upsampled coarse map (B, C, H, W) resampled at offsets predicted from both maps -> (B, C, H, W)."""
        offset_features = self.offset(torch.cat([feat_lateral, feat_up * 2], dim=1))  # (B, C, H, W)
        return self.dcpack_L2(feat_up, offset_features)

    def forward(self, feat_lateral: Tensor, feat_coarse: Tensor) -> Tensor:
        """Lateral (B, C, H, W) and coarser top-down map (B, C, h, w) -> (B, C, H, W)."""
        if feat_coarse.shape[-2:] != feat_lateral.shape[-2:]:
            feat_up = F.interpolate(feat_coarse, size=feat_lateral.shape[-2:], mode="bilinear",
                                    align_corners=False)
        else:
            feat_up = feat_coarse
        return F.relu(self.align(feat_up, feat_lateral)) + feat_lateral


@PIXEL_DECODER_REGISTRY.register()
class FaPNPixelDecoder(PixelDecoder):
    """MaskFormer's FPN pixel decoder with a FAM in every top-down step (the FaPN release)."""

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, conv_dim: int, mask_dim: int,
                 norm: NormSpec = None, use_fsm: bool = False, deformable_groups: int = 8,
                 mask_kernel_size: int = 3):
        """
        Args:
            input_shape: channels / stride of each input feature (e.g. res2..res5).
            conv_dim: channels of the intermediate convs (divisible by ``deformable_groups``).
            mask_dim: channels of the output mask features.
            norm: norm of every conv except the mask conv (detectron2 name or factory).
            use_fsm: lateral ``adapter_{i}`` is a :class:`FeatureSelectionModule` (full FaPN)
                instead of a 1x1 conv (the published MaskFormer + FaPN code).
            deformable_groups: offset groups of every FAM's deformable conv.
            mask_kernel_size: kernel of the ``mask_features`` conv (3 or 1).
        """
        super().__init__()
        if conv_dim % deformable_groups:
            raise ValueError(f"FaPN conv_dim={conv_dim} (MODEL.SEM_SEG_HEAD.CONVS_DIM) must be "
                             f"divisible by deformable_groups={deformable_groups}")
        if not input_shape:
            raise ValueError("FaPN pixel decoder got no input features "
                             "(check MODEL.SEM_SEG_HEAD.IN_FEATURES against the backbone outputs)")
        shapes = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        self.in_features: List[str] = [k for k, _ in shapes]  # high to low resolution
        self.in_strides: List[int] = [v.stride for _, v in shapes]
        self.conv_dim = conv_dim
        # As the reference code: the FAM's offset conv and the output conv of a level share one
        # norm module (identical values under both state_dict keys).
        self.lateral_convs, self.align_modules, self.output_convs = add_fpn_convs(
            self, [v.channels for _, v in shapes], conv_dim, norm, lowest_without_lateral=True,
            make_lateral=(lambda c: FeatureSelectionModule(c, conv_dim, norm=norm)) if use_fsm else None,
            make_align=lambda shared_norm: FeatureAlign(conv_dim, norm=shared_norm,
                                                        deformable_groups=deformable_groups),
        )

        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=mask_kernel_size, stride=1,
                                    padding=mask_kernel_size // 2)
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

    def _top_down(self, features: Dict[str, Tensor]) -> List[Tensor]:
        """Backbone features -> FPN outputs (B, conv_dim, H_l, W_l), lowest resolution first."""
        outputs: List[Tensor] = []
        for idx, name in enumerate(self.in_features[::-1]):
            x = features[name]
            lateral_conv = self.lateral_convs[idx]
            if lateral_conv is None:
                y = self.output_convs[idx](x)
            else:
                y = self.output_convs[idx](self.align_modules[idx](lateral_conv(x), y))
            outputs.append(y)
        return outputs

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
        None (no transformer encoder),
        multi_scale_features: the first 3 top-down outputs (B, conv_dim, ., .), lowest resolution first)."""
        outputs = self._top_down(features)
        return PixelDecoderOutput(self.mask_features(outputs[-1]), None,
                                  outputs[:self.maskformer_num_feature_levels])


@PIXEL_DECODER_REGISTRY.register()
class BasePixelFANDecoder(FaPNPixelDecoder):
    """:class:`FaPNPixelDecoder` under the name used by the published MaskFormer + FaPN configs."""


@PIXEL_DECODER_REGISTRY.register()
class MSFaPNPixelDecoder(FaPNPixelDecoder):
    """Full FaPN (FSM laterals + FAM) as a multi-scale pixel decoder for Mask2Former.

    ``forward_features`` returns the 1/32, 1/16, 1/8 top-down maps (for a res2..res5 input) as
    ``multi_scale_features`` for ``MultiScaleMaskedTransformerDecoder``, the lowest-resolution
    map also as the "transformer encoder" feature, and a 1x1-conv ``mask_features`` from the
    finest map (1x1, as Mask2Former's ``MSDeformAttnPixelDecoder``).
    """

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, conv_dim: int, mask_dim: int,
                 norm: NormSpec = None, use_fsm: bool = True, deformable_groups: int = 8,
                 mask_kernel_size: int = 1):
        """Arguments as :class:`FaPNPixelDecoder` (different defaults); needs >= 3 input levels."""
        if len(input_shape) < 3:
            raise ValueError(
                f"MSFaPNPixelDecoder needs at least 3 input features for the multi-scale "
                f"transformer decoder; got {sorted(input_shape)} (MODEL.SEM_SEG_HEAD.IN_FEATURES)"
            )
        super().__init__(input_shape, conv_dim=conv_dim, mask_dim=mask_dim, norm=norm,
                         use_fsm=use_fsm, deformable_groups=deformable_groups,
                         mask_kernel_size=mask_kernel_size)

    def output_shape(self) -> PixelDecoderOutput:
        encoder = ShapeSpec(channels=self.conv_dim, stride=max(self.in_strides))
        return super().output_shape()._replace(transformer_encoder_features=encoder)

    def forward_features(self, features: Dict[str, Tensor]) -> PixelDecoderOutput:
        """Backbone features {name: (B, C_l, H_l, W_l)} -> (mask_features (B, mask_dim, H_0, W_0),
        lowest-resolution output (B, conv_dim, H_L, W_L),
        multi_scale_features: 3 maps (B, conv_dim, ., .), lowest resolution first)."""
        outputs = self._top_down(features)
        return PixelDecoderOutput(self.mask_features(outputs[-1]), outputs[0],
                                  outputs[:self.maskformer_num_feature_levels])
