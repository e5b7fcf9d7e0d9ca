"""Training mapper for instance segmentation (MaskFormer / Mask2Former, non-LSJ configs)."""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Union

import numpy as np
import torch

from ...config import configurable

from .. import detection_utils as utils
from .. import transforms as T
from ._common import (
    image_to_tensor, mask_former_train_augmentations, masks_to_instances, pad_to_size_divisibility,
)

__all__ = ["MaskFormerInstanceDatasetMapper"]


class MaskFormerInstanceDatasetMapper:
    """Reads an image with COCO-style annotations (crowd ones dropped), augments it and returns
    ``image`` (C, H, W) and ``instances`` (``gt_classes`` (N,), ``gt_masks`` (N, H, W)).
    ``thing_recolor_prob``: chance that each instance gets a random colour after the
    augmentations (:func:`~mask2former.data.transforms.recolor_segments`)."""

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: List[Union[T.Augmentation, T.Transform]],
        image_format: str,
        size_divisibility: int,
        thing_recolor_prob: float = 0.0,
    ):
        self.is_train = is_train
        self.thing_recolor_prob = thing_recolor_prob
        self.tfm_gens = augmentations
        self.img_format = image_format
        self.size_divisibility = size_divisibility
        mode = "training" if is_train else "inference"
        logging.getLogger(__name__).info(
            "[%s] Augmentations used in %s: %s", type(self).__name__, mode, augmentations
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> Dict[str, Any]:
        augs = mask_former_train_augmentations(cfg, T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
        return {
            "is_train": is_train,
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
            "thing_recolor_prob": cfg.INPUT.THING_RECOLOR_PROB,
        }

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        if not self.is_train:
            raise RuntimeError(f"{type(self).__name__} should only be used for training!")
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.img_format)
        utils.check_image_size(dataset_dict, image)

        aug_input = T.AugInput(image)
        aug_input, transforms = T.apply_transform_gens(self.tfm_gens, aug_input)
        image = aug_input.image

        if "annotations" not in dataset_dict:
            raise ValueError(f"Instance segmentation dataset dict of {dataset_dict['file_name']} has no 'annotations'.")
        for anno in dataset_dict["annotations"]:
            anno.pop("keypoints", None)
        annos = [
            utils.transform_instance_annotations(obj, transforms, image.shape[:2])
            for obj in dataset_dict.pop("annotations")
            if obj.get("iscrowd", 0) == 0
        ]
        if annos and "segmentation" not in annos[0]:
            raise ValueError(f"Annotations of {dataset_dict['file_name']} have no 'segmentation'.")
        masks = [
            torch.from_numpy(
                np.ascontiguousarray(utils.segmentation_to_mask(obj["segmentation"], *image.shape[:2]), dtype=np.uint8)
            )
            for obj in annos
        ]
        classes = [int(obj["category_id"]) for obj in annos]
        if self.thing_recolor_prob > 0:
            image = T.recolor_segments(image, [m.numpy().astype(bool) for m in masks], self.thing_recolor_prob)

        image_t = image_to_tensor(image)  # (C, H, W)
        if self.size_divisibility > 0:
            image_t = pad_to_size_divisibility(image_t, self.size_divisibility, 128)
            masks = [pad_to_size_divisibility(m, self.size_divisibility, 0) for m in masks]
        image_shape = (image_t.shape[-2], image_t.shape[-1])

        dataset_dict["image"] = image_t
        dataset_dict["instances"] = masks_to_instances(image_shape, classes, [m.numpy() for m in masks])
        return dataset_dict
