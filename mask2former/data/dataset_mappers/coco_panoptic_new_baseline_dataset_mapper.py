"""Large-scale-jitter (LSJ) training mapper for COCO panoptic segmentation ("coco_panoptic_lsj")."""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List

import torch

from mask2former.config import configurable
from mask2former.structures import BitMasks, Boxes

from .. import detection_utils as utils
from .. import transforms as T
from mask2former.utils.panoptic_utils import rgb2id
from ._common import image_to_tensor, masks_to_instances
from .coco_instance_new_baseline_dataset_mapper import build_transform_gen

__all__ = ["COCOPanopticNewBaselineDatasetMapper"]


class COCOPanopticNewBaselineDatasetMapper:
    """Returns ``image`` (C, S, S) and (training) ``instances`` from the panoptic PNG (crowd
    segments skipped): ``gt_classes`` (N,), ``gt_masks`` (N, S, S) bool, ``gt_boxes`` (N, 4)."""

    @configurable
    def __init__(self, is_train: bool = True, *, tfm_gens: List[T.Augmentation], image_format: str):
        self.tfm_gens = tfm_gens
        logging.getLogger(__name__).info(
            "[%s] Full TransformGens used in training: %s", type(self).__name__, tfm_gens
        )
        self.img_format = image_format
        self.is_train = is_train

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> Dict[str, Any]:
        return {
            "is_train": is_train,
            "tfm_gens": build_transform_gen(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
        }

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.img_format)
        utils.check_image_size(dataset_dict, image)

        image, transforms = T.apply_transform_gens(self.tfm_gens, image)
        image_shape = image.shape[:2]
        dataset_dict["image"] = image_to_tensor(image)

        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict

        if "pan_seg_file_name" in dataset_dict:
            pan_seg_gt = utils.read_image(dataset_dict.pop("pan_seg_file_name"), "RGB")
            pan_seg_gt = rgb2id(transforms.apply_segmentation(pan_seg_gt))  # pad colour 255 -> no segment
            kept = [s for s in dataset_dict["segments_info"] if not s["iscrowd"]]
            instances = masks_to_instances(
                image_shape, [s["category_id"] for s in kept], [pan_seg_gt == s["id"] for s in kept]
            )
            if len(kept) == 0:
                instances.gt_boxes = Boxes(torch.zeros((0, 4)))
            else:
                instances.gt_boxes = BitMasks(instances.gt_masks).get_bounding_boxes()
            dataset_dict["instances"] = instances
        return dataset_dict
