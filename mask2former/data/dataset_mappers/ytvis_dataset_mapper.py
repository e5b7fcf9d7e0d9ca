"""Clip mapper for YouTube-VIS-format videos (training clips and full test videos)."""
from __future__ import annotations

import copy
import logging
import random
from typing import Any, Dict, List, Sequence, Union

import numpy as np
import torch

from ...config import configurable
from ...structures import BitMasks, Instances

from .. import detection_utils as utils
from .. import transforms as T
from ._common import image_to_tensor
from .ytvis_augmentation import build_ytvis_augmentation, start_clip

__all__ = ["YTVISDatasetMapper"]


class YTVISDatasetMapper:
    """Maps one video dict of ``load_ytvis_json`` to the video model's input.

    Training: ``sampling_frame_num`` frames are drawn as the official mapper does (a reference
    frame uniformly, the others uniformly *with replacement* among the frames within
    ``sampling_frame_range`` of it, then sorted, or shuffled with ``sampling_frame_shuffle``).
    Testing: every frame, in order. Clip-level augmentations (see ``ytvis_augmentation``) make
    the same random decision for all frames of the clip.

    Returns the dict's ``height``, ``width``, ``length``, ``video_id`` plus ``file_names`` (the
    T used frames), ``image`` (T tensors (C, H, W) uint8) and ``instances`` (training: T
    ``Instances`` of the same N tracks, in sorted annotation-id order, with ``gt_ids`` (N,)
    (-1 where the object is absent or cropped away), ``gt_classes`` (N,), ``gt_masks``
    ``BitMasks`` (N, H, W) and ``gt_boxes``; testing: an empty list).
    """

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: Sequence[Union[T.Augmentation, T.Transform]],
        image_format: str,
        sampling_frame_num: int = 2,
        sampling_frame_range: int = 5,
        sampling_frame_shuffle: bool = False,
    ):
        if sampling_frame_num < 1:
            raise ValueError(f"sampling_frame_num (INPUT.SAMPLING_FRAME_NUM) must be >= 1, got {sampling_frame_num}")
        if sampling_frame_num > 1 and sampling_frame_range < 1:
            raise ValueError(f"sampling_frame_range (INPUT.SAMPLING_FRAME_RANGE) must be >= 1 to sample "
                             f"{sampling_frame_num} frames, got {sampling_frame_range}")
        self.is_train = is_train
        self.augmentations = list(augmentations)
        self.image_format = image_format
        self.sampling_frame_num = sampling_frame_num
        self.sampling_frame_range = sampling_frame_range
        self.sampling_frame_shuffle = sampling_frame_shuffle
        logging.getLogger(__name__).info("[YTVISDatasetMapper] Augmentations used in %s: %s",
                                         "training" if is_train else "inference", self.augmentations)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> Dict[str, Any]:
        return {
            "is_train": is_train,
            "augmentations": build_ytvis_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "sampling_frame_num": cfg.INPUT.SAMPLING_FRAME_NUM,
            "sampling_frame_range": cfg.INPUT.SAMPLING_FRAME_RANGE,
            "sampling_frame_shuffle": cfg.INPUT.SAMPLING_FRAME_SHUFFLE,
        }

    def sample_frames(self, video_length: int, video_id: Any = None) -> List[int]:
        """Indices of the training clip's frames (python ``random`` for the reference frame,
        numpy for the others, as the official mapper)."""
        if video_length < self.sampling_frame_num:
            raise ValueError(f"Video {video_id} has {video_length} frames, fewer than "
                             f"INPUT.SAMPLING_FRAME_NUM={self.sampling_frame_num}")
        ref = random.randrange(video_length)
        start = max(0, ref - self.sampling_frame_range)
        end = min(video_length, ref + self.sampling_frame_range + 1)
        others = np.random.choice(np.array(list(range(start, ref)) + list(range(ref + 1, end))),
                                  self.sampling_frame_num - 1)
        selected = sorted(others.tolist() + [ref])
        if self.sampling_frame_shuffle:
            random.shuffle(selected)
        return selected

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        video_id, length = dataset_dict.get("video_id"), int(dataset_dict["length"])
        file_names = dataset_dict["file_names"]
        if len(file_names) != length:
            raise ValueError(f"Video {video_id} has length {length} but {len(file_names)} file_names")
        video_annos = dataset_dict.get("annotations")
        if self.is_train and video_annos is not None and len(video_annos) != length:
            raise ValueError(f"Video {video_id} has length {length} but annotations for {len(video_annos)} frames")
        selected = self.sample_frames(length, video_id) if self.is_train else list(range(length))
        track_ids: List[int] = []
        track_classes: Dict[int, int] = {}
        if self.is_train and video_annos is not None:
            for frame_idx in selected:
                for obj in video_annos[frame_idx]:
                    if obj.get("iscrowd", 0) == 0:
                        track_classes.setdefault(obj["id"], int(obj["category_id"]))
            track_ids = sorted(track_classes)

        out = {k: v for k, v in dataset_dict.items() if k not in ("annotations", "file_names")}
        out.update(file_names=[file_names[i] for i in selected], image=[], instances=[])
        start_clip(self.augmentations)
        for frame_idx in selected:
            where = f"video {video_id}, frame {frame_idx} ({file_names[frame_idx]})"
            try:
                image = utils.read_image(file_names[frame_idx], format=self.image_format)
                utils.check_image_size({"height": dataset_dict["height"], "width": dataset_dict["width"]}, image)
            except (OSError, ValueError) as err:
                raise type(err)(f"{where}: {err}") from err
            aug_input = T.AugInput(image)
            transforms = T.AugmentationList(self.augmentations)(aug_input)
            image = aug_input.image
            out["image"].append(image_to_tensor(image))  # (C, H, W)
            if self.is_train and video_annos is not None:
                out["instances"].append(
                    self._frame_instances(video_annos[frame_idx], transforms, image.shape[:2], track_ids, track_classes)
                )
        return out

    @staticmethod
    def _frame_instances(annos: List[Dict[str, Any]], transforms, image_shape, track_ids: List[int],
                         track_classes: Dict[int, int]) -> Instances:
        """``Instances`` of the clip's N tracks in one frame (absent ones: id -1, empty mask)."""
        h, w = image_shape
        masks = torch.zeros((len(track_ids), h, w), dtype=torch.bool)  # (N, H, W)
        ids = torch.full((len(track_ids),), -1, dtype=torch.int64)
        slot = {track_id: k for k, track_id in enumerate(track_ids)}
        for obj in annos:
            if obj.get("iscrowd", 0) != 0:
                continue
            obj = utils.transform_instance_annotations(copy.deepcopy(obj), transforms, image_shape)
            k = slot[obj["id"]]
            masks[k] = torch.from_numpy(np.array(utils.segmentation_to_mask(obj["segmentation"], h, w), dtype=bool))
            if masks[k].any():
                ids[k] = obj["id"]
        instances = Instances((h, w))
        instances.gt_ids = ids
        instances.gt_classes = torch.tensor([track_classes[t] for t in track_ids], dtype=torch.int64)
        instances.gt_masks = BitMasks(masks)
        instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        return instances
