"""Mask2Former's pixel decoder: a deformable-attention encoder over 3 scales plus FPN levels.

The encoder (Deformable DETR's, encoder only) mixes the low-resolution levels (by default
res3..res5, 1/8..1/32); plain FPN steps then add the higher-resolution levels down to
``common_stride`` (res2 at 1/4), whose output gives the per-pixel mask features.
Module names match the official checkpoints (``input_proj.{i}.{0,1}``,
``transformer.level_embed``, ``transformer.encoder.layers.{i}.self_attn.*``, ``adapter_1``, ...).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from ...config.configurable import configurable
from ...layers import (
    Conv2d, GroupNorm, PositionEmbeddingSine, ShapeSpec, c2_xavier_fill, get_activation_fn, get_clones,
    xavier_init_matrices,
)
from ...layers.ms_deform_attn import MSDeformAttn
from ..build import PIXEL_DECODER_REGISTRY
from .base import PixelDecoder, PixelDecoderOutput
from .fpn_convs import NormSpec, add_fpn_convs

__all__ = [
    "MSDeformAttnPixelDecoder",
    "MSDeformAttnTransformerEncoderOnly",
    "MSDeformAttnTransformerEncoder",
    "MSDeformAttnTransformerEncoderLayer",
]


class MSDeformAttnTransformerEncoderLayer(nn.Module):
    """Deformable self-attention + FFN, post-norm."""

    def __init__(self, d_model: int = 256, d_ffn: int = 1024, dropout: float = 0.1,
                 activation: str = "relu", n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)

        self.linear1 = nn.Linear(d_model, d_ffn)
        self.activation = get_activation_fn(activation)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward_ffn(self, src: Tensor) -> Tensor:
        src2 = self.linear2(self.dropout2(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout3(src2))

    def forward(self, src: Tensor, pos: Optional[Tensor], reference_points: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor,
                padding_mask: Optional[Tensor] = None) -> Tensor:
        """(N, S, C) tokens of all levels, (N, S, C) pos, (N, S, L, 2) reference points -> (N, S, C)."""
        query = src if pos is None else src + pos
        src2 = self.self_attn(query, reference_points, src, spatial_shapes, level_start_index, padding_mask)
        src = self.norm1(src + self.dropout1(src2))
        return self.forward_ffn(src)


class MSDeformAttnTransformerEncoder(nn.Module):
    """``num_layers`` copies of the encoder layer; every token is a query at its own pixel centre."""

    def __init__(self, encoder_layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = get_clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        # [project] MODEL.SEM_SEG_HEAD.CHECKPOINT: recompute each layer in backward (training)
        self.checkpoint = False

    @staticmethod
    def get_reference_points(spatial_shapes: Sequence[Tuple[int, int]], valid_ratios: Tensor,
                             device: torch.device) -> Tensor:
        """Pixel centres of every level, normalised by each level's valid size.

        Args: spatial_shapes: L pairs (H_l, W_l); valid_ratios: (N, L, 2) valid (w, h) fractions.
        Returns: (N, S, L, 2) (x, y) reference points, S = sum of H_l * W_l.
        """
        reference_points_list = []
        for lvl, (H, W) in enumerate(spatial_shapes):
            # arange + 0.5 equals the official linspace(0.5, H - 0.5, H) exactly, and exports
            # with a symbolic H (linspace's step count would be pinned to a constant)
            ref_y, ref_x = torch.meshgrid(
                torch.arange(H, dtype=torch.float32, device=device) + 0.5,
                torch.arange(W, dtype=torch.float32, device=device) + 0.5,
                indexing="ij",
            )
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * H)  # (N, H*W)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * W)
            reference_points_list.append(torch.stack((ref_x, ref_y), -1))
        reference_points = torch.cat(reference_points_list, 1)  # (N, S, 2)
        return reference_points[:, :, None] * valid_ratios[:, None]  # (N, S, L, 2)

    def forward(self, src: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                valid_ratios: Tensor, pos: Optional[Tensor] = None,
                padding_mask: Optional[Tensor] = None) -> Tensor:
        """(N, S, C) -> (N, S, C)."""
        shapes = spatial_shapes.tolist() if isinstance(spatial_shapes, Tensor) else spatial_shapes
        reference_points = self.get_reference_points(shapes, valid_ratios, src.device)
        output = src
        recompute = self.checkpoint and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if recompute:  # keeps only each layer's input; dropout masks are replayed
                output = activation_checkpoint(layer, output, pos, reference_points, spatial_shapes,
                                               level_start_index, padding_mask, use_reentrant=False)
            else:
                output = layer(output, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return output


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    """Deformable DETR's encoder over a list of feature maps (with a learned level embedding)."""

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6,
                 dim_feedforward: int = 1024, dropout: float = 0.1, activation: str = "relu",
                 num_feature_levels: int = 4, enc_n_points: int = 4):
        super().__init__()
        self.d_model = d_model
        self.nhead = nhead
        encoder_layer = MSDeformAttnTransformerEncoderLayer(
            d_model, dim_feedforward, dropout, activation, num_feature_levels, nhead, enc_n_points
        )
        self.encoder = MSDeformAttnTransformerEncoder(encoder_layer, num_encoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        xavier_init_matrices(self)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def get_valid_ratio(mask: Tensor) -> Tensor:
        """(N, H, W) bool padding mask -> (N, 2) valid (w, h) fractions."""
        _, H, W = mask.shape
        valid_H = torch.sum(~mask[:, :, 0], 1)
        valid_W = torch.sum(~mask[:, 0, :], 1)
        return torch.stack([valid_W.float() / W, valid_H.float() / H], -1)

    def forward(self, srcs: List[Tensor], pos_embeds: List[Tensor],
                masks: Optional[List[Tensor]] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """Encode L maps (N, C, H_l, W_l) with their position encodings.

        ``masks`` (N, H_l, W_l) bool, True on padding, default none (as the official decoder).
        Returns: memory (N, S, C), spatial_shapes (L, 2) long, level_start_index (L,) long.
        """
        bs = srcs[0].shape[0]
        device = srcs[0].device
        shapes = [tuple(src.shape[-2:]) for src in srcs]
        src_flatten = torch.cat([src.flatten(2).transpose(1, 2) for src in srcs], 1)  # (N, S, C)
        lvl_pos_embed_flatten = torch.cat(
            [pos.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
             for lvl, pos in enumerate(pos_embeds)], 1)  # (N, S, C)
        if torch.compiler.is_exporting():
            # torch.export cannot read sizes back out of a tensor: keep them Python (symbolic) ints
            spatial_shapes, level_start_index = shapes, None
        else:
            spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=device)
            level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        if masks is None:
            # no padding: valid ratios are exactly 1 and masking the values is a no-op
            mask_flatten = None
            valid_ratios = src_flatten.new_ones(bs, len(srcs), 2)
        else:
            mask_flatten = torch.cat([m.flatten(1) for m in masks], 1)
            valid_ratios = torch.stack([self.get_valid_ratio(m) for m in masks], 1)  # (N, L, 2)

        memory = self.encoder(src_flatten, spatial_shapes, level_start_index, valid_ratios,
                              lvl_pos_embed_flatten, mask_flatten)
        return memory, spatial_shapes, level_start_index


@PIXEL_DECODER_REGISTRY.register()
class MSDeformAttnPixelDecoder(PixelDecoder):
    """Deformable-attention encoder on the ``transformer_in_features`` + FPN down to ``common_stride``."""

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, transformer_dropout: float,
                 transformer_nheads: int, transformer_dim_feedforward: int,
                 transformer_enc_layers: int, conv_dim: int, mask_dim: int,
                 norm: NormSpec = None,
                 transformer_in_features: List[str], common_stride: int, checkpoint: bool = False):
        """
        Args:
            input_shape: channels / stride of every input feature (e.g. res2..res5).
            transformer_dropout / _nheads / _dim_feedforward / _enc_layers: deformable encoder.
            conv_dim: channels of the encoder and FPN convs; mask_dim: mask feature channels.
            norm: norm of the FPN convs.
            transformer_in_features: features fed to the encoder (e.g. res3, res4, res5).
            common_stride: stride of the mask features; FPN levels are added down to it.
            checkpoint: activation checkpointing of the encoder layers in training (less
                memory, one more forward of the encoder in backward).
        """
        super().__init__()
        missing = [f for f in transformer_in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES {missing} are not among the pixel "
                f"decoder inputs {sorted(input_shape)}"
            )
        shapes = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        self.in_features = [k for k, _ in shapes]  # high to low resolution
        self.feature_strides = [v.stride for _, v in shapes]
        self.feature_channels = [v.channels for _, v in shapes]

        encoder_shapes = [(k, v) for k, v in shapes if k in transformer_in_features]
        self.transformer_in_features = [k for k, _ in encoder_shapes]  # high to low resolution
        encoder_channels = [v.channels for _, v in encoder_shapes]
        self.transformer_feature_strides = [v.stride for _, v in encoder_shapes]
        self.transformer_num_feature_levels = len(self.transformer_in_features)

        # one 1x1 conv + GroupNorm per encoder level, low to high resolution
        self.input_proj = nn.ModuleList([
            nn.Sequential(nn.Conv2d(in_channels, conv_dim, kernel_size=1), GroupNorm(32, conv_dim))
            for in_channels in encoder_channels[::-1]
        ])
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)

        self.transformer = MSDeformAttnTransformerEncoderOnly(
            d_model=conv_dim,
            dropout=transformer_dropout,
            nhead=transformer_nheads,
            dim_feedforward=transformer_dim_feedforward,
            num_encoder_layers=transformer_enc_layers,
            num_feature_levels=self.transformer_num_feature_levels,
        )
        self.transformer.encoder.checkpoint = checkpoint
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1, stride=1, padding=0)
        c2_xavier_fill(self.mask_features)

        self.maskformer_num_feature_levels = 3  # always 3 scales for the transformer decoder
        self.common_stride = common_stride

        # extra FPN levels from the encoder's finest stride down to common_stride
        stride = min(self.transformer_feature_strides)
        self.num_fpn_levels = int(math.log2(stride) - math.log2(self.common_stride))

        self.conv_dim = conv_dim
        self.lateral_convs, _, self.output_convs = add_fpn_convs(
            self, self.feature_channels[:self.num_fpn_levels], conv_dim, norm, lowest_without_lateral=False,
            init_lateral_first=False)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
            "transformer_dropout": cfg.MODEL.MASK_FORMER.DROPOUT,
            # official quirks: heads from MASK_FORMER.NHEADS (not DEFORMABLE_..._N_HEADS), 4
            # points (not ..._N_POINTS), FFN width not from MASK_FORMER.DIM_FEEDFORWARD (the
            # official code hard-codes 1024, the default of the [project] key used here)
            "transformer_nheads": cfg.MODEL.MASK_FORMER.NHEADS,
            "transformer_dim_feedforward": head.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD,
            "transformer_enc_layers": head.TRANSFORMER_ENC_LAYERS,
            "transformer_in_features": head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES,
            "common_stride": head.COMMON_STRIDE,
            "checkpoint": head.CHECKPOINT,
        }

    def output_shape(self) -> PixelDecoderOutput:
        # top-down strides: the encoder levels, then the FPN levels (lowest resolution first)
        strides = self.transformer_feature_strides[::-1] + self.feature_strides[:self.num_fpn_levels][::-1]
        return PixelDecoderOutput(
            mask_features=ShapeSpec(channels=self.mask_dim, stride=strides[-1]),
            transformer_encoder_features=ShapeSpec(channels=self.conv_dim, stride=strides[0]),
            multi_scale_features=[ShapeSpec(channels=self.conv_dim, stride=s)
                                  for s in strides[:self.maskformer_num_feature_levels]],
        )

    def autocast_regions(self) -> List[nn.Module]:
        """The parts that ``MODEL.PRECISION`` runs under autocast one by one: ``forward_features``
        turns float16 autocast off around the whole decoder (as the official decoder), so reduced
        precision is re-enabled per encoder layer and per convolution."""
        regions: List[nn.Module] = []
        for name, child in self.named_children():
            if name == "transformer":
                regions.extend(child.encoder.layers)
            elif isinstance(child, nn.ModuleList):  # never called itself: its members are
                regions.extend(child)
            else:
                regions.append(child)
        return regions

    def forward_features(self, features: Dict[str, Tensor]) -> PixelDecoderOutput:
        """Backbone features {name: (B, C_l, H_l, W_l)} -> (mask_features (B, mask_dim, H/4, W/4),
        encoder output of the lowest level (B, conv_dim, H/32, W/32),
        multi_scale_features: 3 maps (B, conv_dim, ., .), lowest resolution first)."""
        device_type = features[self.in_features[0]].device.type
        if torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.bfloat16:
            # bfloat16 autocast (SOLVER.AMP bfloat16) stays on: our deformable-attention kernels
            # take half types and bfloat16 has float32's range (shapes training step 5 % faster)
            return self._forward_features(features)
        # float16: autocast off, as in the official decoder (its deformable attention had no half
        # kernel; float16 activations of the encoder could overflow)
        with torch.autocast(device_type=device_type, enabled=False):
            return self._forward_features(features)

    def _forward_features(self, features: Dict[str, Tensor]) -> PixelDecoderOutput:
        srcs, pos = [], []
        for idx, name in enumerate(self.transformer_in_features[::-1]):  # low to high resolution
            x = features[name].float()
            srcs.append(self.input_proj[idx](x))  # (B, conv_dim, H_l, W_l)
            pos.append(self.pe_layer(x))

        memory, spatial_shapes, _ = self.transformer(srcs, pos)  # (B, S, conv_dim)
        bs = memory.shape[0]
        shapes = [tuple(src.shape[-2:]) for src in srcs]
        out = [  # contiguous NCHW: interpolation and convolutions of channels-last views copy
            z.transpose(1, 2).reshape(bs, -1, h, w).contiguous()  # (B, conv_dim, H_l, W_l)
            for z, (h, w) in zip(memory.split([h * w for h, w in shapes], dim=1), shapes)
        ]

        for idx, name in enumerate(self.in_features[:self.num_fpn_levels][::-1]):
            x = features[name].float()
            cur_fpn = self.lateral_convs[idx](x)
            y = cur_fpn + F.interpolate(out[-1], size=cur_fpn.shape[-2:], mode="bilinear", align_corners=False)
            out.append(self.output_convs[idx](y))

        multi_scale_features = out[:self.maskformer_num_feature_levels]
        return PixelDecoderOutput(self.mask_features(out[-1]), out[0], multi_scale_features)
