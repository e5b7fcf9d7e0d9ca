"""Hungarian matching between predicted masks (queries) and ground-truth segments.

Two variants, as in the official code:

* :class:`HungarianMatcher` (Mask2Former): mask costs on ``num_points`` uniformly random
  points shared by all predictions and targets of an image (sigmoid BCE + dice).
* :class:`HungarianMatcherV1` (MaskFormer v1): mask costs on full masks at the prediction's
  resolution (targets padded to the batch's largest mask and nearest-downsampled;
  sigmoid focal + dice).

The class cost is ``-p(target class)`` (softmax over K+1 logits). Targets are a list (one per
image) of ``{"labels": (N,) long, "masks": (N, H, W) bool/float}``.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn import functional as F

from ..config import configurable
from .point_sampling import point_sample

__all__ = [
    "HungarianMatcher",
    "HungarianMatcherV1",
    "batch_dice_cost",
    "batch_sigmoid_ce_cost",
    "batch_sigmoid_focal_cost",
]

MatchIndices = List[Tuple[torch.Tensor, torch.Tensor]]


def batch_dice_cost(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise dice loss: inputs (N, P) logits, targets (M, P) in {0, 1} -> (N, M)."""
    inputs = inputs.sigmoid().flatten(1)
    numerator = 2 * torch.einsum("nc,mc->nm", inputs, targets)
    denominator = inputs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def batch_sigmoid_ce_cost(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise mean sigmoid BCE: inputs (N, P) logits, targets (M, P) -> (N, M)."""
    hw = inputs.shape[1]
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    loss = torch.einsum("nc,mc->nm", pos, targets) + torch.einsum("nc,mc->nm", neg, 1 - targets)
    return loss / hw


def batch_sigmoid_focal_cost(
    inputs: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2
) -> torch.Tensor:
    """Pairwise mean sigmoid focal loss (RetinaNet): inputs (N, P), targets (M, P) -> (N, M)."""
    hw = inputs.shape[1]
    prob = inputs.sigmoid()
    focal_pos = ((1 - prob) ** gamma) * F.binary_cross_entropy_with_logits(
        inputs, torch.ones_like(inputs), reduction="none"
    )
    focal_neg = (prob**gamma) * F.binary_cross_entropy_with_logits(
        inputs, torch.zeros_like(inputs), reduction="none"
    )
    if alpha >= 0:
        focal_pos = focal_pos * alpha
        focal_neg = focal_neg * (1 - alpha)
    loss = torch.einsum("nc,mc->nm", focal_pos, targets) + torch.einsum(
        "nc,mc->nm", focal_neg, 1 - targets
    )
    return loss / hw


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets minimising a weighted class + mask cost
    (Mask2Former: mask costs on shared uniformly random points)."""

    @configurable
    def __init__(
        self,
        cost_class: float = 1.0,
        cost_mask: float = 1.0,
        cost_dice: float = 1.0,
        num_points: int = 0,
    ):
        """
        Args:
            cost_class: weight of the classification cost ``-p(class)``.
            cost_mask: weight of the sigmoid BCE mask cost.
            cost_dice: weight of the dice mask cost.
            num_points: random points per image on which mask costs are evaluated.
        """
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("HungarianMatcher: cost_class, cost_mask and cost_dice cannot all be 0")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @classmethod
    def from_config(cls, cfg) -> Dict:
        mf = cfg.MODEL.MASK_FORMER
        return {
            "cost_class": mf.CLASS_WEIGHT,
            "cost_mask": mf.MASK_WEIGHT,
            "cost_dice": mf.DICE_WEIGHT,
            "num_points": mf.TRAIN_NUM_POINTS,
        }

    def _mask_costs(
        self, out_mask: torch.Tensor, tgt_mask: torch.Tensor, pad_hw: Tuple[int, int]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mask and dice costs (Q, N) for one image: out_mask (Q, Hp, Wp), tgt_mask (N, H, W);
        ``pad_hw`` is the largest target mask size in the batch (unused here)."""
        out_mask = out_mask[:, None]  # (Q, 1, Hp, Wp)
        tgt_mask = tgt_mask.to(out_mask)[:, None]  # (N, 1, H, W)
        # One set of points for every prediction and target of the image.
        point_coords = torch.rand(1, self.num_points, 2, device=out_mask.device)
        tgt_points = point_sample(
            tgt_mask, point_coords.repeat(tgt_mask.shape[0], 1, 1), align_corners=False
        ).squeeze(1)  # (N, P)
        out_points = point_sample(
            out_mask, point_coords.repeat(out_mask.shape[0], 1, 1), align_corners=False
        ).squeeze(1)  # (Q, P)
        with torch.autocast(device_type=out_mask.device.type, enabled=False):
            out_points = out_points.float()
            tgt_points = tgt_points.float()
            return batch_sigmoid_ce_cost(out_points, tgt_points), batch_dice_cost(out_points, tgt_points)

    @torch.no_grad()
    def forward(self, outputs: Dict[str, torch.Tensor], targets: Sequence[Dict[str, torch.Tensor]]) -> MatchIndices:
        """Match each image's targets to queries.

        Args:
            outputs: ``pred_logits`` (B, Q, K+1) and ``pred_masks`` (B, Q, Hp, Wp).
            targets: B dicts with ``labels`` (N_b,) and ``masks`` (N_b, H, W).

        Returns:
            B pairs ``(query_idx, target_idx)`` of int64 tensors of length ``min(Q, N_b)``.
        """
        pred_logits, pred_masks = outputs["pred_logits"], outputs["pred_masks"]
        bs, num_queries = pred_logits.shape[:2]
        if len(targets) != bs:
            raise ValueError(f"HungarianMatcher: got {len(targets)} targets for a batch of {bs} predictions")
        pad_hw = (max(t["masks"].shape[-2] for t in targets), max(t["masks"].shape[-1] for t in targets))
        indices = []
        for b in range(bs):
            tgt_ids = targets[b]["labels"]
            tgt_masks = targets[b]["masks"]
            if tgt_masks.shape[0] != tgt_ids.shape[0]:
                raise ValueError(
                    f"HungarianMatcher: target {b} has {tgt_ids.shape[0]} labels but "
                    f"{tgt_masks.shape[0]} masks"
                )
            # Contrary to the loss, the class cost is -p(class), not the NLL (DETR).
            out_prob = pred_logits[b].float().softmax(-1)  # (Q, K+1)
            cost_class = -out_prob[:, tgt_ids]  # (Q, N)
            cost_mask, cost_dice = self._mask_costs(pred_masks[b], tgt_masks, pad_hw)
            cost = self.cost_mask * cost_mask + self.cost_class * cost_class + self.cost_dice * cost_dice
            cost = cost.reshape(num_queries, -1).cpu()
            if not torch.isfinite(cost).all():
                raise FloatingPointError(
                    f"HungarianMatcher: matching cost of image {b} has NaN/inf entries "
                    "(non-finite pred_logits / pred_masks?)"
                )
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append(
                (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
            )
        return indices

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, "
            f"cost_dice={self.cost_dice}, num_points={self.num_points}"
        )


class HungarianMatcherV1(HungarianMatcher):
    """MaskFormer (v1) matcher: focal + dice costs on full masks at prediction resolution."""

    @configurable
    def __init__(self, cost_class: float = 1.0, cost_mask: float = 1.0, cost_dice: float = 1.0):
        super().__init__(cost_class=cost_class, cost_mask=cost_mask, cost_dice=cost_dice, num_points=0)

    @classmethod
    def from_config(cls, cfg) -> Dict:
        mf = cfg.MODEL.MASK_FORMER
        # MaskFormer v1 fixes the class cost to 1 (no CLASS_WEIGHT in its config).
        return {"cost_class": 1.0, "cost_mask": mf.MASK_WEIGHT, "cost_dice": mf.DICE_WEIGHT}

    def _mask_costs(
        self, out_mask: torch.Tensor, tgt_mask: torch.Tensor, pad_hw: Tuple[int, int]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        h_max, w_max = pad_hw  # targets are zero-padded to the batch's largest mask
        padded = tgt_mask.new_zeros((tgt_mask.shape[0], h_max, w_max))
        padded[:, : tgt_mask.shape[1], : tgt_mask.shape[2]].copy_(tgt_mask)
        padded = padded.to(out_mask)
        # Downsample the targets (not upsample the predictions) to save memory.
        padded = F.interpolate(padded[:, None], size=out_mask.shape[-2:], mode="nearest")
        out_flat = out_mask.flatten(1)  # (Q, Hp*Wp)
        tgt_flat = padded[:, 0].flatten(1)  # (N, Hp*Wp)
        # float32 even under autocast: fp16 sums over Hp*Wp pixels can overflow (the official
        # v1 code stays in fp16 here; identical results in float32 runs).
        with torch.autocast(device_type=out_mask.device.type, enabled=False):
            out_flat, tgt_flat = out_flat.float(), tgt_flat.float()
            return batch_sigmoid_focal_cost(out_flat, tgt_flat), batch_dice_cost(out_flat, tgt_flat)

    def extra_repr(self) -> str:
        return f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, cost_dice={self.cost_dice}"
