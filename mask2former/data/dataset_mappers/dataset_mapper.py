"""detectron2's default ``DatasetMapper``: read, augment (resize for inference), tensorize."""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

from ...config import configurable

from .. import detection_utils as utils
from .. import transforms as T
from ...utils.label_checks import check_label_size, to_single_channel_label
from ._common import image_to_tensor

__all__ = ["DatasetMapper"]


class DatasetMapper:
    """Maps a dataset dict to model input: ``image`` (C, H, W) uint8 in ``image_format`` order,
    the dict's ``height`` / ``width`` (original size, filled in from the image when missing),
    ``sem_seg`` (H, W) long if the dict names a label map, and in training ``instances``
    (``gt_boxes``, ``gt_classes``, ``gt_masks`` when ``use_instance_mask``)."""

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: List[Union[T.Augmentation, T.Transform]],
        image_format: str,
        use_instance_mask: bool = False,
        instance_mask_format: str = "polygon",
        recompute_boxes: bool = False,
    ):
        if recompute_boxes and not use_instance_mask:
            raise ValueError("recompute_boxes requires instance masks")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.use_instance_mask = use_instance_mask
        self.instance_mask_format = instance_mask_format
        self.recompute_boxes = recompute_boxes
        mode = "training" if is_train else "inference"
        logging.getLogger(__name__).info(
            "[DatasetMapper] Augmentations used in %s: %s", mode, augmentations
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> Dict[str, Any]:
        augs = utils.build_augmentation(cfg, is_train)
        recompute_boxes = False
        if cfg.INPUT.CROP.ENABLED and is_train:
            augs.insert(0, T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
            recompute_boxes = bool(cfg.MODEL.MASK_ON)
        return {
            "is_train": is_train,
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "use_instance_mask": bool(cfg.MODEL.MASK_ON),
            "instance_mask_format": cfg.INPUT.MASK_FORMAT,
            "recompute_boxes": recompute_boxes,
        }

    def _transform_annotations(self, dataset_dict: Dict[str, Any], transforms, image_shape) -> None:
        for anno in dataset_dict["annotations"]:
            if not self.use_instance_mask:
                anno.pop("segmentation", None)
            anno.pop("keypoints", None)
        annos = [
            utils.transform_instance_annotations(obj, transforms, image_shape)
            for obj in dataset_dict.pop("annotations")
            if obj.get("iscrowd", 0) == 0
        ]
        instances = utils.annotations_to_instances(annos, image_shape, mask_format=self.instance_mask_format)
        if self.recompute_boxes and instances.has("gt_masks"):
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        dataset_dict["instances"] = utils.filter_empty_instances(instances)

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)

        sem_seg_gt: Optional[np.ndarray] = None
        if "sem_seg_file_name" in dataset_dict:
            label_file = dataset_dict.pop("sem_seg_file_name")
            sem_seg_gt = to_single_channel_label(utils.read_image(label_file), label_file, dataset_dict["file_name"])
            check_label_size(sem_seg_gt.shape, image.shape[:2], label_file, dataset_dict["file_name"])
            sem_seg_gt = sem_seg_gt.astype("double")

        aug_input = T.AugInput(image, sem_seg=sem_seg_gt)
        transforms = self.augmentations(aug_input)
        image, sem_seg_gt = aug_input.image, aug_input.sem_seg
        image_shape = image.shape[:2]

        dataset_dict["image"] = image_to_tensor(image)
        if sem_seg_gt is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg_gt.astype("long"))

        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict
