#!/usr/bin/env python3
"""Semantic labels from the COCO panoptic annotations (Mask2Former's ``panoptic_semseg_*``).

Every pixel of a panoptic segment gets the contiguous id of the segment's category: the 133
COCO panoptic categories (80 things, then 53 stuff) in order, i.e. ids 0..132. Unlabeled pixels
(segment id 0, or a segment absent from the JSON) get 255. Reads, under the datasets root::

    coco/annotations/panoptic_{split}.json
    coco/panoptic_{split}/*.png

and writes ``coco/panoptic_semseg_{split}/<same name>.png`` (8-bit, one channel), which the
``coco_2017_{train,val}_panoptic_with_sem_seg`` datasets read as ``sem_seg_file_name``.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
from PIL import Image

import _prepare_utils as U  # first: puts the repository root on sys.path
from mask2former.data.datasets.meta import coco_categories
from mask2former.utils.panoptic_utils import rgb2id

__all__ = [
    "coco_semantic_id_map",
    "convert_panoptic_file",
    "main",
    "panoptic_to_semantic",
    "separate_coco_semantic_from_panoptic",
]

IGNORE_LABEL = 255
SPLITS = ("val2017", "train2017")


def coco_semantic_id_map(categories: Optional[Sequence[Mapping[str, Any]]] = None) -> Dict[int, int]:
    """Dataset category id -> contiguous id (position in ``categories``; default: the 133 COCO
    panoptic categories of ``mask2former.data.datasets.meta``)."""
    categories = coco_categories() if categories is None else categories
    if len(categories) >= IGNORE_LABEL:
        raise ValueError(f"{len(categories)} categories do not fit in uint8 labels with {IGNORE_LABEL} = ignore")
    return {int(cat["id"]): i for i, cat in enumerate(categories)}


def panoptic_to_semantic(
    panoptic: np.ndarray, segments_info: Sequence[Mapping[str, Any]], id_map: Mapping[int, int]
) -> np.ndarray:
    """(H, W, 3) uint8 COCO panoptic PNG pixels -> (H, W) uint8 contiguous class ids, 255 = unlabeled."""
    if panoptic.ndim != 3 or panoptic.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB panoptic image, got shape {panoptic.shape}")
    segment_ids = rgb2id(np.ascontiguousarray(panoptic[:, :, :3]))  # (H, W)
    semantic = np.full(segment_ids.shape, IGNORE_LABEL, dtype=np.uint8)
    for seg in segments_info:
        category_id = seg["category_id"]
        if category_id not in id_map:
            raise ValueError(f"segment {seg['id']} has category_id={category_id}, which is not a known category")
        semantic[segment_ids == seg["id"]] = id_map[category_id]
    return semantic


def convert_panoptic_file(
    input_png: str, output_png: str, segments_info: Sequence[Mapping[str, Any]], id_map: Mapping[int, int]
) -> None:
    """Read one panoptic PNG and write its semantic PNG."""
    panoptic = U.read_array(input_png, "COCO panoptic PNG")
    try:
        semantic = panoptic_to_semantic(panoptic, segments_info, id_map)
    except ValueError as err:
        raise ValueError(f"{input_png}: {err}") from err
    Image.fromarray(semantic).save(output_png)


def separate_coco_semantic_from_panoptic(
    panoptic_json: str,
    panoptic_root: str,
    sem_seg_root: str,
    categories: Optional[Sequence[Mapping[str, Any]]] = None,
    workers: int = 1,
) -> int:
    """Write the semantic PNG of every annotation of ``panoptic_json`` into ``sem_seg_root``.

    Returns the number of files written.
    """
    U.require_file(panoptic_json, "COCO panoptic json")
    U.require_dir(panoptic_root, "COCO panoptic PNG")
    id_map = coco_semantic_id_map(categories)
    with open(panoptic_json) as f:
        annotations: List[Dict[str, Any]] = json.load(f)["annotations"]
    os.makedirs(sem_seg_root, exist_ok=True)
    tasks = [
        (
            os.path.join(panoptic_root, ann["file_name"]),
            os.path.join(sem_seg_root, ann["file_name"]),
            ann["segments_info"],
            id_map,
        )
        for ann in annotations
    ]
    U.run_tasks(convert_panoptic_file, tasks, workers, desc=os.path.basename(sem_seg_root))
    return len(tasks)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = U.make_parser(__doc__)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), help="default: %(default)s")
    args = parser.parse_args(argv)
    coco = os.path.join(U.resolve_root(args), "coco")
    for split in args.splits:
        start = time.time()
        out = os.path.join(coco, f"panoptic_semseg_{split}")
        n = separate_coco_semantic_from_panoptic(
            os.path.join(coco, "annotations", f"panoptic_{split}.json"),
            os.path.join(coco, f"panoptic_{split}"),
            out,
            workers=args.workers,
        )
        print(f"Wrote {n} semantic PNGs to {out} in {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()
