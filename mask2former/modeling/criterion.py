"""Set-prediction losses of MaskFormer / Mask2Former (DETR-style, after Hungarian matching).

* :class:`SetCriterion` (Mask2Former): class CE with a down-weighted no-object class, and
  sigmoid BCE + dice on ``num_points`` importance-sampled points per matched mask (memory does
  not grow with the prediction's resolution; target masks are read at the points in their own
  bool storage, never copied to float).
* :class:`SetCriterionV1` (MaskFormer v1): same class loss, sigmoid focal + dice on full-res
  masks (predictions bilinearly upsampled to the target size).

Losses are returned unweighted; the meta-architecture multiplies them by ``weight_dict``
(and drops keys absent from it). With deep supervision the same losses are computed for every
entry of ``outputs["aux_outputs"]`` (each matched separately) with an ``_{i}`` suffix.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from ..config import configurable
from .matcher import HungarianMatcher, HungarianMatcherV1, MatchIndices
from .point_sampling import (
    calculate_uncertainty,
    get_uncertain_point_coords_with_randomness,
    point_sample,
    point_sample_binary,
)

__all__ = [
    "SetCriterion",
    "SetCriterionV1",
    "build_criterion",
    "dice_loss",
    "sigmoid_ce_loss",
    "sigmoid_focal_loss",
]

Targets = Sequence[Dict[str, torch.Tensor]]


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Dice loss summed over masks / num_masks: inputs (M, P) logits, targets (M, P) in {0, 1}."""
    inputs = inputs.sigmoid().flatten(1)
    numerator = 2 * (inputs * targets).sum(-1)
    denominator = inputs.sum(-1) + targets.sum(-1)
    loss = 1 - (numerator + 1) / (denominator + 1)
    return loss.sum() / num_masks


def sigmoid_ce_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Per-mask mean sigmoid BCE, summed over masks / num_masks: inputs, targets (M, P)."""
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def sigmoid_focal_loss(
    inputs: torch.Tensor, targets: torch.Tensor, num_masks: float, alpha: float = 0.25, gamma: float = 2
) -> torch.Tensor:
    """Per-mask mean sigmoid focal loss (RetinaNet), summed over masks / num_masks: (M, P)."""
    prob = inputs.sigmoid()
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss.mean(1).sum() / num_masks


def _matched_target_masks(targets: Targets, indices: MatchIndices) -> torch.Tensor:
    """Matched target masks (M, Hmax, Wmax) in match order, zero-padded to the batch's
    largest mask (what indexing the official padded (B, Nmax, Hmax, Wmax) tensor gives)."""
    h_max = max(t["masks"].shape[-2] for t in targets)
    w_max = max(t["masks"].shape[-1] for t in targets)
    selected = []
    for t, (_, tgt_idx) in zip(targets, indices):
        masks = t["masks"][tgt_idx.to(t["masks"].device)]  # (M_b, [T,] H_b, W_b)
        if masks.shape[-2:] != (h_max, w_max):
            padded = masks.new_zeros(masks.shape[:-2] + (h_max, w_max))
            padded[..., : masks.shape[-2], : masks.shape[-1]] = masks
            masks = padded
        selected.append(masks)
    return torch.cat(selected, dim=0)


def _matched_target_points(targets: Targets, indices: MatchIndices, point_coords: torch.Tensor) -> torch.Tensor:
    """Matched target masks read at ``point_coords`` (M, P, 2), in match order: (M, P) float.

    Equal to sampling :func:`_matched_target_masks` (zero-padded to the batch's largest mask)
    with ``point_sample``, but reads each image's masks in their own storage (bool / uint8),
    so no float or padded copy of the full-resolution masks is made (issue 11).
    """
    h_max = max(t["masks"].shape[-2] for t in targets)
    w_max = max(t["masks"].shape[-1] for t in targets)
    labels, start = [], 0
    for t, (_, tgt_idx) in zip(targets, indices):
        masks = t["masks"][tgt_idx.to(t["masks"].device)]  # (M_b, H_b, W_b)
        coords = point_coords[start:start + len(masks)]
        start += len(masks)
        labels.append(point_sample_binary(masks, coords.to(masks.device), size=(h_max, w_max)))
    return torch.cat(labels).to(point_coords.device)  # (M, P)


def _check_targets(targets: Optional[Targets], batch_size: int, mask_layout: str = "(N, H, W)") -> None:
    if targets is None:
        raise ValueError(
            "SetCriterion needs targets in training: each input dict must carry 'instances'"
        )
    if len(targets) != batch_size:
        raise ValueError(f"SetCriterion: got {len(targets)} targets for a batch of {batch_size} predictions")
    for i, t in enumerate(targets):
        for key in ("labels", "masks"):
            if key not in t:
                raise KeyError(f"SetCriterion: target {i} has no {key!r} entry (keys: {sorted(t)})")
        if t["masks"].dim() != len(mask_layout.split(",")) or t["masks"].shape[0] != t["labels"].shape[0]:
            raise ValueError(
                f"SetCriterion: target {i} needs masks {mask_layout} with N = len(labels) = "
                f"{t['labels'].shape[0]}, got masks of shape {tuple(t['masks'].shape)}"
            )


def _average_num_masks(targets: Targets, device: torch.device) -> float:
    """Number of target masks averaged over processes (all-reduced), at least 1."""
    num_masks = torch.as_tensor(
        [float(sum(len(t["labels"]) for t in targets))], dtype=torch.float, device=device
    )
    world_size = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(num_masks)
        world_size = dist.get_world_size()
    return torch.clamp(num_masks / world_size, min=1).item()


class SetCriterion(nn.Module):
    """Mask2Former's loss: Hungarian matching, then class CE and point-sampled BCE + dice.

    Buffer ``empty_weight`` (K+1,) holds the class weights of the CE (1 for the K classes,
    ``eos_coef`` for no-object); it is part of the official state_dict
    (``criterion.empty_weight``).
    """

    target_mask_layout = "(N, H, W)"  # shape of each target's "masks"
    matcher_class = HungarianMatcher  # built from the cfg by from_config

    @configurable
    def __init__(
        self,
        num_classes: int,
        matcher: nn.Module,
        weight_dict: Dict[str, float],
        eos_coef: float,
        losses: List[str],
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
    ):
        """
        Args:
            num_classes: K, number of classes without the no-object class.
            matcher: maps (outputs, targets) to per-image (query_idx, target_idx).
            weight_dict: loss name -> weight (applied by the meta-architecture).
            eos_coef: CE weight of the no-object class.
            losses: subset of ``["labels", "masks"]``.
            num_points: points sampled per matched mask.
            oversample_ratio: oversampling factor of the importance sampling.
            importance_sample_ratio: fraction of points chosen by uncertainty.
        """
        super().__init__()
        unknown = [name for name in losses if name not in self._loss_names()]
        if unknown:
            raise ValueError(f"SetCriterion: unknown losses {unknown}; available: {self._loss_names()}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.eos_coef = eos_coef
        self.losses = list(losses)
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio

    @classmethod
    def from_config(cls, cfg) -> Dict:
        mf = cfg.MODEL.MASK_FORMER
        weight_dict = {"loss_ce": mf.CLASS_WEIGHT, "loss_mask": mf.MASK_WEIGHT, "loss_dice": mf.DICE_WEIGHT}
        return {
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "matcher": cls.matcher_class(cfg),
            "weight_dict": _with_aux_weights(weight_dict, mf.DEEP_SUPERVISION, mf.DEC_LAYERS),
            "eos_coef": mf.NO_OBJECT_WEIGHT,
            "losses": ["labels", "masks"],
            "num_points": mf.TRAIN_NUM_POINTS,
            "oversample_ratio": mf.OVERSAMPLE_RATIO,
            "importance_sample_ratio": mf.IMPORTANCE_SAMPLE_RATIO,
        }

    @staticmethod
    def _loss_names() -> Tuple[str, ...]:
        return ("labels", "masks")

    # ------------------------------------------------------------------ losses
    def loss_labels(
        self, outputs: Dict[str, torch.Tensor], targets: Targets, indices: MatchIndices, num_masks: float
    ) -> Dict[str, torch.Tensor]:
        """CE over K+1 classes for every query; unmatched queries target no-object (K)."""
        src_logits = outputs["pred_logits"].float()  # (B, Q, K+1)
        batch_idx, src_idx = self._src_permutation_idx(indices)
        target_classes_o = torch.cat(
            [t["labels"][tgt.to(t["labels"].device)] for t, (_, tgt) in zip(targets, indices)]
        )
        target_classes = torch.full(
            src_logits.shape[:2], self.num_classes, dtype=torch.int64, device=src_logits.device
        )  # (B, Q)
        target_classes[batch_idx, src_idx] = target_classes_o.to(src_logits.device)
        loss_ce = F.cross_entropy(src_logits.transpose(1, 2), target_classes, self.empty_weight)
        return {"loss_ce": loss_ce}

    def loss_masks(
        self, outputs: Dict[str, torch.Tensor], targets: Targets, indices: MatchIndices, num_masks: float
    ) -> Dict[str, torch.Tensor]:
        """Sigmoid BCE + dice of matched masks on importance-sampled points."""
        src_masks = outputs["pred_masks"][self._src_permutation_idx(indices)]  # (M, Hp, Wp)
        # Normalised point coordinates: no need to bring both to one resolution.
        src_masks = src_masks[:, None]  # (M, 1, Hp, Wp)
        with torch.no_grad():
            point_coords = get_uncertain_point_coords_with_randomness(
                src_masks,
                calculate_uncertainty,
                self.num_points,
                self.oversample_ratio,
                self.importance_sample_ratio,
            )  # (M, P, 2)
            point_labels = _matched_target_points(targets, indices, point_coords).to(src_masks)  # (M, P)
        point_logits = point_sample(src_masks, point_coords, align_corners=False).squeeze(1)  # (M, P)
        return {
            "loss_mask": sigmoid_ce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    # ------------------------------------------------------------------ plumbing
    @staticmethod
    def _src_permutation_idx(indices: MatchIndices) -> Tuple[torch.Tensor, torch.Tensor]:
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for src, _ in indices])
        return batch_idx, src_idx

    def get_loss(
        self, loss: str, outputs: Dict[str, torch.Tensor], targets: Targets, indices: MatchIndices, num_masks: float
    ) -> Dict[str, torch.Tensor]:
        if loss == "labels":
            return self.loss_labels(outputs, targets, indices, num_masks)
        if loss == "masks":
            return self.loss_masks(outputs, targets, indices, num_masks)
        raise ValueError(f"SetCriterion: unknown loss {loss!r}; available: {self._loss_names()}")

    def forward(self, outputs: Dict, targets: Optional[Targets]) -> Dict[str, torch.Tensor]:
        """Compute the unweighted losses.

        Args:
            outputs: ``pred_logits`` (B, Q, K+1), ``pred_masks`` (B, Q, Hp, Wp) and optionally
                ``aux_outputs`` (list of dicts with the same two keys).
            targets: B dicts with ``labels`` (N_b,) int64 and ``masks`` (N_b, H, W).

        Returns:
            ``loss_ce``, ``loss_mask``, ``loss_dice`` and ``<name>_{i}`` per aux output.
        """
        _check_targets(targets, outputs["pred_logits"].shape[0], self.target_mask_layout)
        outputs_without_aux = {k: v for k, v in outputs.items() if k != "aux_outputs"}
        indices = self.matcher(outputs_without_aux, targets)
        num_masks = _average_num_masks(targets, outputs["pred_logits"].device)

        losses: Dict[str, torch.Tensor] = {}
        for loss in self.losses:
            losses.update(self.get_loss(loss, outputs, targets, indices, num_masks))
        for i, aux_outputs in enumerate(outputs.get("aux_outputs", [])):
            indices = self.matcher(aux_outputs, targets)
            for loss in self.losses:
                l_dict = self.get_loss(loss, aux_outputs, targets, indices, num_masks)
                losses.update({f"{k}_{i}": v for k, v in l_dict.items()})
        return losses

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, eos_coef={self.eos_coef}, losses={self.losses}, "
            f"num_points={self.num_points}, oversample_ratio={self.oversample_ratio}, "
            f"importance_sample_ratio={self.importance_sample_ratio},\nweight_dict={self.weight_dict}"
        )


class SetCriterionV1(SetCriterion):
    """MaskFormer (v1) loss: class CE, and sigmoid focal + dice on full-resolution masks."""

    @configurable
    def __init__(
        self,
        num_classes: int,
        matcher: nn.Module,
        weight_dict: Dict[str, float],
        eos_coef: float,
        losses: List[str],
    ):
        super().__init__(
            num_classes=num_classes,
            matcher=matcher,
            weight_dict=weight_dict,
            eos_coef=eos_coef,
            losses=losses,
            num_points=0,
            oversample_ratio=1.0,
            importance_sample_ratio=0.0,
        )

    @classmethod
    def from_config(cls, cfg) -> Dict:
        mf = cfg.MODEL.MASK_FORMER
        # v1 fixes the class weight to 1 (its config has no CLASS_WEIGHT).
        weight_dict = {"loss_ce": 1.0, "loss_mask": mf.MASK_WEIGHT, "loss_dice": mf.DICE_WEIGHT}
        return {
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "matcher": HungarianMatcherV1(cfg),
            "weight_dict": _with_aux_weights(weight_dict, mf.DEEP_SUPERVISION, mf.DEC_LAYERS),
            "eos_coef": mf.NO_OBJECT_WEIGHT,
            "losses": ["labels", "masks"],
        }

    def loss_masks(
        self, outputs: Dict[str, torch.Tensor], targets: Targets, indices: MatchIndices, num_masks: float
    ) -> Dict[str, torch.Tensor]:
        """Sigmoid focal + dice of matched masks, predictions upsampled to the target size."""
        src_masks = outputs["pred_masks"][self._src_permutation_idx(indices)]  # (M, Hp, Wp)
        target_masks = _matched_target_masks(targets, indices).to(src_masks)  # (M, H, W)
        src_masks = F.interpolate(
            src_masks[:, None], size=target_masks.shape[-2:], mode="bilinear", align_corners=False
        )  # (M, 1, H, W)
        src_masks = src_masks[:, 0].flatten(1)  # (M, H*W)
        target_masks = target_masks.flatten(1).view(src_masks.shape)  # (M, H*W)
        return {
            "loss_mask": sigmoid_focal_loss(src_masks, target_masks, num_masks),
            "loss_dice": dice_loss(src_masks, target_masks, num_masks),
        }

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, eos_coef={self.eos_coef}, losses={self.losses},\n"
            f"weight_dict={self.weight_dict}"
        )


def _with_aux_weights(weight_dict: Dict[str, float], deep_supervision: bool, dec_layers: int) -> Dict[str, float]:
    """Add ``<name>_{i}`` copies of every weight for the ``dec_layers - 1`` aux predictions."""
    weight_dict = dict(weight_dict)
    if deep_supervision:
        aux = {}
        for i in range(dec_layers - 1):
            aux.update({f"{k}_{i}": v for k, v in weight_dict.items()})
        weight_dict.update(aux)
    return weight_dict


_CRITERIA = {"mask2former": SetCriterion, "maskformer": SetCriterionV1}


def build_criterion(cfg) -> SetCriterion:
    """The training loss named by ``cfg.MODEL.MASK_FORMER.CRITERION``.

    ``"mask2former"`` (default, also when the key is absent): :class:`SetCriterion`;
    ``"maskformer"`` (MaskFormer v1 configs): :class:`SetCriterionV1`.
    """
    name = cfg.MODEL.MASK_FORMER.get("CRITERION", "mask2former")
    key = str(name).lower()
    if key not in _CRITERIA:
        raise ValueError(
            f"cfg.MODEL.MASK_FORMER.CRITERION = {name!r} is not one of {sorted(_CRITERIA)}"
        )
    return _CRITERIA[key](cfg)
