"""ADE20K instance annotations (``ADEChallengeData2016/annotations_instance/{split}/*.png``), shared
by ``prepare_ade20k_pan_seg.py`` and ``prepare_ade20k_ins_seg.py``.

Each PNG is RGB: R = instance class (1..100, the SceneParsing instance benchmark's classes,
0 = none), G = instance id within the image (0 = no instance), B unused. Instance class k is
the k-th of Mask2Former's 100 ADE20K instance categories, whose dataset ids are 0-based ADE20K
SceneParsing (150-class) ids: class 1 "bed" -> 7, 2 "windowpane" -> 8, ... 100 "flag" -> 149
(the official ``ade20k_instance_catid_mapping.txt``).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterator, Tuple

import numpy as np
from PIL import Image

import _prepare_utils as U  # first: puts the repository root on sys.path
from mask2former.data.datasets.meta import ade20k_instance_meta

__all__ = [
    "ADE_DIR",
    "SPLITS",
    "image_entry",
    "instance_class_to_ade150",
    "iter_instances",
    "read_instance_png",
]

ADE_DIR = "ADEChallengeData2016"
SPLITS = {"train": "training", "val": "validation"}


def instance_class_to_ade150() -> Dict[int, int]:
    """Instance class (R channel, 1..100) -> 0-based ADE20K-150 category id."""
    ade150_ids = list(ade20k_instance_meta()["thing_dataset_id_to_contiguous_id"])
    return {k + 1: int(ade150_id) for k, ade150_id in enumerate(ade150_ids)}


def image_entry(image_path: str) -> Dict[str, Any]:
    """COCO ``images`` entry: id = file name without extension (a string, as official)."""
    U.require_file(image_path, "ADE20K image")
    with Image.open(image_path) as image:
        width, height = image.size
    name = os.path.basename(image_path)
    return {"id": name.split(".")[0], "file_name": name, "width": width, "height": height}


def read_instance_png(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """(classes, instance_ids): the R and G channels, each (H, W) uint8."""
    pixels = U.read_array(path, "ADE20K instance annotation")
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] < 3:
        raise ValueError(
            f"ADE20K instance annotation '{path}' must be an 8-bit RGB PNG, got {pixels.dtype} of shape {pixels.shape}"
        )
    return pixels[:, :, 0], pixels[:, :, 1]


def iter_instances(
    classes: np.ndarray, instance_ids: np.ndarray, source: str = "<array>"
) -> Iterator[Tuple[int, int, np.ndarray]]:
    """(instance id, instance class 1..100, (H, W) bool mask) for each instance id > 0, by id."""
    for instance_id in np.unique(instance_ids):
        if instance_id == 0:
            continue
        mask = instance_ids == instance_id
        cls = np.unique(classes[mask])
        if len(cls) != 1 or not 1 <= int(cls[0]) <= 100:
            raise ValueError(
                f"{source}: instance {int(instance_id)} has instance class(es) {cls.tolist()}; "
                "expected exactly one class in 1..100"
            )
        yield int(instance_id), int(cls[0]), mask
