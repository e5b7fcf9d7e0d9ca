"""YouTube-VIS json (video instance segmentation) loader and registration.

A YouTube-VIS json holds ``videos`` (``id``, ``file_names`` (one per frame, relative to the
image root), ``height``, ``width``, ``length``), ``categories`` and ``annotations``: one per
object track with ``video_id``, ``category_id``, ``iscrowd`` and per-frame lists
``segmentations`` (RLE or polygons, ``null`` where the object is absent), ``bboxes`` (XYWH,
``null`` where absent) and ``areas``.

``load_ytvis_json`` returns one dict per video (the official ``mask2former_video`` format)::

    {"file_names": [T paths], "height", "width", "length", "video_id",
     "annotations": [T lists of {"id", "category_id", "iscrowd", "bbox", "bbox_mode", "segmentation"}]}
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util

from ...structures import BoxMode

from ...utils.catalog import DatasetCatalog, MetadataCatalog
from .meta.ytvis import ytvis_meta

__all__ = ["load_ytvis_json", "register_all_ytvis", "register_ytvis_instances"]

logger = logging.getLogger(__name__)

# name: (image root, json file) under $DETECTRON2_DATASETS, as the official builtin.py
_PREDEFINED_SPLITS_YTVIS = {
    2019: {
        "ytvis_2019_train": ("ytvis_2019/train/JPEGImages", "ytvis_2019/train.json"),
        "ytvis_2019_val": ("ytvis_2019/valid/JPEGImages", "ytvis_2019/valid.json"),
        "ytvis_2019_test": ("ytvis_2019/test/JPEGImages", "ytvis_2019/test.json"),
    },
    2021: {
        "ytvis_2021_train": ("ytvis_2021/train/JPEGImages", "ytvis_2021/train.json"),
        "ytvis_2021_val": ("ytvis_2021/valid/JPEGImages", "ytvis_2021/valid.json"),
        "ytvis_2021_test": ("ytvis_2021/test/JPEGImages", "ytvis_2021/test.json"),
    },
}


def _read_json(json_file: str) -> Dict[str, Any]:
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"YouTube-VIS json file not found: '{json_file}'")
    with open(json_file) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"Cannot parse YouTube-VIS json file '{json_file}': {err}") from err
    for key in ("videos", "categories"):
        if key not in data:
            raise ValueError(f"YouTube-VIS json file '{json_file}' has no '{key}' list")
    return data


def _frame_segmentation(segm: Any, where: str) -> Any:
    """Compressed RLE or the valid polygons (>= 3 points) of one frame; None if none is valid."""
    if isinstance(segm, dict):
        if "counts" not in segm or "size" not in segm:
            raise ValueError(f"{where}: an RLE segmentation needs 'counts' and 'size', got keys {sorted(segm)}")
        if isinstance(segm["counts"], list):  # uncompressed RLE
            segm = mask_util.frPyObjects(segm, *segm["size"])
        return segm
    if isinstance(segm, list):
        polygons = [p for p in segm if len(p) % 2 == 0 and len(p) >= 6]
        return polygons or None
    raise ValueError(f"{where}: segmentation must be an RLE dict, a list of polygons or null, got {type(segm)}")


def _bbox_of(segm: Any) -> List[float]:
    """XYWH box of an RLE dict or a polygon list."""
    if isinstance(segm, dict):
        return [float(v) for v in mask_util.toBbox(segm)]
    points = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in segm])
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def _per_frame_list(anno: Dict[str, Any], key: str, length: int, where: str) -> List[Any]:
    values = anno.get(key)
    if values is None:
        return [None] * length
    if not isinstance(values, list) or len(values) != length:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise ValueError(f"{where}: '{key}' must list one entry per frame ({length} frames), got {got}")
    return values


def load_ytvis_json(
    json_file: str,
    image_root: str,
    dataset_name: Optional[str] = None,
    extra_annotation_keys: Optional[Sequence[str]] = None,
) -> List[Dict[str, Any]]:
    """Load a YouTube-VIS json into one dict per video (sorted by video id).

    With ``dataset_name``, its metadata gets ``thing_classes`` and
    ``thing_dataset_id_to_contiguous_id`` (sorted category ids -> 0..K-1) and every
    ``category_id`` becomes contiguous. Frames where an object is absent (``null``) or has no
    valid polygon are left out of that frame's list. Boxes are XYWH_ABS (computed from the mask
    when the json has none). Raises ``ValueError`` naming the video (and annotation) when a
    per-frame list does not have one entry per frame.
    """
    data = _read_json(json_file)
    id_map = None
    if dataset_name is not None:
        meta = MetadataCatalog.get(dataset_name)
        cats = sorted(data["categories"], key=lambda c: c["id"])
        cat_ids = [c["id"] for c in cats]
        meta.thing_classes = [c["name"] for c in cats]
        if cat_ids and not (min(cat_ids) == 1 and max(cat_ids) == len(cat_ids)):
            logger.warning("Category ids in %s are not in [1, #categories]; they are mapped to 0..K-1.", json_file)
        id_map = {v: i for i, v in enumerate(cat_ids)}
        meta.thing_dataset_id_to_contiguous_id = id_map

    annos_by_video: Dict[Any, List[Dict[str, Any]]] = {}
    for anno in data.get("annotations", []):
        annos_by_video.setdefault(anno["video_id"], []).append(anno)
    videos = sorted(data["videos"], key=lambda v: v["id"])
    known = {v["id"] for v in videos}
    orphans = sum(len(a) for vid, a in annos_by_video.items() if vid not in known)
    if orphans:
        logger.warning("%s: %d annotations refer to videos that are not in the file.", json_file, orphans)

    ann_keys = ["iscrowd", "category_id", "id"] + list(extra_annotation_keys or [])
    num_invalid = 0
    dataset_dicts = []
    for video in videos:
        video_id, length = video["id"], int(video["length"])
        if len(video["file_names"]) != length:
            raise ValueError(
                f"{json_file}: video {video_id} has length {length} but {len(video['file_names'])} file_names"
            )
        frames: List[List[Dict[str, Any]]] = [[] for _ in range(length)]
        for anno in annos_by_video.get(video_id, []):
            where = f"{json_file}: annotation {anno.get('id')} of video {video_id}"
            segms = _per_frame_list(anno, "segmentations", length, where)
            boxes = _per_frame_list(anno, "bboxes", length, where)
            for frame_idx, (segm, box) in enumerate(zip(segms, boxes)):
                if not segm:
                    continue
                segm = _frame_segmentation(segm, f"{where}, frame {frame_idx}")
                if segm is None:
                    num_invalid += 1
                    continue
                obj = {key: anno[key] for key in ann_keys if key in anno}
                obj.setdefault("iscrowd", 0)
                obj["segmentation"] = segm
                obj["bbox"] = list(box) if box else _bbox_of(segm)
                obj["bbox_mode"] = BoxMode.XYWH_ABS
                if id_map is not None:
                    obj["category_id"] = id_map[obj["category_id"]]
                frames[frame_idx].append(obj)
        dataset_dicts.append(
            {
                "file_names": [os.path.join(image_root, name) for name in video["file_names"]],
                "height": video["height"],
                "width": video["width"],
                "length": length,
                "video_id": video_id,
                "annotations": frames,
            }
        )
    if num_invalid:
        logger.warning("%s: %d object frames without a valid polygon (>= 3 points) were dropped.", json_file, num_invalid)
    logger.info("Loaded %d videos in YouTube-VIS format from %s", len(dataset_dicts), json_file)
    return dataset_dicts


def register_ytvis_instances(name: str, metadata: Dict[str, Any], json_file: str, image_root: str) -> None:
    """Register a YouTube-VIS-format video dataset (loaded lazily) with ``evaluator_type="ytvis"``."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name)}")
    DatasetCatalog.register(name, lambda: load_ytvis_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="ytvis", **metadata)


def register_all_ytvis(root: str) -> None:
    """``ytvis_{2019,2021}_{train,val,test}`` under ``root`` with the official class lists."""
    for year, splits in _PREDEFINED_SPLITS_YTVIS.items():
        for name, (image_root, json_file) in splits.items():
            register_ytvis_instances(name, ytvis_meta(year), os.path.join(root, json_file), os.path.join(root, image_root))
