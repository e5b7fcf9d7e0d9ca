"""Training mapper for panoptic segmentation (MaskFormer / Mask2Former, non-LSJ configs)."""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional

import torch

from ...config import configurable

from .. import detection_utils as utils
from .. import transforms as T
from ...utils.label_checks import check_label_size
from ...utils.panoptic_utils import rgb2id
from ._common import image_to_tensor, masks_to_instances, pad_to_size_divisibility
from .mask_former_semantic_dataset_mapper import MaskFormerSemanticDatasetMapper

__all__ = ["MaskFormerPanopticDatasetMapper"]


class MaskFormerPanopticDatasetMapper(MaskFormerSemanticDatasetMapper):
    """Like the semantic mapper, but targets are the panoptic segments (crowd ones skipped):
    ``instances.gt_classes`` (N,) and ``gt_masks`` (N, H, W); ``sem_seg`` is also returned when
    the dict has ``sem_seg_file_name``. ``thing_recolor_prob``: chance that each thing segment
    gets a random colour after the augmentations (:func:`~mask2former.data.transforms.recolor_segments`)."""

    @configurable
    def __init__(self, is_train: bool = True, *, augmentations, image_format, ignore_label, size_divisibility,
                 num_classes: Optional[int] = None, thing_recolor_prob: float = 0.0):
        super().__init__(
            is_train=is_train,
            augmentations=augmentations,
            image_format=image_format,
            ignore_label=ignore_label,
            size_divisibility=size_divisibility,
            num_classes=num_classes,
        )
        self.thing_recolor_prob = thing_recolor_prob

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> Dict[str, Any]:
        return {**super().from_config(cfg, is_train), "thing_recolor_prob": cfg.INPUT.THING_RECOLOR_PROB}

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        if not self.is_train:
            raise RuntimeError(f"{type(self).__name__} should only be used for training!")
        dataset_dict = copy.deepcopy(dataset_dict)
        image, sem_seg_gt = self._read(dataset_dict)
        if "pan_seg_file_name" not in dataset_dict:
            raise ValueError(
                f"Cannot find 'pan_seg_file_name' for panoptic segmentation dataset {dataset_dict['file_name']}."
            )
        pan_seg_file = dataset_dict.pop("pan_seg_file_name")
        pan_seg_gt = utils.read_image(pan_seg_file, "RGB")
        check_label_size(pan_seg_gt.shape[:2], image.shape[:2], pan_seg_file, dataset_dict["file_name"], "Panoptic")
        segments_info = dataset_dict["segments_info"]

        aug_input = T.AugInput(image, sem_seg=sem_seg_gt)
        aug_input, transforms = T.apply_transform_gens(self.tfm_gens, aug_input)
        pan_seg_gt = rgb2id(transforms.apply_segmentation(pan_seg_gt))  # same geometry as the image
        kept = [s for s in segments_info if not s["iscrowd"]]
        if self.thing_recolor_prob > 0:
            if any("isthing" not in s for s in kept):
                raise ValueError(f"INPUT.THING_RECOLOR_PROB needs 'isthing' in every segment of "
                                 f"'segments_info' ({dataset_dict['file_name']})")
            thing_masks = [pan_seg_gt == s["id"] for s in kept if s["isthing"]]
            aug_input.image = T.recolor_segments(aug_input.image, thing_masks, self.thing_recolor_prob)

        image_t = image_to_tensor(aug_input.image)  # (C, H, W)
        sem_seg_t = torch.as_tensor(aug_input.sem_seg.astype("long")) if sem_seg_gt is not None else None
        pan_seg_t = torch.as_tensor(pan_seg_gt.astype("long"))
        if self.size_divisibility > 0:
            image_t = pad_to_size_divisibility(image_t, self.size_divisibility, 128)
            if sem_seg_t is not None:
                sem_seg_t = pad_to_size_divisibility(sem_seg_t, self.size_divisibility, self.ignore_label)
            pan_seg_t = pad_to_size_divisibility(pan_seg_t, self.size_divisibility, 0)  # 0 = VOID
        image_shape = (image_t.shape[-2], image_t.shape[-1])

        dataset_dict["image"] = image_t
        if sem_seg_t is not None:
            dataset_dict["sem_seg"] = sem_seg_t.long()
        if "annotations" in dataset_dict:
            raise ValueError("Panoptic segmentation dataset should not have 'annotations'.")

        pan_seg_np = pan_seg_t.numpy()
        dataset_dict["instances"] = masks_to_instances(
            image_shape, [s["category_id"] for s in kept], [pan_seg_np == s["id"] for s in kept]
        )
        return dataset_dict
