"""Convert a registered dataset (instance or panoptic dataset dicts) to a COCO instances JSON."""

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
from PIL import Image

from ..structures.boxes import BoxMode
from ..utils.catalog import DatasetCatalog, MetadataCatalog
from ..utils.panoptic_utils import rgb2id

__all__ = ["convert_to_coco_dict", "convert_to_coco_json", "thing_categories"]

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


def thing_categories(metadata) -> List[Dict[str, Any]]:
    """COCO ``categories`` (dataset id, name) of the thing classes, in contiguous-id order.

    Without ``thing_dataset_id_to_contiguous_id`` the ids are 0..K-1 of ``thing_classes``. With
    it, a class is named by ``thing_classes[contiguous id]`` when that list covers every thing's
    contiguous id (COCO, Mapillary Vistas, shapes) and else by ``stuff_classes[contiguous id]``:
    ADE20K panoptic's thing ids index its 150 classes while ``thing_classes`` lists the 100 things.
    """
    thing_classes = list(metadata.get("thing_classes", None) or [])
    id_map = metadata.get("thing_dataset_id_to_contiguous_id", None)
    if id_map is None:
        return [{"id": i, "name": name} for i, name in enumerate(thing_classes)]
    names = thing_classes
    if id_map and len(thing_classes) <= max(id_map.values()):
        names = list(metadata.get("stuff_classes", None) or [])
        if len(names) <= max(id_map.values()):
            raise ValueError(
                f"Dataset '{metadata.name}': thing contiguous ids go up to {max(id_map.values())}, "
                f"but thing_classes has {len(thing_classes)} and stuff_classes {len(names)} names"
            )
    return [
        {"id": int(dataset_id), "name": names[contiguous_id]}
        for dataset_id, contiguous_id in sorted(id_map.items(), key=lambda kv: kv[1])
    ]


def _instance_annotations(image_dict: Dict[str, Any], where: str, reverse_id_mapper) -> List[Dict[str, Any]]:
    """COCO annotations (without ids) of a dataset dict's ``annotations`` (boxes + masks)."""
    annotations = []
    for annotation in image_dict.get("annotations", []):
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
        annotations.append(coco_annotation)
    return annotations


def _panoptic_annotations(image_dict: Dict[str, Any], where: str, reverse_id_mapper) -> tuple:
    """((height, width), COCO annotations) of the thing segments of a panoptic dataset dict:
    one compressed-RLE mask per segment of ``segments_info`` with ``isthing``, read from the PNG
    ``pan_seg_file_name`` (segment id = R + 256 G + 256^2 B)."""
    png = image_dict["pan_seg_file_name"]
    with g_pathmgr.open(png, "rb") as f:
        pan = rgb2id(np.asarray(Image.open(f).convert("RGB"), dtype=np.uint32))  # (H, W)
    annotations = []
    for segment in image_dict["segments_info"]:
        if not segment.get("isthing", False):
            continue
        mask = pan == segment["id"]
        if not mask.any():
            logger.warning("%s: thing segment %s is absent from %s; left out", where, segment["id"], png)
            continue
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        annotations.append(
            {
                "bbox": [float(x) for x in mask_util.toBbox(rle)],
                "area": float(mask_util.area(rle)),
                "iscrowd": int(segment.get("iscrowd", 0)),
                "category_id": int(reverse_id_mapper(segment["category_id"])),
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
            }
        )
    return pan.shape, annotations


def convert_to_coco_dict(dataset_name: str) -> Dict[str, Any]:
    """The dataset's dicts as a COCO instances dict (``images``, ``annotations``, ``categories``).

    Instance dicts contribute their ``annotations``: boxes become XYWH; the area is the mask
    area (polygon or RLE) or, without a mask, the box area. Panoptic dicts (``pan_seg_file_name``
    + ``segments_info``) contribute one RLE mask per thing segment, read from the PNG, so that a
    panoptic dataset registered without an instances json still gets mask AP. Contiguous
    category ids are mapped back through ``thing_dataset_id_to_contiguous_id`` when the metadata
    has it.
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

    coco_images: List[Dict[str, Any]] = []
    coco_annotations: List[Dict[str, Any]] = []
    for index, image_dict in enumerate(dataset_dicts):
        where = f"dataset '{dataset_name}', image {image_dict.get('file_name')}"
        if "annotations" not in image_dict and "segments_info" in image_dict:
            (height, width), annotations = _panoptic_annotations(image_dict, where, reverse_id_mapper)
            if (image_dict.get("height", height), image_dict.get("width", width)) != (height, width):
                raise ValueError(
                    f"{where}: height x width {image_dict['height']}x{image_dict['width']} differs from "
                    f"the panoptic PNG's {height}x{width}"
                )
        else:
            height, width = image_dict["height"], image_dict["width"]
            annotations = _instance_annotations(image_dict, where, reverse_id_mapper)
        coco_image = {
            "id": image_dict.get("image_id", index),
            "width": int(width),
            "height": int(height),
            "file_name": str(image_dict["file_name"]),
        }
        coco_images.append(coco_image)
        for annotation in annotations:
            # COCO ids start at 1
            coco_annotations.append({"id": len(coco_annotations) + 1, "image_id": coco_image["id"], **annotation})

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
        "categories": thing_categories(metadata),
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
