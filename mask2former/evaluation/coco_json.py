"""Convert a registered dataset (detectron2 dataset dicts) to a COCO instances JSON."""

from __future__ import annotations

import datetime
import json
import logging
import os
import tempfile
from typing import Any, Dict, List, Sequence

import numpy as np
import pycocotools.mask as mask_util
from iopath.common.file_io import g_pathmgr

from ..utils.catalog import DatasetCatalog, MetadataCatalog
from ..structures.boxes import BoxMode

__all__ = ["convert_to_coco_dict", "convert_to_coco_json"]

logger = logging.getLogger(__name__)


def _polygons_area(polygons: Sequence[Sequence[float]]) -> float:
    """Sum of the shoelace areas of flat ``[x0, y0, x1, y1, ...]`` polygons."""
    area = 0.0
    for poly in polygons:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        x, y = xy[:, 0], xy[:, 1]
        area += 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    return float(np.float32(area))  # detectron2 returns the area as a float32 tensor


def _segmentation_area(segmentation: Any, where: str) -> float:
    if isinstance(segmentation, list):
        return _polygons_area(segmentation)
    if isinstance(segmentation, dict):
        if isinstance(segmentation.get("counts"), list):  # uncompressed RLE
            h, w = segmentation["size"]
            segmentation = mask_util.frPyObjects(segmentation, h, w)
        return float(mask_util.area(segmentation))
    raise TypeError(f"{where}: unknown segmentation type {type(segmentation).__name__}")


def convert_to_coco_dict(dataset_name: str) -> Dict[str, Any]:
    """The dataset's dicts as a COCO instances dict (``images``, ``annotations``, ``categories``).

    Contiguous category ids are mapped back through ``thing_dataset_id_to_contiguous_id`` when
    the metadata has it; boxes become XYWH; the area is the mask area (polygon or RLE) or,
    without a mask, the box area.
    """
    dataset_dicts = DatasetCatalog.get(dataset_name)
    metadata = MetadataCatalog.get(dataset_name)
    if hasattr(metadata, "thing_dataset_id_to_contiguous_id"):
        reverse_id_mapping = {v: k for k, v in metadata.thing_dataset_id_to_contiguous_id.items()}

        def reverse_id_mapper(contiguous_id: int) -> int:
            if contiguous_id not in reverse_id_mapping:
                raise KeyError(
                    f"Category {contiguous_id} is not in thing_dataset_id_to_contiguous_id of '{dataset_name}'"
                )
            return reverse_id_mapping[contiguous_id]

    else:

        def reverse_id_mapper(contiguous_id: int) -> int:
            return contiguous_id

    categories = [
        {"id": reverse_id_mapper(i), "name": name} for i, name in enumerate(metadata.thing_classes)
    ]

    coco_images: List[Dict[str, Any]] = []
    coco_annotations: List[Dict[str, Any]] = []
    for index, image_dict in enumerate(dataset_dicts):
        coco_image = {
            "id": image_dict.get("image_id", index),
            "width": int(image_dict["width"]),
            "height": int(image_dict["height"]),
            "file_name": str(image_dict["file_name"]),
        }
        coco_images.append(coco_image)
        for annotation in image_dict.get("annotations", []):
            where = f"dataset '{dataset_name}', image {coco_image['file_name']}"
            bbox = annotation["bbox"]
            if isinstance(bbox, np.ndarray):
                bbox = bbox.tolist()
            if len(bbox) != 4:
                raise ValueError(f"{where}: bbox must have 4 numbers, got {bbox!r}")
            bbox = BoxMode.convert(list(bbox), annotation["bbox_mode"], BoxMode.XYWH_ABS)
            if "segmentation" in annotation:
                area = _segmentation_area(annotation["segmentation"], where)
            else:
                area = float(np.float32(bbox[2] * bbox[3]))

            coco_annotation: Dict[str, Any] = {
                "id": len(coco_annotations) + 1,  # COCO ids start at 1
                "image_id": coco_image["id"],
                "bbox": [round(float(x), 3) for x in bbox],
                "area": float(area),
                "iscrowd": int(annotation.get("iscrowd", 0)),
                "category_id": int(reverse_id_mapper(annotation["category_id"])),
            }
            if "segmentation" in annotation:
                seg = annotation["segmentation"]
                if isinstance(seg, dict) and isinstance(seg.get("counts"), bytes):
                    seg = dict(seg, counts=seg["counts"].decode("ascii"))
                coco_annotation["segmentation"] = seg
            coco_annotations.append(coco_annotation)

    logger.info(
        "Converted '%s' to COCO format: %d images, %d annotations",
        dataset_name,
        len(coco_images),
        len(coco_annotations),
    )
    info = {
        "date_created": str(datetime.datetime.now()),
        "description": "Automatically generated COCO json file for mask2former.",
    }
    return {
        "info": info,
        "images": coco_images,
        "annotations": coco_annotations,
        "categories": categories,
        "licenses": None,
    }


def convert_to_coco_json(dataset_name: str, output_file: str, allow_cached: bool = True) -> None:
    """Write :func:`convert_to_coco_dict` to ``output_file`` (kept as is if it exists and cached)."""
    if g_pathmgr.exists(output_file) and allow_cached:
        logger.info("Using cached annotations in COCO format: %s", output_file)
        return
    coco_dict = convert_to_coco_dict(dataset_name)
    out_dir = os.path.dirname(os.path.abspath(output_file))
    g_pathmgr.mkdirs(out_dir)
    # write then rename, so concurrent processes never read a half-written file
    fd, tmp_path = tempfile.mkstemp(dir=out_dir, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(coco_dict, f)
    os.replace(tmp_path, output_file)
    logger.info("Cached annotations in COCO format: %s", output_file)
