#!/usr/bin/env python3
"""ADE20K instance annotations in COCO instance format (Mask2Former's ``ade20k_instance_*``).

Reads ``$DETECTRON2_DATASETS/ADEChallengeData2016/images/{training,validation}/*.jpg`` and the
instance annotations ``annotations_instance/{training,validation}/*.png`` (R = instance class
1..100, G = instance id) and writes ``ADEChallengeData2016/ade20k_instance_{train,val}.json``
as the official script does: one annotation per instance id (iscrowd 0, an XYWH bbox of the
inclusive pixel extents, the mask as compressed RLE, area = mask pixels), ids counting from 1
over the split; image ids are the file names without extension; category ids are the 0-based
ADE20K-150 ids of the 100 thing classes (bed = 7, ..., flag = 149), so instance and panoptic
annotations share ids. ``ade20k_instance_{train,val}`` read these files, and so does the
instance-AP evaluation of ``ade20k_panoptic_{train,val}``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util

import _prepare_utils as U  # first: puts the repository root on sys.path
from _ade20k_instances import ADE_DIR, SPLITS, image_entry, instance_class_to_ade150, iter_instances, read_instance_png
from mask2former.data.datasets.meta import ade20k_instance_meta

__all__ = [
    "ade20k_instance_annotations",
    "ade20k_instance_categories",
    "convert_image",
    "main",
    "prepare_ade20k_ins_seg",
]


def ade20k_instance_categories() -> List[Dict[str, Any]]:
    """The 100 thing categories as COCO ``categories`` (``id`` = ADE20K-150 id, ``name``)."""
    meta = ade20k_instance_meta()
    ids = list(meta["thing_dataset_id_to_contiguous_id"])
    return [{"id": int(i), "name": name} for i, name in zip(ids, meta["thing_classes"])]


def ade20k_instance_annotations(
    classes: np.ndarray,
    instance_ids: np.ndarray,
    instance_to_ade150: Mapping[int, int],
    source: str = "<array>",
) -> List[Dict[str, Any]]:
    """COCO annotations (without ``id`` / ``image_id``) of one image's instance annotation."""
    annotations = []
    for _, instance_class, mask in iter_instances(classes, instance_ids, source):
        rle = mask_util.encode(np.asfortranarray(mask[:, :, None].astype(np.uint8)))[0]
        rle["counts"] = rle["counts"].decode("utf-8")
        annotations.append(
            {
                "iscrowd": 0,
                "category_id": instance_to_ade150[instance_class],
                "bbox": U.bbox_xywh(mask),
                "segmentation": rle,
                "area": int(mask_util.area(rle)),
            }
        )
    return annotations


def convert_image(image_path: str, instance_path: str) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """(``images`` entry, annotations without ids) of one image."""
    image = image_entry(image_path)
    classes, instance_ids = read_instance_png(instance_path)
    if classes.shape != (image["height"], image["width"]):
        raise ValueError(
            f"{instance_path}: size {classes.shape[::-1]} differs from the image's {(image['width'], image['height'])}"
        )
    return image, ade20k_instance_annotations(classes, instance_ids, instance_class_to_ade150(), instance_path)


def prepare_ade20k_ins_seg(
    root: str, splits: Sequence[str] = tuple(SPLITS), workers: int = 1
) -> Dict[str, int]:
    """Write ``ade20k_instance_{split}.json`` for ``splits`` ("train", "val");
    returns {split: number of annotations}."""
    base = os.path.join(root, ADE_DIR)
    counts = {}
    for split in splits:
        dirname = SPLITS[split]
        image_dir = os.path.join(base, "images", dirname)
        names = U.list_files(image_dir, ".jpg", "ADE20K image")
        instance_dir = U.require_dir(
            os.path.join(base, "annotations_instance", dirname),
            "ADE20K instance annotation",
            "Download and extract annotations_instance.tar (see datasets/README.md)",
        )
        tasks = [
            (os.path.join(image_dir, name), os.path.join(instance_dir, name.split(".")[0] + ".png"))
            for name in names
        ]
        images, annotations = [], []
        for image, image_annotations in U.run_tasks(convert_image, tasks, workers, desc=split):
            images.append(image)
            for ann in image_annotations:
                annotations.append({"id": len(annotations) + 1, "image_id": image["id"], **ann})
        U.save_json(
            {"images": images, "categories": ade20k_instance_categories(), "annotations": annotations},
            os.path.join(base, f"ade20k_instance_{split}.json"),
        )
        counts[split] = len(annotations)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = U.make_parser(__doc__)
    parser.add_argument("--splits", nargs="+", choices=list(SPLITS), default=list(SPLITS))
    args = parser.parse_args(argv)
    for split, n in prepare_ade20k_ins_seg(U.resolve_root(args), args.splits, args.workers).items():
        print(f"{split}: wrote {n} instance annotations")


if __name__ == "__main__":
    main()
