"""Training mapper for semantic segmentation (MaskFormer / Mask2Former)."""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

from ...config import configurable

from .. import detection_utils as utils
from .. import transforms as T
from ...utils.catalog import MetadataCatalog
from ...utils.label_checks import check_semantic_label
from ._common import (
    image_to_tensor, mask_former_train_augmentations, masks_to_instances, pad_to_size_divisibility,
)

__all__ = ["MaskFormerSemanticDatasetMapper"]


class MaskFormerSemanticDatasetMapper:
    """Reads an image and its label map, augments both, and returns ``image`` (C, H, W) uint8,
    ``sem_seg`` (H, W) long, and ``instances`` with one binary mask per class present
    (``gt_classes`` (N,), ``gt_masks`` (N, H, W)). Training only."""

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: List[Union[T.Augmentation, T.Transform]],
        image_format: str,
        ignore_label: int,
        size_divisibility: int,
        num_classes: Optional[int] = None,
    ):
        """``num_classes``: label ids must lie in ``[0, num_classes)`` or be ``ignore_label``
        (None: not checked); colour labels and labels of another size than their image are
        always errors naming both files (:func:`check_semantic_label`)."""
        self.is_train = is_train
        self.num_classes = num_classes
        self.tfm_gens = augmentations
        self.img_format = image_format
        self.ignore_label = ignore_label
        self.size_divisibility = size_divisibility
        mode = "training" if is_train else "inference"
        logging.getLogger(__name__).info(
            "[%s] Augmentations used in %s: %s", type(self).__name__, mode, augmentations
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> Dict[str, Any]:
        crop = T.RandomCrop_CategoryAreaConstraint(
            cfg.INPUT.CROP.TYPE,
            cfg.INPUT.CROP.SIZE,
            cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
            cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
        )
        augs = mask_former_train_augmentations(cfg, crop)

        # the training set's ignore label
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        return {
            "is_train": is_train,
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "ignore_label": meta.ignore_label,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
        }

    def _read(self, dataset_dict: Dict[str, Any]):
        image = utils.read_image(dataset_dict["file_name"], format=self.img_format)
        utils.check_image_size(dataset_dict, image)
        sem_seg_gt = None
        if "sem_seg_file_name" in dataset_dict:
            label_file = dataset_dict.pop("sem_seg_file_name")
            sem_seg_gt = check_semantic_label(
                utils.read_image(label_file), num_classes=self.num_classes, ignore_label=self.ignore_label,
                label_file=label_file, image_file=dataset_dict["file_name"], image_hw=image.shape[:2],
            ).astype("double")  # torch has no uint16 ops: go through double
        return image, sem_seg_gt

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        if not self.is_train:
            raise RuntimeError(f"{type(self).__name__} should only be used for training!")
        dataset_dict = copy.deepcopy(dataset_dict)
        image, sem_seg_gt = self._read(dataset_dict)
        if sem_seg_gt is None:
            raise ValueError(
                f"Cannot find 'sem_seg_file_name' for semantic segmentation dataset {dataset_dict['file_name']}."
            )
        aug_input = T.AugInput(image, sem_seg=sem_seg_gt)
        aug_input, _ = T.apply_transform_gens(self.tfm_gens, aug_input)
        image_t = image_to_tensor(aug_input.image)  # (C, H, W)
        sem_seg_t = torch.as_tensor(aug_input.sem_seg.astype("long"))  # (H, W)

        if self.size_divisibility > 0:
            image_t = pad_to_size_divisibility(image_t, self.size_divisibility, 128)
            sem_seg_t = pad_to_size_divisibility(sem_seg_t, self.size_divisibility, self.ignore_label)
        image_shape = (image_t.shape[-2], image_t.shape[-1])

        dataset_dict["image"] = image_t
        dataset_dict["sem_seg"] = sem_seg_t.long()
        if "annotations" in dataset_dict:
            raise ValueError("Semantic segmentation dataset should not have 'annotations'.")

        sem_seg_np = sem_seg_t.numpy()
        classes = np.unique(sem_seg_np)
        classes = classes[classes != self.ignore_label]
        dataset_dict["instances"] = masks_to_instances(
            image_shape, classes, [sem_seg_np == c for c in classes]
        )
        return dataset_dict
