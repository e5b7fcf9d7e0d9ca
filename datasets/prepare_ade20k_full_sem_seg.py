#!/usr/bin/env python3
"""ADE20K-full (847 classes) semantic segmentation in detectron2's layout.

Reads the ADE20K 2021 release under ``$DETECTRON2_DATASETS``: its index
``ADE20K_2021_17_01/index_ade20k.pkl`` (the lists ``folder`` and ``filename``; folders are
relative to the datasets root) and, for each image ``<folder>/<name>.jpg``, its object mask
``<folder>/<name>_seg.png`` (class = R // 10 * 256 + G). As the official script, it writes

    ADE20K_2021_17_01/images_detectron2/{training,validation}/<name>.jpg
    ADE20K_2021_17_01/annotations_detectron2/{training,validation}/<name>.tif

(validation = names ``ADE_val_*``), resizing images whose shorter side exceeds 512 to a shorter
side of 512 (bilinear; labels nearest), and storing labels as 16-bit TIFFs holding the
contiguous id (0..846) of the 847 evaluated classes, 65535 elsewhere.

The index is a pickle, and pickles can run code when loaded. It is read only with the restricted
unpickler of ``mask2former.checkpoint.safe_pickle`` (plain containers and numpy arrays); an index
that needs anything else is refused. ``--index`` also accepts a JSON file
``{"folder": [...], "filename": [...]}``.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

import _prepare_utils as U  # first: puts the repository root on sys.path
from mask2former.checkpoint.safe_pickle import UnsafePickleError, load_pickle
from mask2former.data.datasets.meta import ade20k_full_meta

__all__ = [
    "IGNORE_LABEL",
    "ade20k_full_class_mask",
    "ade20k_full_label_lut",
    "convert_image",
    "load_ade20k_index",
    "main",
    "prepare_ade20k_full_sem_seg",
    "resized_shape",
]

ADE_FULL_DIR = "ADE20K_2021_17_01"
IGNORE_LABEL = 65535
MAX_SIZE = 512
_NUM_CLASS_VALUES = (255 // 10) * 256 + 256  # every value R // 10 * 256 + G can take

_CONVERT_HINT = (
    "If you trust the file, convert it once in an environment where unpickling it is acceptable, "
    "e.g. python -c \"import json, pickle; d = pickle.load(open('index_ade20k.pkl', 'rb')); "
    "json.dump({'folder': list(d['folder']), 'filename': list(d['filename'])}, "
    "open('index_ade20k.json', 'w'))\", and pass --index index_ade20k.json."
)


def load_ade20k_index(path: str) -> Dict[str, List[str]]:
    """``{"folder": [...], "filename": [...]}`` from the ADE20K index (.pkl, restricted; or .json).

    Raises:
        UnsafePickleError: the pickle needs globals other than plain containers / numpy arrays.
        ValueError: the index lacks ``folder`` / ``filename`` lists of the same length.
    """
    U.require_file(path, "ADE20K-full index", "It ships with the ADE20K_2021_17_01 release")
    if path.endswith(".json"):
        with open(path) as f:
            index = json.load(f)
    else:
        try:
            index = load_pickle(path)
        except UnsafePickleError as err:
            raise UnsafePickleError(
                f"Refusing to read the ADE20K index '{path}': it is not made only of plain containers "
                f"and numpy arrays ({err}). Unpickling it could run arbitrary code. {_CONVERT_HINT}"
            ) from err
    if not isinstance(index, Mapping) or not {"folder", "filename"} <= set(index):
        found = sorted(index) if isinstance(index, Mapping) else type(index).__name__
        raise ValueError(f"ADE20K index '{path}' must hold 'folder' and 'filename' lists; found {found}")
    folders, filenames = [str(f) for f in index["folder"]], [str(f) for f in index["filename"]]
    if len(folders) != len(filenames):
        raise ValueError(
            f"ADE20K index '{path}': {len(folders)} folders but {len(filenames)} filenames"
        )
    return {"folder": folders, "filename": filenames}


def ade20k_full_class_mask(seg: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 ADE20K ``*_seg.png`` pixels -> (H, W) int32 class values R // 10 * 256 + G."""
    if seg.dtype != np.uint8 or seg.ndim != 3 or seg.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) uint8 object mask, got {seg.dtype} of shape {seg.shape}")
    return (seg[:, :, 0] // 10).astype(np.int32) * 256 + seg[:, :, 1].astype(np.int32)


def ade20k_full_label_lut(id_map: Optional[Mapping[int, int]] = None) -> np.ndarray:
    """(6656,) uint16 lookup: class value -> contiguous id, 65535 for the classes not evaluated.

    ``id_map`` defaults to the 847 classes of ``mask2former.data.datasets.meta``.
    """
    if id_map is None:
        id_map = ade20k_full_meta()["stuff_dataset_id_to_contiguous_id"]
    lut = np.full(_NUM_CLASS_VALUES, IGNORE_LABEL, dtype=np.uint16)
    for dataset_id, contiguous_id in id_map.items():
        if not 0 <= dataset_id < _NUM_CLASS_VALUES:
            raise ValueError(f"ADE20K-full class id {dataset_id} cannot occur in an object mask")
        lut[dataset_id] = contiguous_id
    return lut


def resized_shape(height: int, width: int, max_size: int = MAX_SIZE) -> Optional[Tuple[int, int]]:
    """(new height, new width) giving the shorter side ``max_size``, or None if it is not larger."""
    if width >= height > max_size:
        return max_size, round(width / float(height) * max_size)
    if height >= width > max_size:
        return round(height / float(width) * max_size), max_size
    return None


def convert_image(image_path: str, output_image: str, output_label: str, lut: np.ndarray) -> None:
    """Write one (possibly resized) image and its 16-bit TIFF label."""
    seg_path = image_path[: -len(".jpg")] + "_seg.png"
    image = U.read_array(image_path, "ADE20K-full image")
    if image.dtype != np.uint8 or image.ndim == 3 and image.shape[2] != 3:  # e.g. CMYK / RGBA / 16-bit
        with Image.open(image_path) as pil:
            image = np.asarray(pil.convert("RGB"))
    try:
        classes = ade20k_full_class_mask(U.read_array(seg_path, "ADE20K-full object mask"))
    except ValueError as err:
        raise ValueError(f"{seg_path}: {err}") from err
    if classes.shape != image.shape[:2]:
        raise ValueError(f"{seg_path}: size {classes.shape[::-1]} differs from the image's {image.shape[1::-1]}")
    new_shape = resized_shape(*image.shape[:2])
    if new_shape is not None:
        h, w = new_shape
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        classes = cv2.resize(classes, (w, h), interpolation=cv2.INTER_NEAREST)
    Image.fromarray(image).save(output_image)
    Image.fromarray(lut[classes]).save(output_label)  # (H, W) uint16 -> 16-bit TIFF


def prepare_ade20k_full_sem_seg(root: str, index_file: Optional[str] = None, workers: int = 1) -> Dict[str, int]:
    """Convert every image of the index; returns {split: number of images}."""
    base = os.path.join(root, ADE_FULL_DIR)
    index = load_ade20k_index(index_file or os.path.join(base, "index_ade20k.pkl"))
    for kind in ("images_detectron2", "annotations_detectron2"):
        for split in ("training", "validation"):
            os.makedirs(os.path.join(base, kind, split), exist_ok=True)
    lut = ade20k_full_label_lut()
    tasks: List[Tuple[Any, ...]] = []
    counts = {"training": 0, "validation": 0}
    for folder, name in zip(index["folder"], index["filename"]):
        if not name.endswith(".jpg"):
            raise ValueError(f"ADE20K index entry '{folder}/{name}' is not a .jpg file")
        split = "validation" if name.split("_")[1:2] == ["val"] else "training"  # ADE_val_*.jpg
        counts[split] += 1
        tasks.append(
            (
                os.path.join(root, folder, name),
                os.path.join(base, "images_detectron2", split, name),
                os.path.join(base, "annotations_detectron2", split, name[: -len(".jpg")] + ".tif"),
                lut,
            )
        )
    U.run_tasks(convert_image, tasks, workers, desc="ADE20K-full")
    return counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = U.make_parser(__doc__)
    parser.add_argument(
        "--index", default=None, help="index file (default: <root>/ADE20K_2021_17_01/index_ade20k.pkl)"
    )
    args = parser.parse_args(argv)
    for split, n in prepare_ade20k_full_sem_seg(U.resolve_root(args), args.index, args.workers).items():
        print(f"{split}: converted {n} images")


if __name__ == "__main__":
    main()
