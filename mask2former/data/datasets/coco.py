"""COCO-format instance annotations and folder-of-PNG semantic annotations (detectron2 semantics)."""
from __future__ import annotations

import contextlib
import io
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import pycocotools.mask as mask_util

from ...structures import BoxMode

from ...utils.catalog import DatasetCatalog, MetadataCatalog

__all__ = ["load_coco_json", "load_sem_seg", "register_coco_instances", "register_sem_seg"]

logger = logging.getLogger(__name__)


def load_coco_json(
    json_file: str,
    image_root: str,
    dataset_name: Optional[str] = None,
    extra_annotation_keys: Optional[Sequence[str]] = None,
) -> List[Dict[str, Any]]:
    """Load a COCO instances json into detectron2's list-of-dicts format.

    With ``dataset_name``, its metadata gets ``thing_classes`` and
    ``thing_dataset_id_to_contiguous_id`` (sorted category ids -> 0..K-1) and the annotations'
    ``category_id`` are mapped to contiguous ids. Boxes stay XYWH_ABS; polygons with fewer than
    3 points are dropped (and an instance left without any is skipped); uncompressed RLE is
    compressed.
    """
    from pycocotools.coco import COCO

    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO json file not found: '{json_file}'")
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            coco_api = COCO(json_file)
        except Exception as err:  # noqa: BLE001 - re-raised with the file name
            raise ValueError(f"Cannot parse COCO json file '{json_file}': {err}") from err

    id_map = None
    if dataset_name is not None:
        meta = MetadataCatalog.get(dataset_name)
        cat_ids = sorted(coco_api.getCatIds())
        cats = coco_api.loadCats(cat_ids)
        meta.thing_classes = [c["name"] for c in sorted(cats, key=lambda x: x["id"])]
        if not (min(cat_ids) == 1 and max(cat_ids) == len(cat_ids)) and "coco" not in dataset_name:
            logger.warning(
                "Category ids in annotations are not in [1, #categories]! We'll apply a mapping for you."
            )
        id_map = {v: i for i, v in enumerate(cat_ids)}
        meta.thing_dataset_id_to_contiguous_id = id_map

    img_ids = sorted(coco_api.imgs.keys())
    imgs = coco_api.loadImgs(img_ids)
    anns = [coco_api.imgToAnns[img_id] for img_id in img_ids]
    ann_ids = [ann["id"] for anns_per_image in anns for ann in anns_per_image]
    if len(set(ann_ids)) != len(ann_ids):
        raise ValueError(f"Annotation ids in '{json_file}' are not unique!")

    ann_keys = ["iscrowd", "bbox", "category_id"] + list(extra_annotation_keys or [])
    dataset_dicts = []
    num_without_valid_segmentation = 0
    for img_dict, anno_dict_list in zip(imgs, anns):
        record = {
            "file_name": os.path.join(image_root, img_dict["file_name"]),
            "height": img_dict["height"],
            "width": img_dict["width"],
            "image_id": img_dict["id"],
        }
        objs = []
        for anno in anno_dict_list:
            if anno["image_id"] != record["image_id"]:
                raise ValueError(f"Annotation {anno['id']} in '{json_file}' has a mismatched image_id")
            if anno.get("ignore", 0) != 0:
                raise ValueError(f'"ignore" in COCO json file ({json_file}) is not supported.')
            obj = {key: anno[key] for key in ann_keys if key in anno}
            if "bbox" in obj and len(obj["bbox"]) == 0:
                raise ValueError(
                    f"One annotation of image {record['image_id']} in '{json_file}' contains an empty "
                    "'bbox' value! This json does not have valid COCO format."
                )
            segm = anno.get("segmentation", None)
            if segm:
                if isinstance(segm, dict):
                    if isinstance(segm["counts"], list):
                        segm = mask_util.frPyObjects(segm, *segm["size"])
                else:
                    segm = [poly for poly in segm if len(poly) % 2 == 0 and len(poly) >= 6]
                    if len(segm) == 0:
                        num_without_valid_segmentation += 1
                        continue
                obj["segmentation"] = segm
            obj["bbox_mode"] = BoxMode.XYWH_ABS
            if id_map is not None:
                cat = obj["category_id"]
                try:
                    obj["category_id"] = id_map[cat]
                except KeyError as err:
                    raise KeyError(
                        f"Encountered category_id={cat} in '{json_file}' but this id does not exist in "
                        "'categories' of the json file."
                    ) from err
            objs.append(obj)
        record["annotations"] = objs
        dataset_dicts.append(record)

    if num_without_valid_segmentation > 0:
        logger.warning(
            "Filtered out %d instances without valid segmentation in %s.",
            num_without_valid_segmentation,
            json_file,
        )
    return dataset_dicts


def register_coco_instances(name: str, metadata: Dict[str, Any], json_file: str, image_root: str) -> None:
    """Register a COCO-format instance dataset (loaded lazily) with ``evaluator_type="coco"``."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name)}")
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="coco", **metadata
    )


def _file_id(folder: str, path: str) -> str:
    return os.path.splitext(os.path.normpath(os.path.relpath(path, start=folder)))[0]


def load_sem_seg(
    gt_root: str, image_root: str, gt_ext: str = "png", image_ext: str = "jpg"
) -> List[Dict[str, Any]]:
    """Pair images and label maps of the same base name (top-level files of each folder).

    Returns dicts with ``file_name`` and ``sem_seg_file_name``; unmatched files are dropped with
    a warning.
    """
    for folder, what in ((gt_root, "annotation"), (image_root, "image")):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Semantic segmentation {what} folder not found: '{folder}'")
    input_files = sorted(
        (os.path.join(image_root, f) for f in os.listdir(image_root) if f.endswith(image_ext)),
        key=lambda p: _file_id(image_root, p),
    )
    gt_files = sorted(
        (os.path.join(gt_root, f) for f in os.listdir(gt_root) if f.endswith(gt_ext)),
        key=lambda p: _file_id(gt_root, p),
    )
    if len(gt_files) == 0:
        raise FileNotFoundError(f"No annotations (*{gt_ext}) found in '{gt_root}'.")

    if len(input_files) != len(gt_files):
        logger.warning(
            "Directories %s and %s have %d and %d files; using only the matched pairs.",
            image_root,
            gt_root,
            len(input_files),
            len(gt_files),
        )
        input_names = {os.path.basename(f)[: -len(image_ext)] for f in input_files}
        gt_names = {os.path.basename(f)[: -len(gt_ext)] for f in gt_files}
        common = sorted(input_names & gt_names)
        logger.warning("Will use their intersection of %d files.", len(common))
        input_files = [os.path.join(image_root, f + image_ext) for f in common]
        gt_files = [os.path.join(gt_root, f + gt_ext) for f in common]

    logger.info("Loaded %d images with semantic segmentation from %s", len(input_files), image_root)
    return [
        {"file_name": img_path, "sem_seg_file_name": gt_path}
        for img_path, gt_path in zip(input_files, gt_files)
    ]


def register_sem_seg(
    name: str,
    image_root: str,
    gt_root: str,
    stuff_classes: Sequence[str],
    ignore_label: int = 255,
    image_ext: str = "jpg",
    gt_ext: str = "png",
    evaluator_type: str = "sem_seg",
    **metadata: Any,
) -> None:
    """Register a semantic dataset: ``image_root/X.<image_ext>`` with labels ``gt_root/X.<gt_ext>``
    holding contiguous class ids (``ignore_label`` for unlabeled pixels)."""
    DatasetCatalog.register(
        name, lambda: load_sem_seg(gt_root, image_root, gt_ext=gt_ext, image_ext=image_ext)
    )
    MetadataCatalog.get(name).set(
        stuff_classes=list(stuff_classes),
        image_root=image_root,
        sem_seg_root=gt_root,
        evaluator_type=evaluator_type,
        ignore_label=ignore_label,
        **metadata,
    )
