"""COCO-format panoptic annotations (PNG + json), optionally paired with semantic PNGs."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from ...utils.catalog import DatasetCatalog, MetadataCatalog

__all__ = [
    "load_coco_panoptic_json",
    "register_coco_panoptic",
    "register_coco_panoptic_annos_sem_seg",
    "register_panoptic_with_sem_seg",
]


def _convert_category_id(segment_info: Dict[str, Any], meta: Dict[str, Any], where: str = "") -> Dict[str, Any]:
    """Dataset category id -> contiguous id; sets ``isthing``. ``where`` names the image in errors."""
    cat = segment_info["category_id"]
    if cat in meta["thing_dataset_id_to_contiguous_id"]:
        segment_info["category_id"] = meta["thing_dataset_id_to_contiguous_id"][cat]
        segment_info["isthing"] = True
    else:
        try:
            segment_info["category_id"] = meta["stuff_dataset_id_to_contiguous_id"][cat]
        except KeyError as err:
            raise KeyError(
                f"Panoptic segment {segment_info.get('id')}{where} has category_id={cat}, which is in neither "
                "thing_dataset_id_to_contiguous_id nor stuff_dataset_id_to_contiguous_id of the dataset's metadata"
            ) from err
        segment_info["isthing"] = False
    return segment_info


def load_coco_panoptic_json(
    json_file: str,
    image_dir: str,
    gt_dir: str,
    meta: Dict[str, Any],
    sem_seg_dir: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """Load a COCO panoptic json: one dict per annotated image with ``file_name``, ``image_id``,
    ``pan_seg_file_name``, ``segments_info`` (contiguous ``category_id`` + ``isthing``) and,
    with ``sem_seg_dir``, ``sem_seg_file_name`` (same PNG name as the panoptic one).

    The image file (and ``height`` / ``width``) come from the json's ``images`` entry for the id;
    without one the image is, as in COCO, the panoptic PNG's name with a ``.jpg`` extension.
    """
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"Panoptic json file not found: '{json_file}'")
    with open(json_file) as f:
        try:
            json_info = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"Cannot parse panoptic json file '{json_file}': {err}") from err
    images = {img["id"]: img for img in json_info.get("images", [])}

    ret = []
    for ann in json_info["annotations"]:
        image_id = ann["image_id"]
        image_info = images.get(image_id, {})
        image_name = image_info.get("file_name", os.path.splitext(ann["file_name"])[0] + ".jpg")
        record = {
            "file_name": os.path.join(image_dir, image_name),
            "image_id": int(image_id) if isinstance(image_id, int) or str(image_id).isdigit() else image_id,
            "pan_seg_file_name": os.path.join(gt_dir, ann["file_name"]),
        }
        if "height" in image_info and "width" in image_info:
            record["height"], record["width"] = image_info["height"], image_info["width"]
        if sem_seg_dir is not None:
            record["sem_seg_file_name"] = os.path.join(sem_seg_dir, ann["file_name"])
        where = (f" of image {record['file_name']!r} (image_id {image_id}, panoptic PNG "
                 f"{record['pan_seg_file_name']!r}, in {json_file!r})")
        record["segments_info"] = [_convert_category_id(dict(x), meta, where) for x in ann["segments_info"]]
        ret.append(record)
    if not ret:
        raise ValueError(f"No annotations found in '{json_file}' (images in {image_dir})!")
    for key in ("file_name", "pan_seg_file_name", "sem_seg_file_name"):
        if key in ret[0] and not os.path.isfile(ret[0][key]):
            raise FileNotFoundError(f"'{ret[0][key]}' ({key} of the first image in '{json_file}') does not exist")
    return ret


def register_coco_panoptic(
    name: str,
    metadata: Dict[str, Any],
    image_root: str,
    panoptic_root: str,
    panoptic_json: str,
    instances_json: Optional[str] = None,
) -> None:
    """Register a "standard" COCO-format panoptic dataset ``name`` (``evaluator_type="coco_panoptic_seg"``):
    :func:`register_panoptic_with_sem_seg` without semantic PNGs.

    ``metadata`` must hold ``thing_dataset_id_to_contiguous_id`` and
    ``stuff_dataset_id_to_contiguous_id`` (plus class names / colours).
    """
    register_panoptic_with_sem_seg(name, metadata, image_root, panoptic_root, None, panoptic_json,
                                   instances_json)


def register_panoptic_with_sem_seg(
    name: str,
    metadata: Dict[str, Any],
    image_root: str,
    panoptic_root: str,
    semantic_root: Optional[str],
    panoptic_json: str,
    instances_json: Optional[str] = None,
    evaluator_type: str = "coco_panoptic_seg",
    ignore_label: int = 255,
) -> None:
    """Register ``name``: COCO-format panoptic annotations whose dicts also carry
    ``sem_seg_file_name`` (PNGs under ``semantic_root``; none when it is None). The one
    "panoptic + semantic" registration: Mask2Former's ADE20K / Mapillary Vistas panoptic splits
    use it directly, :func:`register_coco_panoptic` and
    :func:`register_coco_panoptic_annos_sem_seg` for COCO."""
    DatasetCatalog.register(
        name,
        lambda: load_coco_panoptic_json(panoptic_json, image_root, panoptic_root, metadata, semantic_root),
    )
    MetadataCatalog.get(name).set(
        panoptic_root=panoptic_root,
        image_root=image_root,
        panoptic_json=panoptic_json,
        json_file=instances_json,
        evaluator_type=evaluator_type,
        ignore_label=ignore_label,
        label_divisor=1000,
        **metadata,
    )


def register_coco_panoptic_annos_sem_seg(
    name: str,
    metadata: Dict[str, Any],
    image_root: str,
    panoptic_root: str,
    panoptic_json: str,
    sem_seg_root: str,
    instances_json: Optional[str] = None,
    evaluator_type: str = "coco_panoptic_seg",
) -> None:
    """Register ``<name>_with_sem_seg``: panoptic annotations plus semantic PNGs (Mask2Former's
    COCO panoptic training set; :func:`register_panoptic_with_sem_seg` plus ``sem_seg_root``).
    Also resets ``thing_classes`` / ``thing_colors`` of ``name`` to the thing-only lists of
    ``metadata``, as Mask2Former does."""
    panoptic_meta = MetadataCatalog.get(name)
    for key in ("thing_classes", "thing_colors"):
        if key in panoptic_meta.as_dict():
            delattr(panoptic_meta, key)
    panoptic_meta.set(thing_classes=metadata["thing_classes"], thing_colors=metadata["thing_colors"])

    semantic_name = name + "_with_sem_seg"
    register_panoptic_with_sem_seg(semantic_name, metadata, image_root, panoptic_root, sem_seg_root,
                                   panoptic_json, instances_json, evaluator_type)
    MetadataCatalog.get(semantic_name).set(sem_seg_root=sem_seg_root)
