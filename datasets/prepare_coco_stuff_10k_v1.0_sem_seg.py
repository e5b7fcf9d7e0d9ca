#!/usr/bin/env python3
"""COCO-Stuff-10k (v1.0) semantic segmentation in detectron2's layout.

Reads, under ``$DETECTRON2_DATASETS/coco/coco_stuff_10k`` (the unzipped cocostuff-10k-v1.0.zip),
``imageLists/{train,test}.txt``, ``images/<name>.jpg`` and ``annotations/<name>.mat`` and writes

    images_detectron2/{train,test}/<name>.jpg       (copies)
    annotations_detectron2/{train,test}/<name>.png  (8-bit labels)

as the official script does. The label matrix ``S`` of v1.0 holds 1 for "unlabeled" and 2..172
for the 171 classes (COCO's 80 things, then 91 stuff); they become 255 and 0..170, the
contiguous ids of ``coco_2017_{train,test}_stuff_10k_sem_seg``. (v1.1 files use other ids.)
MATLAB v7.3 files (HDF5) need ``h5py``; older MAT versions are read with scipy.
"""
from __future__ import annotations

import os
import shutil
from typing import Dict, Optional, Sequence

import numpy as np
from PIL import Image

import _prepare_utils as U

__all__ = ["convert_coco_stuff_label", "convert_image", "main", "prepare_coco_stuff_10k", "read_coco_stuff_mat"]

SPLITS = ("test", "train")
NUM_CLASSES = 171
IGNORE_LABEL = 255


def read_coco_stuff_mat(path: str) -> np.ndarray:
    """The (H, W) label matrix ``S`` of a COCO-Stuff ``.mat`` file (any MATLAB version)."""
    U.require_file(path, "COCO-Stuff annotation")
    with open(path, "rb") as f:
        header = f.read(128)
    if b"MATLAB 7.3" in header or header.startswith(b"\x89HDF"):
        try:
            import h5py
        except ImportError as err:
            raise ImportError(
                f"'{path}' is a MATLAB v7.3 (HDF5) file; reading it needs h5py (pip install h5py)"
            ) from err
        with h5py.File(path, "r") as mat:
            return np.array(mat["S"]).T  # HDF5 stores MATLAB's column-major matrix transposed
    from scipy.io import loadmat

    mat = loadmat(path)
    if "S" not in mat:
        raise KeyError(f"COCO-Stuff annotation '{path}' has no label matrix 'S' (keys: {sorted(mat)})")
    return np.asarray(mat["S"])


def convert_coco_stuff_label(label: np.ndarray) -> np.ndarray:
    """(H, W) v1.0 labels -> (H, W) uint8: k in 2..172 -> k - 2, anything else (1 = unlabeled) -> 255."""
    shifted = label.astype(np.int64) - 2
    shifted[(shifted < 0) | (shifted >= NUM_CLASSES)] = IGNORE_LABEL
    return shifted.astype(np.uint8)


def convert_image(image_path: str, mat_path: str, output_image: str, output_label: str) -> None:
    """Copy one image and write its label PNG."""
    U.require_file(image_path, "COCO-Stuff image")
    with Image.open(image_path) as image:
        width, height = image.size
    label = convert_coco_stuff_label(read_coco_stuff_mat(mat_path))
    if label.shape != (height, width):
        raise ValueError(f"{mat_path}: label size {label.shape[::-1]} differs from the image's {(width, height)}")
    shutil.copyfile(image_path, output_image)
    Image.fromarray(label).save(output_label)


def prepare_coco_stuff_10k(root: str, splits: Sequence[str] = SPLITS, workers: int = 1) -> Dict[str, int]:
    """Convert the images listed in ``imageLists/<split>.txt``; returns {split: number of images}."""
    base = os.path.join(root, "coco", "coco_stuff_10k")
    counts = {}
    for split in splits:
        list_file = U.require_file(os.path.join(base, "imageLists", f"{split}.txt"), "COCO-Stuff image list")
        with open(list_file) as f:
            names = [line.strip() for line in f if line.strip()]
        image_dir = os.path.join(base, "images_detectron2", split)
        label_dir = os.path.join(base, "annotations_detectron2", split)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(label_dir, exist_ok=True)
        tasks = [
            (
                os.path.join(base, "images", name + ".jpg"),
                os.path.join(base, "annotations", name + ".mat"),
                os.path.join(image_dir, name + ".jpg"),
                os.path.join(label_dir, name + ".png"),
            )
            for name in names
        ]
        U.run_tasks(convert_image, tasks, workers, desc=split)
        counts[split] = len(tasks)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = U.make_parser(__doc__)
    parser.add_argument("--splits", nargs="+", choices=list(SPLITS), default=list(SPLITS))
    args = parser.parse_args(argv)
    for split, n in prepare_coco_stuff_10k(U.resolve_root(args), args.splits, args.workers).items():
        print(f"{split}: converted {n} images")


if __name__ == "__main__":
    main()
