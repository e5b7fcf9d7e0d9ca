"""Large-scale-jitter (LSJ) training mapper for COCO panoptic segmentation ("coco_panoptic_lsj")."""
from __future__ import annotations

import copy
from typing import Any, Dict

import torch

from ...structures import BitMasks, Boxes

from .. import detection_utils as utils
from .. import transforms as T
from ...utils.label_checks import check_label_size
from ...utils.panoptic_utils import rgb2id
from ._common import image_to_tensor, masks_to_instances
from .coco_instance_new_baseline_dataset_mapper import LSJDatasetMapperBase

__all__ = ["COCOPanopticNewBaselineDatasetMapper"]


class COCOPanopticNewBaselineDatasetMapper(LSJDatasetMapperBase):
    """Returns ``image`` (C, S, S) and (training) ``instances`` from the panoptic PNG (crowd
    segments skipped): ``gt_classes`` (N,), ``gt_masks`` (N, S, S) bool, ``gt_boxes`` (N, 4)."""

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.img_format)
        utils.check_image_size(dataset_dict, image)
        original_hw = image.shape[:2]

        image, transforms = T.apply_transform_gens(self.tfm_gens, image)
        image_shape = image.shape[:2]
        dataset_dict["image"] = image_to_tensor(image)

        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict

        if "pan_seg_file_name" in dataset_dict:
            pan_seg_file = dataset_dict.pop("pan_seg_file_name")
            pan_seg_gt = utils.read_image(pan_seg_file, "RGB")
            check_label_size(pan_seg_gt.shape[:2], original_hw, pan_seg_file, dataset_dict["file_name"], "Panoptic")
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
