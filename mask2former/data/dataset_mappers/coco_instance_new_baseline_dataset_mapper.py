"""Large-scale-jitter (LSJ) training mapper for COCO instance segmentation ("coco_instance_lsj")."""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch

from ...config import configurable
from ...structures import Boxes

from .. import detection_utils as utils
from .. import transforms as T
from ..polygons import PolygonMasks
from ._common import image_to_tensor

__all__ = [
    "COCOInstanceNewBaselineDatasetMapper", "LSJDatasetMapperBase", "build_transform_gen", "convert_coco_poly_to_mask",
]


def convert_coco_poly_to_mask(segmentations: Sequence[Sequence[Any]], height: int, width: int) -> torch.Tensor:
    """Per-instance polygon lists -> (N, H, W) bool masks (uint8 zeros when N=0)."""
    masks = []
    for polygons in segmentations:
        if len(polygons) == 0:
            masks.append(torch.zeros((height, width), dtype=torch.bool))
            continue
        rles = mask_util.frPyObjects([np.asarray(p, dtype=np.float64) for p in polygons], height, width)
        mask = mask_util.decode(rles)
        if mask.ndim < 3:
            mask = mask[..., None]
        masks.append(torch.as_tensor(mask, dtype=torch.uint8).any(dim=2))
    if masks:
        return torch.stack(masks, dim=0)
    return torch.zeros((0, height, width), dtype=torch.uint8)


def build_transform_gen(cfg, is_train: bool) -> List[T.Augmentation]:
    """LSJ augmentations: optional flip, ``ResizeScale`` in [MIN_SCALE, MAX_SCALE] of IMAGE_SIZE,
    then a ``FixedSizeCrop`` of IMAGE_SIZE x IMAGE_SIZE (padded)."""
    if not is_train:
        raise ValueError("Only support training augmentation")
    image_size = cfg.INPUT.IMAGE_SIZE
    augmentation: List[T.Augmentation] = []
    if cfg.INPUT.RANDOM_FLIP != "none":
        augmentation.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    augmentation.extend(
        [
            T.ResizeScale(
                min_scale=cfg.INPUT.MIN_SCALE,
                max_scale=cfg.INPUT.MAX_SCALE,
                target_height=image_size,
                target_width=image_size,
            ),
            T.FixedSizeCrop(crop_size=(image_size, image_size)),
        ]
    )
    return augmentation


class LSJDatasetMapperBase:
    """What the two LSJ mappers share: the augmentations of ``build_transform_gen`` and the
    image format; subclasses implement ``__call__``."""

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


class COCOInstanceNewBaselineDatasetMapper(LSJDatasetMapperBase):
    """Returns ``image`` (C, S, S), ``padding_mask`` (S, S) bool and (training) ``instances`` with
    ``gt_classes`` (N,), ``gt_boxes`` (tight boxes of the cropped polygons) and ``gt_masks``
    (N, S, S) bool; crowd and emptied instances are dropped."""

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.img_format)
        utils.check_image_size(dataset_dict, image)

        padding_mask = np.ones(image.shape[:2])
        image, transforms = T.apply_transform_gens(self.tfm_gens, image)
        # As in the official mapper: the pad value for segmentations is 255, so padded pixels
        # also read as "not padding" here.
        padding_mask = ~transforms.apply_segmentation(padding_mask).astype(bool)
        image_shape = image.shape[:2]

        dataset_dict["image"] = image_to_tensor(image)
        dataset_dict["padding_mask"] = torch.as_tensor(np.ascontiguousarray(padding_mask))

        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict

        if "annotations" in dataset_dict:
            for anno in dataset_dict["annotations"]:
                anno.pop("keypoints", None)
            annos = [
                utils.transform_instance_annotations(obj, transforms, image_shape)
                for obj in dataset_dict.pop("annotations")
                if obj.get("iscrowd", 0) == 0
            ]
            # Polygons as in the official mapper; RLE / mask annotations go through bitmasks.
            all_polygons = all(isinstance(obj.get("segmentation", []), list) for obj in annos)
            mask_format = "polygon" if all_polygons else "bitmask"
            instances = utils.annotations_to_instances(annos, image_shape, mask_format=mask_format)
            if not instances.has("gt_masks"):  # no (non-crowd) annotation left
                instances.gt_masks = PolygonMasks([])
            # a crop can make the original box loose: use the cropped masks' box
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
            instances = utils.filter_empty_instances(instances)
            h, w = instances.image_size
            if isinstance(instances.gt_masks, PolygonMasks):
                instances.gt_masks = convert_coco_poly_to_mask(instances.gt_masks.polygons, h, w)
            else:
                instances.gt_masks = instances.gt_masks.tensor
            if len(instances.gt_boxes) == 0:
                instances.gt_boxes = Boxes(torch.zeros((0, 4)))
            dataset_dict["instances"] = instances
        return dataset_dict
