"""``SemanticSegmentor``: backbone + per-pixel classification head (detectron2's).

Used by MaskFormer's per-pixel baseline configs; the head returns ``(results, losses)``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from torch import nn

from ...config import configurable
from ...structures import ImageList
from ..build import META_ARCH_REGISTRY, build_backbone, build_sem_seg_head
from ..postprocessing import sem_seg_postprocess
from .preprocessing import preprocess_images

__all__ = ["SemanticSegmentor"]


@META_ARCH_REGISTRY.register()
class SemanticSegmentor(nn.Module):
    """Per-pixel semantic segmentation: normalise, pad, backbone, head, resize to output."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        sem_seg_head: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ):
        """
        Args:
            backbone: image -> dict of features (``Backbone`` interface).
            sem_seg_head: ``(features, targets) -> (results (B, K, Hp, Wp) or None, losses)``;
                has ``ignore_value`` (the padding value of the targets).
            pixel_mean, pixel_std: per-channel normalisation of the input image.
        """
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg) -> Dict[str, Any]:
        backbone = build_backbone(cfg)
        sem_seg_head = build_sem_seg_head(cfg, backbone.output_shape())
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: List[Dict[str, Any]]):
        """
        Args:
            batched_inputs: one dict per image with ``image`` (C, H, W), optionally
                ``sem_seg`` (H, W) int64 ground truth and ``height`` / ``width``.
        Returns:
            training: dict of losses. Inference: one dict per image with ``sem_seg``
            (K, height, width) per-pixel scores.
        """
        images = preprocess_images(batched_inputs, self.pixel_mean, self.pixel_std,
                                   self.backbone.size_divisibility,
                                   getattr(self.backbone, "padding_constraints", None))  # (B, C, Hp, Wp)
        features = self.backbone(images.tensor)

        if "sem_seg" in batched_inputs[0]:
            targets = [x["sem_seg"].to(self.device) for x in batched_inputs]
            targets = ImageList.from_tensors(
                targets,
                self.backbone.size_divisibility,
                self.sem_seg_head.ignore_value,
                getattr(self.backbone, "padding_constraints", None),
            ).tensor  # (B, Hp, Wp)
        else:
            targets = None
        results, losses = self.sem_seg_head(features, targets)

        if self.training:
            return losses

        processed_results = []
        for result, input_per_image, image_size in zip(results, batched_inputs, images.image_sizes):
            height = input_per_image.get("height", image_size[0])
            width = input_per_image.get("width", image_size[1])
            processed_results.append({"sem_seg": sem_seg_postprocess(result, image_size, height, width)})
        return processed_results
