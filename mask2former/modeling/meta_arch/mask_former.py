"""``MaskFormer``: the mask-classification meta-architecture of MaskFormer / Mask2Former.

Backbone -> segmentation head (pixel decoder + transformer decoder) -> per-query class
logits and mask logits. Training returns the weighted set-prediction losses; inference
turns the final predictions into semantic, panoptic and/or instance results with the
pure functions of :mod:`mask2former.modeling.postprocessing`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Set

import torch
from torch import nn
from torch.nn import functional as F

from ...config import configurable
from ...structures import ImageList, Instances
from ...utils.catalog import MetadataCatalog
from ..build import META_ARCH_REGISTRY, build_backbone, build_sem_seg_head
from ..criterion import build_criterion
from ..postprocessing import (
    instance_inference,
    panoptic_inference,
    sem_seg_postprocess,
    semantic_inference,
)
from .preprocessing import preprocess_images

__all__ = ["MaskFormer", "dataset_metadata", "head_outputs"]


@META_ARCH_REGISTRY.register()
class MaskFormer(nn.Module):
    """Mask classification model for semantic, panoptic and instance segmentation."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        sem_seg_head: nn.Module,
        criterion: nn.Module,
        object_mask_threshold: float,
        overlap_threshold: float,
        metadata: Any,
        size_divisibility: int,
        sem_seg_postprocess_before_inference: bool,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        semantic_on: bool = True,
        panoptic_on: bool = False,
        instance_on: bool = False,
        test_topk_per_image: int = 100,
        panoptic_require_mask_prob: bool = True,
    ):
        """
        Args:
            backbone: image -> dict of features (``Backbone`` interface).
            sem_seg_head: features -> {"pred_logits", "pred_masks", "aux_outputs"}; has
                ``num_classes``.
            criterion: outputs, targets -> dict of unweighted losses; has ``weight_dict``.
            object_mask_threshold: panoptic: minimum class probability of a kept query.
            overlap_threshold: panoptic: minimum kept fraction of a query's own mask.
            metadata: dataset metadata; panoptic / instance inference reads its
                ``thing_dataset_id_to_contiguous_id`` (may be None if those are off).
            size_divisibility: pad the batch to a multiple of this; < 0 uses the backbone's.
            sem_seg_postprocess_before_inference: resize mask logits to the output size
                before inference (required for panoptic / instance) instead of resizing
                the semantic scores afterwards.
            pixel_mean, pixel_std: per-channel normalisation of the input image.
            semantic_on, panoptic_on, instance_on: which results inference returns.
            test_topk_per_image: instance inference keeps this many (query, class) pairs.
            panoptic_require_mask_prob: panoptic pixels need the winning query's mask prob
                >= 0.5 (Mask2Former); False is MaskFormer v1's rule.
        """
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.overlap_threshold = overlap_threshold
        self.object_mask_threshold = object_mask_threshold
        self.metadata = metadata
        if size_divisibility < 0:
            size_divisibility = self.backbone.size_divisibility
        self.size_divisibility = size_divisibility
        self.sem_seg_postprocess_before_inference = sem_seg_postprocess_before_inference
        # not part of the state_dict: official checkpoints do not contain them
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

        self.semantic_on = semantic_on
        self.instance_on = instance_on
        self.panoptic_on = panoptic_on
        self.test_topk_per_image = test_topk_per_image
        self.panoptic_require_mask_prob = panoptic_require_mask_prob
        if not semantic_on and not sem_seg_postprocess_before_inference:
            raise ValueError(
                "MaskFormer: sem_seg_postprocess_before_inference must be True when semantic "
                "inference is off (MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE)"
            )
        if (panoptic_on or instance_on) and not sem_seg_postprocess_before_inference:
            raise ValueError(
                "MaskFormer: panoptic / instance inference needs sem_seg_postprocess_before_inference=True"
            )

    @classmethod
    def from_config(cls, cfg) -> Dict[str, Any]:
        backbone = build_backbone(cfg)
        sem_seg_head = build_sem_seg_head(cfg, backbone.output_shape())
        test = cfg.MODEL.MASK_FORMER.TEST
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "criterion": build_criterion(cfg),
            "object_mask_threshold": test.OBJECT_MASK_THRESHOLD,
            "overlap_threshold": test.OVERLAP_THRESHOLD,
            "panoptic_require_mask_prob": test.PANOPTIC_REQUIRE_MASK_PROB,
            "metadata": dataset_metadata(cfg),
            "size_divisibility": cfg.MODEL.MASK_FORMER.SIZE_DIVISIBILITY,
            "sem_seg_postprocess_before_inference": (
                test.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE or test.PANOPTIC_ON or test.INSTANCE_ON
            ),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "semantic_on": test.SEMANTIC_ON,
            "instance_on": test.INSTANCE_ON,
            "panoptic_on": test.PANOPTIC_ON,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: List[Dict[str, Any]]):
        """
        Args:
            batched_inputs: one dict per image with ``image`` (C, H, W) in INPUT.FORMAT
                order, 0-255; for training ``instances`` (``gt_classes``, ``gt_masks``);
                optionally ``height`` / ``width``, the output resolution.
        Returns:
            training: dict of weighted losses. Inference: one dict per image with
            ``sem_seg`` (K, height, width), ``panoptic_seg`` ((height, width) int32,
            segments_info) and ``instances``, as enabled.
        """
        images = preprocess_images(batched_inputs, self.pixel_mean, self.pixel_std, self.size_divisibility,
                                   getattr(self.backbone, "padding_constraints", None))  # (B, C, Hp, Wp)

        features = self.backbone(images.tensor)
        outputs = head_outputs(self.sem_seg_head, features, self.training)

        if self.training:
            if "instances" in batched_inputs[0]:
                gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
                targets = self.prepare_targets(gt_instances, images)
            else:
                targets = None
            losses = self.criterion(outputs, targets)
            for name in list(losses.keys()):
                if name in self.criterion.weight_dict:
                    losses[name] *= self.criterion.weight_dict[name]
                else:  # a loss without a weight is not trained
                    losses.pop(name)
            return losses
        return self.inference(outputs["pred_logits"], outputs["pred_masks"], batched_inputs, images)

    def inference(
        self,
        mask_cls_results: torch.Tensor,
        mask_pred_results: torch.Tensor,
        batched_inputs: List[Dict[str, Any]],
        images: ImageList,
    ) -> List[Dict[str, Any]]:
        """Per-image results from (B, Q, K+1) class logits and (B, Q, h, w) mask logits."""
        padded_size = images.tensor.shape[-2:]
        processed_results = []
        for mask_cls, mask_pred, input_per_image, image_size in zip(
            mask_cls_results, mask_pred_results, batched_inputs, images.image_sizes
        ):
            height = input_per_image.get("height", image_size[0])
            width = input_per_image.get("width", image_size[1])
            # one image at a time: same values as the official batched call, less memory
            mask_pred = F.interpolate(
                mask_pred[None], size=padded_size, mode="bilinear", align_corners=False
            )[0]  # (Q, Hp, Wp)
            result: Dict[str, Any] = {}

            if self.sem_seg_postprocess_before_inference:
                mask_pred = sem_seg_postprocess(mask_pred, image_size, height, width)  # (Q, height, width)
                mask_cls = mask_cls.to(mask_pred)

            if self.semantic_on:
                if self.sem_seg_postprocess_before_inference:
                    result["sem_seg"] = semantic_inference(mask_cls, mask_pred)
                else:
                    # per-pixel, so cropping the padding first gives the official values
                    h, w = image_size
                    r = semantic_inference(mask_cls, mask_pred[:, :h, :w])  # (K, h, w)
                    result["sem_seg"] = sem_seg_postprocess(r, image_size, height, width)

            if self.panoptic_on:
                result["panoptic_seg"] = panoptic_inference(
                    mask_cls,
                    mask_pred,
                    num_classes=self.sem_seg_head.num_classes,
                    object_mask_threshold=self.object_mask_threshold,
                    overlap_threshold=self.overlap_threshold,
                    thing_ids=self.thing_ids(),
                    require_mask_prob=self.panoptic_require_mask_prob,
                )

            if self.instance_on:
                result["instances"] = instance_inference(
                    mask_cls,
                    mask_pred,
                    num_classes=self.sem_seg_head.num_classes,
                    test_topk_per_image=self.test_topk_per_image,
                    # panoptic models predict stuff too; only things are instances
                    thing_ids=self.thing_ids() if self.panoptic_on else None,
                )
            processed_results.append(result)
        return processed_results

    def thing_ids(self) -> Set[int]:
        """Contiguous ids of the "thing" classes, from the metadata."""
        mapping = getattr(self.metadata, "thing_dataset_id_to_contiguous_id", None)
        if mapping is None:
            name = getattr(self.metadata, "name", None)
            raise ValueError(
                "Panoptic / instance inference needs metadata.thing_dataset_id_to_contiguous_id, "
                f"which the metadata of dataset {name!r} does not have (set it when registering "
                "the dataset -- built-in datasets register when mask2former.data is imported -- "
                "or turn MODEL.MASK_FORMER.TEST.PANOPTIC_ON off)"
            )
        return set(int(v) for v in mapping.values())

    def prepare_targets(self, targets: List[Instances], images: ImageList) -> List[Dict[str, torch.Tensor]]:
        """``labels`` and ``masks`` per image; masks zero-padded to the padded batch size."""
        h_pad, w_pad = images.tensor.shape[-2:]
        new_targets = []
        for targets_per_image in targets:
            gt_masks = targets_per_image.gt_masks
            gt_masks = getattr(gt_masks, "tensor", gt_masks)  # BitMasks or (N, H, W) tensor
            padded_masks = gt_masks.new_zeros((gt_masks.shape[0], h_pad, w_pad))  # (N, Hp, Wp)
            padded_masks[:, : gt_masks.shape[1], : gt_masks.shape[2]] = gt_masks
            new_targets.append({"labels": targets_per_image.gt_classes, "masks": padded_masks})
        return new_targets


def head_outputs(sem_seg_head: nn.Module, features: Dict[str, torch.Tensor], training: bool) -> Dict[str, Any]:
    """``sem_seg_head(features)``; at inference, where the transformer decoder offers
    ``final_prediction_only`` (and its ``inference_shortcut`` is on), without the intermediate
    layers' predictions (inference reads only ``pred_logits`` / ``pred_masks``; ``aux_outputs``
    is then empty)."""
    predictor = getattr(sem_seg_head, "predictor", None)
    if training or not getattr(predictor, "inference_shortcut", False):
        return sem_seg_head(features)
    with predictor.final_prediction_only():
        return sem_seg_head(features)


def dataset_metadata(cfg) -> Optional[Any]:
    """Metadata of the first training dataset (the official choice), else the first test one.

    Read from the catalog on the ground floor (``utils.catalog``) without importing the data
    package. ``MetadataCatalog.get`` hands out one object per name, which the dataset's
    registration fills: built-in datasets register when ``mask2former.data`` is imported (the
    engine does), before or after the model is built. Models built by hand take ``metadata``.
    """
    names = list(cfg.DATASETS.TRAIN) or list(cfg.DATASETS.TEST)
    return MetadataCatalog.get(names[0]) if names else None
