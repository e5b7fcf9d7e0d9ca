#!/usr/bin/env python3
"""ADE20K panoptic annotations in COCO panoptic format (Mask2Former's ``ade20k_panoptic_*``).

Combines, under ``$DETECTRON2_DATASETS/ADEChallengeData2016``, the SceneParsing semantic labels
(``annotations/{training,validation}/*.png``, 0 = other, k = class k-1) and the instance
annotations (``annotations_instance/{training,validation}/*.png``) into

    ade20k_panoptic_{train,val}/<image id>.png   RGB, segment id = R + 256 G + 256^2 B, 0 = void
    ade20k_panoptic_{train,val}.json             images, annotations, categories (all 150)

as the official script does: the 50 stuff classes come from the semantic labels (one segment
per class present; its area and bbox are those of the whole semantic region), then each instance
of the 100 thing classes is pasted on top (the two annotations overlap a little). Thing pixels
of the semantic labels not covered by an instance stay void. Colours follow panopticapi's
IdGenerator (stuff: the class colour; the first instance of a thing class: the class colour,
later ones a random colour within +-30), with a per-image seed so reruns give the same files.
"""
from __future__ import annotations

import os
import zlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

import _prepare_utils as U  # first: puts the repository root on sys.path
from _ade20k_instances import ADE_DIR, SPLITS, image_entry, instance_class_to_ade150, iter_instances, read_instance_png
from mask2former.data.datasets.meta import ade20k_150_categories

__all__ = ["SegmentIdGenerator", "ade20k_panoptic_segments", "convert_image", "main", "prepare_ade20k_pan_seg"]


class SegmentIdGenerator:
    """Unique (segment id, RGB colour) pairs for the segments of one image (panopticapi's
    ``IdGenerator`` with a seeded generator; black, i.e. void, is never handed out)."""

    def __init__(self, categories: Mapping[int, Mapping[str, Any]], seed: int = 0, max_dist: int = 30):
        self._categories = categories
        self._rng = np.random.default_rng(seed)
        self._max_dist = max_dist
        self._taken = {(0, 0, 0)} | {tuple(c["color"]) for c in categories.values() if not c["isthing"]}

    def get_color(self, category_id: int) -> Tuple[int, int, int]:
        category = self._categories[category_id]
        base = tuple(int(c) for c in category["color"])
        if not category["isthing"]:
            return base
        color = base
        while color in self._taken:
            jitter = self._rng.integers(-self._max_dist, self._max_dist + 1, size=3)
            color = tuple(int(c) for c in np.clip(np.asarray(base) + jitter, 0, 255))
        self._taken.add(color)
        return color

    def get_id_and_color(self, category_id: int) -> Tuple[int, Tuple[int, int, int]]:
        color = self.get_color(category_id)
        return color[0] + 256 * color[1] + 256 * 256 * color[2], color


def _segment(segment_id: int, category_id: int, mask: np.ndarray) -> Dict[str, Any]:
    return {
        "id": int(segment_id),
        "category_id": int(category_id),
        "area": int(mask.sum()),
        "bbox": U.bbox_xywh(mask),
        "iscrowd": 0,
    }


def ade20k_panoptic_segments(
    semantic: np.ndarray,
    classes: np.ndarray,
    instance_ids: np.ndarray,
    categories: Mapping[int, Mapping[str, Any]],
    instance_to_ade150: Mapping[int, int],
    seed: int = 0,
    source: str = "<array>",
) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """One image's panoptic PNG pixels (H, W, 3) uint8 and its ``segments_info``.

    ``semantic``: (H, W) uint8 SceneParsing label (0 = other, k = class k - 1);
    ``classes`` / ``instance_ids``: the R / G channels of the instance annotation.
    """
    if not (semantic.shape == classes.shape == instance_ids.shape):
        raise ValueError(
            f"{source}: semantic label {semantic.shape} and instance annotation {classes.shape} differ in size"
        )
    ids = SegmentIdGenerator(categories, seed)
    panoptic = np.zeros(semantic.shape + (3,), dtype=np.uint8)
    segments = []

    semantic_ids = semantic.astype(np.int32) - 1  # -1 = other
    for category_id in np.unique(semantic_ids):
        if category_id < 0:
            continue
        if category_id not in categories:
            raise ValueError(f"{source}: semantic label {category_id + 1} is not an ADE20K-150 class (1..150)")
        if categories[category_id]["isthing"]:
            continue
        mask = semantic_ids == category_id
        segment_id, color = ids.get_id_and_color(int(category_id))
        panoptic[mask] = color
        segments.append(_segment(segment_id, category_id, mask))

    for _, instance_class, mask in iter_instances(classes, instance_ids, source):
        category_id = instance_to_ade150[instance_class]
        segment_id, color = ids.get_id_and_color(category_id)
        panoptic[mask] = color
        segments.append(_segment(segment_id, category_id, mask))
    return panoptic, segments


def convert_image(
    image_path: str, semantic_path: str, instance_path: str, output_png: str
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Write one panoptic PNG; returns its (``images`` entry, ``annotations`` entry)."""
    image = image_entry(image_path)
    semantic = U.read_array(semantic_path, "ADE20K semantic annotation")
    if semantic.dtype != np.uint8 or semantic.ndim != 2:
        raise ValueError(f"ADE20K semantic annotation '{semantic_path}' must be an 8-bit single-channel PNG")
    if semantic.shape != (image["height"], image["width"]):
        raise ValueError(
            f"{semantic_path}: size {semantic.shape[::-1]} differs from the image's {(image['width'], image['height'])}"
        )
    classes, instance_ids = read_instance_png(instance_path)
    categories = {c["id"]: c for c in ade20k_150_categories()}
    panoptic, segments = ade20k_panoptic_segments(
        semantic,
        classes,
        instance_ids,
        categories,
        instance_class_to_ade150(),
        seed=zlib.crc32(image["id"].encode()),
        source=instance_path,
    )
    Image.fromarray(panoptic).save(output_png)
    annotation = {"image_id": image["id"], "file_name": image["id"] + ".png", "segments_info": segments}
    return image, annotation


def prepare_ade20k_pan_seg(
    root: str, splits: Sequence[str] = tuple(SPLITS), workers: int = 1
) -> Dict[str, int]:
    """Write the panoptic PNGs and JSON of ``splits`` ("train", "val"); returns {split: images}."""
    base = os.path.join(root, ADE_DIR)
    counts = {}
    for split in splits:
        dirname = SPLITS[split]
        image_dir = os.path.join(base, "images", dirname)
        names = U.list_files(image_dir, ".jpg", "ADE20K image")
        semantic_dir = U.require_dir(os.path.join(base, "annotations", dirname), "ADE20K annotation")
        instance_dir = U.require_dir(
            os.path.join(base, "annotations_instance", dirname),
            "ADE20K instance annotation",
            "Download and extract annotations_instance.tar (see datasets/README.md)",
        )
        out_dir = os.path.join(base, f"ade20k_panoptic_{split}")
        os.makedirs(out_dir, exist_ok=True)
        tasks = []
        for name in names:
            stem = name.split(".")[0]
            tasks.append(
                (
                    os.path.join(image_dir, name),
                    os.path.join(semantic_dir, stem + ".png"),
                    os.path.join(instance_dir, stem + ".png"),
                    os.path.join(out_dir, stem + ".png"),
                )
            )
        results = U.run_tasks(convert_image, tasks, workers, desc=split)
        U.save_json(
            {
                "images": [image for image, _ in results],
                "annotations": [annotation for _, annotation in results],
                "categories": ade20k_150_categories(),
            },
            os.path.join(base, f"ade20k_panoptic_{split}.json"),
        )
        counts[split] = len(results)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = U.make_parser(__doc__)
    parser.add_argument("--splits", nargs="+", choices=list(SPLITS), default=list(SPLITS))
    args = parser.parse_args(argv)
    for split, n in prepare_ade20k_pan_seg(U.resolve_root(args), args.splits, args.workers).items():
        print(f"{split}: wrote {n} panoptic annotations")


if __name__ == "__main__":
    main()
