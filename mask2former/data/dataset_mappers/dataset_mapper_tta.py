"""detectron2's ``DatasetMapperTTA``: the test-time-augmented copies of one model input."""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from ...config import configurable

from .. import transforms as T

__all__ = ["DatasetMapperTTA"]


class DatasetMapperTTA:
    """Map one model input (the output of the test mapper) to its augmented copies.

    For each short-edge length of ``min_sizes`` (the longer edge capped at ``max_size``): the
    image resized to it and, with ``flip``, also that image flipped horizontally — in that order
    (resize, resize + flip, next size, ...). The resize applies to the input's ``image`` (already
    resized by the test mapper); ``height`` / ``width`` (the output size) are kept, so the model
    returns every copy's prediction at the original resolution. Each copy holds ``transforms``:
    the TransformList from the original image (``height`` x ``width``) to the copy, whose
    ``HFlipTransform`` tells the TTA model which predictions to flip back.
    """

    @configurable
    def __init__(self, *, min_sizes: Sequence[int], max_size: int, flip: bool):
        if not min_sizes:
            raise ValueError("DatasetMapperTTA: TEST.AUG.MIN_SIZES is empty")
        if any(int(s) <= 0 for s in min_sizes) or int(max_size) <= 0:
            raise ValueError(
                f"DatasetMapperTTA: sizes must be positive, got TEST.AUG.MIN_SIZES={tuple(min_sizes)}, "
                f"TEST.AUG.MAX_SIZE={max_size}"
            )
        self.min_sizes = [int(s) for s in min_sizes]
        self.max_size = int(max_size)
        self.flip = bool(flip)

    @classmethod
    def from_config(cls, cfg) -> Dict[str, Any]:
        return {"min_sizes": cfg.TEST.AUG.MIN_SIZES, "max_size": cfg.TEST.AUG.MAX_SIZE, "flip": cfg.TEST.AUG.FLIP}

    def __call__(self, dataset_dict: Dict[str, Any]) -> List[Dict[str, Any]]:
        """``dataset_dict`` with ``image`` (C, H, W) and ``height`` / ``width`` -> its copies."""
        if "image" not in dataset_dict:
            raise KeyError("DatasetMapperTTA needs the test mapper's output: a dict with 'image' (C, H, W)")
        image = dataset_dict["image"].permute(1, 2, 0).numpy()  # (H, W, C)
        orig_shape = (dataset_dict.get("height", image.shape[0]), dataset_dict.get("width", image.shape[1]))
        if image.shape[:2] != orig_shape:
            pre_tfm: T.Transform = T.ResizeTransform(orig_shape[0], orig_shape[1], image.shape[0], image.shape[1])
        else:
            pre_tfm = T.NoOpTransform()

        candidates: List[List[T.Augmentation]] = []
        for min_size in self.min_sizes:
            resize = T.ResizeShortestEdge(min_size, self.max_size)
            candidates.append([resize])
            if self.flip:
                candidates.append([resize, T.RandomFlip(prob=1.0)])

        copies = []
        for augs in candidates:
            new_image, tfms = T.apply_augmentations(augs, np.copy(image))
            dic = copy.copy(dataset_dict)  # the other fields are shared, read-only
            dic["transforms"] = pre_tfm + tfms
            dic["image"] = torch.from_numpy(np.ascontiguousarray(new_image.transpose(2, 0, 1)))  # (C, h, w)
            copies.append(dic)
        return copies
