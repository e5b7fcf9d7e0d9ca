#!/usr/bin/env python3
"""ADE20K SceneParsing (150 classes) labels in detectron2's convention.

The official annotations (``ADEChallengeData2016/annotations/{training,validation}/*.png``)
hold 0 for "other objects" and k = 1..150 for the classes. This writes the same PNGs with
0 -> 255 (ignore) and k -> k - 1 into ``ADEChallengeData2016/annotations_detectron2/{split}/``,
which ``ade20k_sem_seg_{train,val}`` and ``ade20k_panoptic_{train,val}`` read.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import numpy as np
from PIL import Image

import _prepare_utils as U

__all__ = ["convert_ade20k_label", "convert_label_file", "main", "prepare_ade20k_sem_seg"]

SPLITS = ("training", "validation")


def convert_ade20k_label(label: np.ndarray) -> np.ndarray:
    """(H, W) uint8 ADE20K label -> (H, W) uint8: 0 -> 255, k -> k - 1."""
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"expected an (H, W) uint8 label map, got {label.dtype} of shape {label.shape}")
    return label - np.uint8(1)  # uint8 arithmetic wraps 0 to 255


def convert_label_file(input_png: str, output_png: str) -> None:
    """Convert one annotation PNG."""
    label = U.read_array(input_png, "ADE20K annotation")
    try:
        converted = convert_ade20k_label(label)
    except ValueError as err:
        raise ValueError(f"{input_png}: {err}") from err
    Image.fromarray(converted).save(output_png)


def prepare_ade20k_sem_seg(root: str, splits: Sequence[str] = SPLITS, workers: int = 1) -> Dict[str, int]:
    """Convert the splits under ``root/ADEChallengeData2016``; returns {split: number of files}."""
    base = os.path.join(root, "ADEChallengeData2016")
    counts = {}
    for split in splits:
        annotation_dir = os.path.join(base, "annotations", split)
        output_dir = os.path.join(base, "annotations_detectron2", split)
        names = U.list_files(annotation_dir, ".png", "ADE20K annotation")
        os.makedirs(output_dir, exist_ok=True)
        tasks = [(os.path.join(annotation_dir, n), os.path.join(output_dir, n)) for n in names]
        U.run_tasks(convert_label_file, tasks, workers, desc=split)
        counts[split] = len(tasks)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = U.make_parser(__doc__)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), help="default: %(default)s")
    args = parser.parse_args(argv)
    for split, n in prepare_ade20k_sem_seg(U.resolve_root(args), args.splits, args.workers).items():
        print(f"{split}: converted {n} annotations")


if __name__ == "__main__":
    main()
