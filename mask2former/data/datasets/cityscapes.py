"""Cityscapes loaders (gtFine layout): semantic, instance and panoptic (detectron2 semantics).

Instances are read from ``*_gtFine_instanceIds.png`` (detectron2's ``from_json=False`` path,
which needs no shapely); polygons come from the mask contours.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Tuple

import cv2
import numpy as np
from PIL import Image

from ...structures import BoxMode

from ...utils.catalog import DatasetCatalog, MetadataCatalog
from .meta import cityscapes_categories

__all__ = [
    "load_cityscapes_instances",
    "load_cityscapes_panoptic",
    "load_cityscapes_semantic",
    "register_all_cityscapes",
    "register_all_cityscapes_panoptic",
]

logger = logging.getLogger(__name__)


def _ls(folder: str) -> List[str]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cityscapes folder not found: '{folder}'")
    return sorted(os.listdir(folder))


def _get_cityscapes_files(image_dir: str, gt_dir: str) -> List[Tuple[str, str, str, str]]:
    """(image, instanceIds, labelIds, polygons json) for every image under ``image_dir/<city>/``."""
    files = []
    for city in _ls(image_dir):
        city_img_dir = os.path.join(image_dir, city)
        city_gt_dir = os.path.join(gt_dir, city)
        for basename in _ls(city_img_dir):
            suffix = "leftImg8bit.png"
            if not basename.endswith(suffix):
                raise ValueError(f"Unexpected file '{os.path.join(city_img_dir, basename)}' (expect *{suffix})")
            stem = basename[: -len(suffix)]
            files.append(
                (
                    os.path.join(city_img_dir, basename),
                    os.path.join(city_gt_dir, stem + "gtFine_instanceIds.png"),
                    os.path.join(city_gt_dir, stem + "gtFine_labelIds.png"),
                    os.path.join(city_gt_dir, stem + "gtFine_polygons.json"),
                )
            )
    if not files:
        raise FileNotFoundError(f"No images found in {image_dir}")
    return files


def load_cityscapes_semantic(image_dir: str, gt_dir: str) -> List[Dict[str, Any]]:
    """Images with their ``*_gtFine_labelTrainIds.png`` (made by cityscapesscripts'
    createTrainIdLabelImgs)."""
    ret = []
    for image_file, _, label_file, json_file in _get_cityscapes_files(image_dir, gt_dir):
        label_file = label_file.replace("labelIds", "labelTrainIds")
        record = {"file_name": image_file, "sem_seg_file_name": label_file}
        if os.path.isfile(json_file):
            with open(json_file) as f:
                jsonobj = json.load(f)
            record["height"], record["width"] = jsonobj["imgHeight"], jsonobj["imgWidth"]
        ret.append(record)
    if not os.path.isfile(ret[0]["sem_seg_file_name"]):
        raise FileNotFoundError(
            f"'{ret[0]['sem_seg_file_name']}' not found. Please generate labelTrainIds.png with "
            "cityscapesscripts/preparation/createTrainIdLabelImgs.py"
        )
    return ret


def load_cityscapes_instances(image_dir: str, gt_dir: str, to_polygons: bool = True) -> List[Dict[str, Any]]:
    """Instances of the 8 evaluated thing classes (contiguous ids 0..7) from instanceIds PNGs."""
    things = [c for c in cityscapes_categories() if c["isthing"]]
    dataset_id_to_contiguous_id = {c["id"]: i for i, c in enumerate(things)}
    ret = []
    for image_file, instance_id_file, _, _ in _get_cityscapes_files(image_dir, gt_dir):
        if not os.path.isfile(instance_id_file):
            raise FileNotFoundError(f"Cityscapes instance file not found: '{instance_id_file}'")
        inst_image = np.asarray(Image.open(instance_id_file), order="F")
        record = {
            "file_name": image_file,
            "image_id": os.path.basename(image_file),
            "height": inst_image.shape[0],
            "width": inst_image.shape[1],
        }
        annos = []
        for instance_id in np.unique(inst_image[inst_image >= 24]):
            label_id = instance_id // 1000 if instance_id >= 1000 else instance_id
            if int(label_id) not in dataset_id_to_contiguous_id:
                continue
            mask = np.asarray(inst_image == instance_id, dtype=np.uint8, order="F")
            ys, xs = np.nonzero(mask)
            xmin, xmax, ymin, ymax = xs.min(), xs.max(), ys.min(), ys.max()
            if xmax <= xmin or ymax <= ymin:
                continue
            anno = {
                "iscrowd": bool(instance_id < 1000),
                "category_id": dataset_id_to_contiguous_id[int(label_id)],
                "bbox": (float(xmin), float(ymin), float(xmax), float(ymax)),
                "bbox_mode": BoxMode.XYXY_ABS,
            }
            if to_polygons:
                contours = cv2.findContours(mask.copy(), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[-2]
                polygons = [c.reshape(-1).tolist() for c in contours if len(c) >= 3]
                if not polygons:
                    continue
                anno["segmentation"] = polygons
            else:
                import pycocotools.mask as mask_util

                anno["segmentation"] = mask_util.encode(mask[:, :, None])[0]
            annos.append(anno)
        record["annotations"] = annos
        ret.append(record)
    return ret


def load_cityscapes_panoptic(image_dir: str, gt_dir: str, gt_json: str, meta: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Panoptic annotations made by cityscapesscripts' createPanopticImgs."""
    if not os.path.isfile(gt_json):
        raise FileNotFoundError(
            f"'{gt_json}' not found. Please run cityscapesscripts/preparation/createPanopticImgs.py"
        )
    with open(gt_json) as f:
        json_info = json.load(f)
    image_dict = {}
    for city in _ls(image_dir):
        for basename in _ls(os.path.join(image_dir, city)):
            suffix = "_leftImg8bit.png"
            if basename.endswith(suffix):
                image_dict[basename[: -len(suffix)]] = os.path.join(image_dir, city, basename)
    ret = []
    for ann in json_info["annotations"]:
        image_file = image_dict.get(ann["image_id"])
        if image_file is None:
            raise FileNotFoundError(f"No image for panoptic annotation '{ann['image_id']}' in {image_dir}")
        segments_info = []
        for seg in ann["segments_info"]:
            seg = dict(seg)
            cat = seg["category_id"]
            if cat in meta["thing_dataset_id_to_contiguous_id"]:
                seg["category_id"] = meta["thing_dataset_id_to_contiguous_id"][cat]
            else:
                seg["category_id"] = meta["stuff_dataset_id_to_contiguous_id"][cat]
            segments_info.append(seg)
        stem = os.path.splitext(image_file.replace("leftImg8bit", "gtFine"))[0]
        ret.append(
            {
                "file_name": image_file,
                "image_id": "_".join(os.path.splitext(os.path.basename(image_file))[0].split("_")[:3]),
                "sem_seg_file_name": stem + "_labelTrainIds.png",
                "pan_seg_file_name": os.path.join(gt_dir, ann["file_name"]),
                "segments_info": segments_info,
            }
        )
    if not ret:
        raise ValueError(f"No images found in {image_dir}!")
    return ret


_RAW_CITYSCAPES_SPLITS = {
    "cityscapes_fine_{task}_train": ("cityscapes/leftImg8bit/train/", "cityscapes/gtFine/train/"),
    "cityscapes_fine_{task}_val": ("cityscapes/leftImg8bit/val/", "cityscapes/gtFine/val/"),
    "cityscapes_fine_{task}_test": ("cityscapes/leftImg8bit/test/", "cityscapes/gtFine/test/"),
}


def register_all_cityscapes(root: str) -> None:
    """``cityscapes_fine_{instance_seg,sem_seg}_{train,val,test}``."""
    from .meta import cityscapes_meta

    for key, (image_dir, gt_dir) in _RAW_CITYSCAPES_SPLITS.items():
        meta = cityscapes_meta()
        image_dir = os.path.join(root, image_dir)
        gt_dir = os.path.join(root, gt_dir)

        inst_key = key.format(task="instance_seg")
        DatasetCatalog.register(inst_key, lambda x=image_dir, y=gt_dir: load_cityscapes_instances(x, y))
        MetadataCatalog.get(inst_key).set(
            image_dir=image_dir, gt_dir=gt_dir, evaluator_type="cityscapes_instance", **meta
        )

        sem_key = key.format(task="sem_seg")
        DatasetCatalog.register(sem_key, lambda x=image_dir, y=gt_dir: load_cityscapes_semantic(x, y))
        MetadataCatalog.get(sem_key).set(
            image_dir=image_dir,
            gt_dir=gt_dir,
            evaluator_type="cityscapes_sem_seg",
            ignore_label=255,
            **meta,
        )


_RAW_CITYSCAPES_PANOPTIC_SPLITS = {
    "cityscapes_fine_panoptic_train": (
        "cityscapes/leftImg8bit/train",
        "cityscapes/gtFine/cityscapes_panoptic_train",
        "cityscapes/gtFine/cityscapes_panoptic_train.json",
    ),
    "cityscapes_fine_panoptic_val": (
        "cityscapes/leftImg8bit/val",
        "cityscapes/gtFine/cityscapes_panoptic_val",
        "cityscapes/gtFine/cityscapes_panoptic_val.json",
    ),
}


def register_all_cityscapes_panoptic(root: str) -> None:
    """``cityscapes_fine_panoptic_{train,val}``."""
    from .meta import cityscapes_panoptic_meta

    meta = cityscapes_panoptic_meta()
    for key, (image_dir, gt_dir, gt_json) in _RAW_CITYSCAPES_PANOPTIC_SPLITS.items():
        image_dir = os.path.join(root, image_dir)
        gt_dir = os.path.join(root, gt_dir)
        gt_json = os.path.join(root, gt_json)
        DatasetCatalog.register(
            key, lambda x=image_dir, y=gt_dir, z=gt_json: load_cityscapes_panoptic(x, y, z, meta)
        )
        MetadataCatalog.get(key).set(
            panoptic_root=gt_dir,
            image_root=image_dir,
            panoptic_json=gt_json,
            gt_dir=gt_dir.replace("cityscapes_panoptic_", ""),
            evaluator_type="cityscapes_panoptic_seg",
            ignore_label=255,
            label_divisor=1000,
            **meta,
        )
