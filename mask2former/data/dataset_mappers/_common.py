"""Small helpers shared by the MaskFormer dataset mappers."""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from torch.nn import functional as F

from ...structures import Instances

from .. import transforms as T


def mask_former_train_augmentations(
    cfg, crop: T.Augmentation
) -> List[Union[T.Augmentation, T.Transform]]:
    """The MaskFormer mappers' training augmentations: resize the shortest edge, ``crop`` if
    INPUT.CROP.ENABLED, SSD colour jitter if INPUT.COLOR_AUG_SSD, then a horizontal flip."""
    augs: List[Union[T.Augmentation, T.Transform]] = [
        T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        )
    ]
    if cfg.INPUT.CROP.ENABLED:
        augs.append(crop)
    if cfg.INPUT.COLOR_AUG_SSD:
        augs.append(T.ColorAugSSDTransform(img_format=cfg.INPUT.FORMAT))
    augs.append(T.RandomFlip())
    return augs


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) numpy image -> (C, H, W) tensor of the same dtype."""
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


def pad_to_size_divisibility(tensor: torch.Tensor, size_divisibility: int, value: float) -> torch.Tensor:
    """Pad (bottom / right) the last two dims to (size_divisibility, size_divisibility).

    Same as the official MaskFormer mappers, which use it after a crop of that size: it pads to
    exactly ``size_divisibility`` (a larger input would be cut, as ``F.pad`` with negative
    padding does).
    """
    h, w = tensor.shape[-2:]
    padding = [0, size_divisibility - w, 0, size_divisibility - h]
    return F.pad(tensor, padding, value=value).contiguous()


def masks_to_instances(
    image_shape: Tuple[int, int], classes: Sequence[int], masks: List[np.ndarray]
) -> Instances:
    """``Instances`` with ``gt_classes`` (N,) int64 and ``gt_masks`` (N, H, W) (bool; float zeros when N=0)."""
    instances = Instances(image_shape)
    instances.gt_classes = torch.tensor(np.array(classes), dtype=torch.int64).reshape(-1)
    if len(masks) == 0:
        instances.gt_masks = torch.zeros((0, image_shape[0], image_shape[1]))
    else:
        instances.gt_masks = torch.stack(
            [torch.from_numpy(np.ascontiguousarray(m)).to(torch.bool) for m in masks]
        )
    return instances
