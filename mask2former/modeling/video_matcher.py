"""Hungarian matching for video: one query to one object track of a clip.

Same costs as :class:`~mask2former.modeling.matcher.HungarianMatcher` (``-p(class)``,
sigmoid BCE and dice), with the mask costs summed over the whole clip: the same
``num_points`` random points are read in every frame, so a (query, track) pair is compared
on ``T * num_points`` values. Targets are a list (one per video) of
``{"labels": (N,) long, "masks": (N, T, H, W)}``; predictions ``pred_masks`` are
(B, Q, T, h, w).
"""
from __future__ import annotations

from typing import Tuple

import torch

from .matcher import HungarianMatcher, batch_dice_cost, batch_sigmoid_ce_cost
from .point_sampling import point_sample

__all__ = ["VideoHungarianMatcher"]


class VideoHungarianMatcher(HungarianMatcher):
    """Assigns clip-level queries to object tracks (mask costs over all frames)."""

    def _mask_costs(
        self, out_mask: torch.Tensor, tgt_mask: torch.Tensor, pad_hw: Tuple[int, int]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mask and dice costs (Q, N) of one video: out_mask (Q, T, h, w), tgt_mask (N, T, H, W)."""
        if out_mask.dim() != 4 or tgt_mask.dim() != 4 or out_mask.shape[1] != tgt_mask.shape[1]:
            raise ValueError(
                "VideoHungarianMatcher: needs pred_masks (Q, T, h, w) and target masks (N, T, H, W) "
                f"with the same T, got {tuple(out_mask.shape)} and {tuple(tgt_mask.shape)}"
            )
        tgt_mask = tgt_mask.to(out_mask)
        # One set of points for every prediction, target and frame of the video; the frames
        # are the channels that point_sample reads.
        point_coords = torch.rand(1, self.num_points, 2, device=out_mask.device)
        tgt_points = point_sample(
            tgt_mask, point_coords.repeat(tgt_mask.shape[0], 1, 1), align_corners=False
        ).flatten(1)  # (N, T*P)
        out_points = point_sample(
            out_mask, point_coords.repeat(out_mask.shape[0], 1, 1), align_corners=False
        ).flatten(1)  # (Q, T*P)
        with torch.autocast(device_type=out_mask.device.type, enabled=False):
            out_points = out_points.float()
            tgt_points = tgt_points.float()
            return batch_sigmoid_ce_cost(out_points, tgt_points), batch_dice_cost(out_points, tgt_points)
