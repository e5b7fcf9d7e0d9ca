"""Set-prediction loss of Video Mask2Former.

:class:`~mask2former.modeling.criterion.SetCriterion` with clip-level targets: each query
has one class for the clip (same class CE) and one mask per frame. The matched (query,
track) pairs come from :class:`VideoHungarianMatcher`; their masks are compared frame by
frame on importance-sampled points (each frame of each pair draws its own points), and the
BCE / dice of all ``M * T`` frame masks are summed and divided by the number of tracks M
(averaged over processes), as the official video criterion does.
"""
from __future__ import annotations

from typing import Dict

import torch

from .criterion import SetCriterion, Targets, _matched_target_masks, dice_loss, sigmoid_ce_loss
from .matcher import MatchIndices
from .point_sampling import calculate_uncertainty, get_uncertain_point_coords_with_randomness, point_sample
from .video_matcher import VideoHungarianMatcher

__all__ = ["VideoSetCriterion"]


class VideoSetCriterion(SetCriterion):
    """Hungarian matching of queries to tracks, class CE, point-sampled BCE + dice per frame.

    Targets: one dict per video with ``labels`` (N,) int64 and ``masks`` (N, T, H, W);
    outputs: ``pred_logits`` (B, Q, K+1), ``pred_masks`` (B, Q, T, h, w).
    """

    # The constructor and from_config are SetCriterion's; the matcher matches tracks.
    target_mask_layout = "(N, T, H, W)"
    matcher_class = VideoHungarianMatcher

    def loss_masks(
        self, outputs: Dict[str, torch.Tensor], targets: Targets, indices: MatchIndices, num_masks: float
    ) -> Dict[str, torch.Tensor]:
        """Sigmoid BCE + dice of the matched tracks' frame masks on importance-sampled points."""
        src_masks = outputs["pred_masks"][self._src_permutation_idx(indices)]  # (M, T, h, w)
        target_masks = _matched_target_masks(targets, indices).to(src_masks)  # (M, T, H, W)
        if src_masks.shape[1] != target_masks.shape[1]:
            raise ValueError(
                f"VideoSetCriterion: predictions have {src_masks.shape[1]} frames, targets "
                f"{target_masks.shape[1]}"
            )
        src_masks = src_masks.flatten(0, 1)[:, None]  # (M*T, 1, h, w)
        target_masks = target_masks.flatten(0, 1)[:, None]  # (M*T, 1, H, W)
        with torch.no_grad():
            point_coords = get_uncertain_point_coords_with_randomness(
                src_masks,
                calculate_uncertainty,
                self.num_points,
                self.oversample_ratio,
                self.importance_sample_ratio,
            )  # (M*T, P, 2)
            point_labels = point_sample(target_masks, point_coords, align_corners=False).squeeze(1)  # (M*T, P)
        point_logits = point_sample(src_masks, point_coords, align_corners=False).squeeze(1)  # (M*T, P)
        return {
            "loss_mask": sigmoid_ce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }
