"""Mask2Former's masked-attention decoder for video (Video Mask2Former).

The image decoder (:class:`MultiScaleMaskedTransformerDecoder`) with three changes:

* the memory of a feature level is the features of **all T frames** of a clip, one sequence
  of length ``T * h * w`` (frame-major), so a query attends to every frame at once;
* positions are 3-D: :class:`PositionEmbeddingSine3D` encodes (t, y, x);
* each query predicts one class for the clip and a mask **per frame**:
  ``pred_masks`` (B, Q, T, H/4, W/4); the masked attention of the next layer uses all
  T frames of that mask (a query whose mask covers nothing in the whole clip attends
  everywhere).

The backbone and pixel decoder see the frames as a batch of ``B * T`` images (video-major:
the T frames of video 0, then of video 1, ...). How many videos that batch holds follows
the official rule: ``B * T / num_frames`` in training, one video (of any length) in eval.
The state_dict equals the image decoder's (the 3-D encoding has no parameters).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F

from ...config.configurable import configurable
from ...layers import PositionEmbeddingSine3D
from ..build import TRANSFORMER_DECODER_REGISTRY
from .mask2former_transformer_decoder import MultiScaleMaskedTransformerDecoder, allowed_where_mask

__all__ = ["VideoMultiScaleMaskedTransformerDecoder", "video_masked_attention_allowed"]


def video_masked_attention_allowed(mask_logits: Tensor, size: Sequence[int]) -> Tensor:
    """Where each query may attend over a clip at one feature level.

    Args:
        mask_logits: (B, Q, T, H, W) per-frame mask logits.
        size: (h, w) of the feature level.
    Returns:
        (B, Q, T*h*w) bool, frame-major: True where ``sigmoid(bilinear resize) >= 0.5``; a
        query with no True position in any frame may attend everywhere.
    """
    bsz, num_queries, frames, height, width = mask_logits.shape
    with torch.no_grad():  # a hard mask: no gradient flows through it
        resized = F.interpolate(mask_logits.reshape(-1, 1, height, width), size=tuple(size),
                                mode="bilinear", align_corners=False)  # (B*Q*T, 1, h, w)
        return allowed_where_mask(resized.view(bsz, num_queries, frames, *size))  # (B, Q, T*h*w)


@TRANSFORMER_DECODER_REGISTRY.register()
class VideoMultiScaleMaskedTransformerDecoder(MultiScaleMaskedTransformerDecoder):
    """Video Mask2Former decoder: clip-level queries, masked attention over all frames."""

    @configurable
    def __init__(self, in_channels: int, mask_classification: bool = True, *, num_frames: int,
                 **kwargs):
        """
        Args:
            in_channels, mask_classification, **kwargs: as
                :class:`MultiScaleMaskedTransformerDecoder` (``num_classes``, ``hidden_dim``,
                ``num_queries``, ``nheads``, ``dim_feedforward``, ``dec_layers``,
                ``pre_norm``, ``mask_dim``, ``enforce_input_project``).
            num_frames: frames per training clip (``INPUT.SAMPLING_FRAME_NUM``); in training
                the ``B * T`` input maps hold ``B * T / num_frames`` videos.
        """
        super().__init__(in_channels, mask_classification, **kwargs)
        if num_frames < 1:
            raise ValueError(f"num_frames (INPUT.SAMPLING_FRAME_NUM) must be >= 1, got {num_frames}")
        self.num_frames = num_frames
        self.pe_layer = PositionEmbeddingSine3D(self.pe_layer.num_pos_feats, normalize=True)

    @classmethod
    def from_config(cls, cfg, in_channels: int, mask_classification: bool) -> Dict:
        ret = super().from_config(cfg, in_channels, mask_classification)
        ret["num_frames"] = cfg.INPUT.SAMPLING_FRAME_NUM
        return ret

    def _num_videos(self, batch_frames: int) -> int:
        if not self.training:
            return 1
        if batch_frames % self.num_frames:
            raise ValueError(
                f"{type(self).__name__}: {batch_frames} frames in the batch is not a multiple of "
                f"num_frames = {self.num_frames} (INPUT.SAMPLING_FRAME_NUM)"
            )
        return batch_frames // self.num_frames

    def _flatten_clip_levels(self, x: Sequence[Tensor], bs: int
                             ) -> Tuple[List[Tensor], List[Tensor], List[torch.Size]]:
        """Per level: (B, T*hw, C) projected features + level embedding, (B, T*hw, C) 3-D
        positions (frame-major), and (h, w)."""
        src, pos, sizes = [], [], []
        for i, feat in enumerate(x):  # (B*T, C_in, h, w)
            h, w = feat.shape[-2:]
            sizes.append(feat.shape[-2:])
            t = feat.shape[0] // bs
            pe = self.pe_layer(feat.view(bs, t, -1, h, w))  # (B, T, C, h, w)
            pos.append(pe.permute(0, 1, 3, 4, 2).reshape(bs, t * h * w, -1))  # (B, T*hw, C)
            proj = self.input_proj[i](feat).flatten(2) + self.level_embed.weight[i][None, :, None]
            proj = proj.view(bs, t, -1, h * w).transpose(2, 3)  # (B, T, hw, C)
            src.append(proj.reshape(bs, t * h * w, -1))  # (B, T*hw, C)
        return src, pos, sizes

    def forward(self, x: Sequence[Tensor], mask_features: Tensor,
                mask: Optional[Tensor] = None) -> Dict:
        """Decode clip-level queries against three feature levels of all frames.

        Args:
            x: 3 maps (B*T, C_in, h_l, w_l), lowest resolution first, video-major.
            mask_features: (B*T, mask_dim, H, W) per-pixel embeddings.
            mask: ignored (no padding mask, as in the official decoder).
        Returns:
            ``pred_logits`` (B, Q, K+1), ``pred_masks`` (B, Q, T, H, W) of the last layer, and
            ``aux_outputs``: the same for the learnable-query prediction and every layer but
            the last.
        """
        del mask
        if len(x) != self.num_feature_levels:
            raise ValueError(
                f"{type(self).__name__} expects {self.num_feature_levels} feature levels, got {len(x)}"
            )
        bt, c_m, h_m, w_m = mask_features.shape
        bs = self._num_videos(bt)
        mask_features = mask_features.view(bs, bt // bs, c_m, h_m, w_m)  # (B, T, C, H, W)
        src, pos, sizes = self._flatten_clip_levels(x, bs)
        return self._decode(src, pos, sizes, mask_features)

    def forward_prediction_heads(
        self, output: Tensor, mask_features: Tensor, attn_mask_target_size: Optional[Sequence[int]]
    ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Class and per-frame mask predictions from (B, Q, C) queries.

        Args:
            output: (B, Q, C) queries; mask_features: (B, T, mask_dim, H, W).
        Returns:
            class logits (B, Q, K+1), mask logits (B, Q, T, H, W), and the (B, Q, T*h*w)
            bool "may attend" mask at ``attn_mask_target_size`` (None if that is None).
        """
        decoder_output = self.decoder_norm(output)  # (B, Q, C)
        outputs_class = self.class_embed(decoder_output)  # (B, Q, K+1)
        mask_embed = self.mask_embed(decoder_output)  # (B, Q, mask_dim)
        outputs_mask = torch.einsum("bqc,btchw->bqthw", mask_embed, mask_features)  # (B, Q, T, H, W)
        allowed = None
        if attn_mask_target_size is not None:
            allowed = video_masked_attention_allowed(outputs_mask, attn_mask_target_size)
        return outputs_class, outputs_mask, allowed

    @staticmethod
    def resize_mask_features(mask_features: Tensor, size: Tuple[int, int]) -> Tensor:
        """(B, T, mask_dim, H, W) -> (B, T, mask_dim, h, w), per frame."""
        b, t, c, _, _ = mask_features.shape
        resized = F.interpolate(mask_features.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
        return resized.view(b, t, c, *size)

    def attention_mask_at(self, output: Tensor, features: Tensor) -> Tensor:
        """(B, Q, T*h*w) "may attend" mask from (B, Q, C) queries and (B, T, mask_dim, h, w) features."""
        mask_embed = self.mask_embed(self.decoder_norm(output))  # (B, Q, mask_dim)
        return allowed_where_mask(torch.einsum("bqc,btchw->bqthw", mask_embed, features))  # (B, Q, T*h*w)
