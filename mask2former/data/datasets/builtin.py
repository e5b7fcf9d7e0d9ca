"""Registration of the standard datasets under a root folder, with the official names, paths
and metadata of detectron2 + Mask2Former. Nothing is read from disk until a dataset is requested.
"""
from __future__ import annotations

import os
from ...utils.catalog import DatasetCatalog, MetadataCatalog
from . import meta as M
from .cityscapes import register_all_cityscapes, register_all_cityscapes_panoptic
from .coco import load_sem_seg, register_coco_instances
from .coco_panoptic import (
    register_coco_panoptic,
    register_coco_panoptic_annos_sem_seg,
    register_panoptic_with_sem_seg,
)
from .shapes import register_all_shapes
from .shapes_video import register_all_shapes_video
from .ytvis import register_all_ytvis

__all__ = [
    "register_all_ade20k",
    "register_all_ade20k_full",
    "register_all_ade20k_instance",
    "register_all_ade20k_panoptic",
    "register_all_builtin",
    "register_all_cityscapes",
    "register_all_cityscapes_panoptic",
    "register_all_coco",
    "register_all_coco_panoptic_annos_sem_seg",
    "register_all_coco_stuff_10k",
    "register_all_mapillary_vistas",
    "register_all_mapillary_vistas_panoptic",
    "register_all_shapes",
]

_PREDEFINED_SPLITS_COCO = {
    "coco_2014_train": ("coco/train2014", "coco/annotations/instances_train2014.json"),
    "coco_2014_val": ("coco/val2014", "coco/annotations/instances_val2014.json"),
    "coco_2014_minival": ("coco/val2014", "coco/annotations/instances_minival2014.json"),
    "coco_2014_valminusminival": ("coco/val2014", "coco/annotations/instances_valminusminival2014.json"),
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
    "coco_2017_test": ("coco/test2017", "coco/annotations/image_info_test2017.json"),
    "coco_2017_test-dev": ("coco/test2017", "coco/annotations/image_info_test-dev2017.json"),
    "coco_2017_val_100": ("coco/val2017", "coco/annotations/instances_val2017_100.json"),
}

# name: (panoptic_root, panoptic_json, Mask2Former's semantic root made by prepare_coco_semantic_annos_from_panoptic_annos.py)
_PREDEFINED_SPLITS_COCO_PANOPTIC = {
    "coco_2017_train_panoptic": (
        "coco/panoptic_train2017",
        "coco/annotations/panoptic_train2017.json",
        "coco/panoptic_semseg_train2017",
    ),
    "coco_2017_val_panoptic": (
        "coco/panoptic_val2017",
        "coco/annotations/panoptic_val2017.json",
        "coco/panoptic_semseg_val2017",
    ),
}


def _join(root: str, path: str) -> str:
    return path if "://" in path else os.path.join(root, path)


def register_all_coco(root: str) -> None:
    """detectron2's COCO instance splits and "standard" panoptic splits."""
    for key, (image_root, json_file) in _PREDEFINED_SPLITS_COCO.items():
        register_coco_instances(key, M.coco_instances_meta(), _join(root, json_file), _join(root, image_root))
    for prefix, (panoptic_root, panoptic_json, _) in _PREDEFINED_SPLITS_COCO_PANOPTIC.items():
        instances_meta = MetadataCatalog.get(prefix[: -len("_panoptic")])
        register_coco_panoptic(
            prefix,
            M.coco_panoptic_standard_meta(),
            instances_meta.image_root,
            _join(root, panoptic_root),
            _join(root, panoptic_json),
            instances_meta.json_file,
        )


def register_all_coco_panoptic_annos_sem_seg(root: str) -> None:
    """Mask2Former's ``coco_2017_{train,val}_panoptic_with_sem_seg`` (needs ``register_all_coco`` first)."""
    for prefix, (panoptic_root, panoptic_json, semantic_root) in _PREDEFINED_SPLITS_COCO_PANOPTIC.items():
        instances_meta = MetadataCatalog.get(prefix[: -len("_panoptic")])
        register_coco_panoptic_annos_sem_seg(
            prefix,
            M.coco_panoptic_meta(),
            instances_meta.image_root,
            _join(root, panoptic_root),
            _join(root, panoptic_json),
            _join(root, semantic_root),
            instances_meta.json_file,
        )


def register_all_ade20k(root: str) -> None:
    """``ade20k_sem_seg_{train,val}`` (150 classes, labels from prepare_ade20k_sem_seg.py)."""
    root = os.path.join(root, "ADEChallengeData2016")
    colors = [c["color"] for c in M.ade20k_150_categories()]
    for name, dirname in [("train", "training"), ("val", "validation")]:
        image_dir = os.path.join(root, "images", dirname)
        gt_dir = os.path.join(root, "annotations_detectron2", dirname)
        name = f"ade20k_sem_seg_{name}"
        DatasetCatalog.register(
            name, lambda x=image_dir, y=gt_dir: load_sem_seg(y, x, gt_ext="png", image_ext="jpg")
        )
        MetadataCatalog.get(name).set(
            stuff_classes=M.ade20k_sem_seg_classes(),
            stuff_colors=[list(c) for c in colors],
            image_root=image_dir,
            sem_seg_root=gt_dir,
            evaluator_type="sem_seg",
            ignore_label=255,
        )


_PREDEFINED_SPLITS_ADE20K_PANOPTIC = {
    "ade20k_panoptic_train": (
        "ADEChallengeData2016/images/training",
        "ADEChallengeData2016/ade20k_panoptic_train",
        "ADEChallengeData2016/ade20k_panoptic_train.json",
        "ADEChallengeData2016/annotations_detectron2/training",
        "ADEChallengeData2016/ade20k_instance_train.json",
    ),
    "ade20k_panoptic_val": (
        "ADEChallengeData2016/images/validation",
        "ADEChallengeData2016/ade20k_panoptic_val",
        "ADEChallengeData2016/ade20k_panoptic_val.json",
        "ADEChallengeData2016/annotations_detectron2/validation",
        "ADEChallengeData2016/ade20k_instance_val.json",
    ),
}


def register_all_ade20k_panoptic(root: str) -> None:
    """``ade20k_panoptic_{train,val}``."""
    metadata = M.ade20k_panoptic_meta()
    for prefix, (image_root, panoptic_root, panoptic_json, semantic_root, instance_json) in (
        _PREDEFINED_SPLITS_ADE20K_PANOPTIC.items()
    ):
        register_panoptic_with_sem_seg(
            prefix,
            metadata,
            os.path.join(root, image_root),
            os.path.join(root, panoptic_root),
            os.path.join(root, semantic_root),
            os.path.join(root, panoptic_json),
            os.path.join(root, instance_json),
            evaluator_type="ade20k_panoptic_seg",
        )


def register_all_ade20k_instance(root: str) -> None:
    """``ade20k_instance_{train,val}`` (100 thing classes, COCO-format json)."""
    splits = {
        "ade20k_instance_train": (
            "ADEChallengeData2016/images/training",
            "ADEChallengeData2016/ade20k_instance_train.json",
        ),
        "ade20k_instance_val": (
            "ADEChallengeData2016/images/validation",
            "ADEChallengeData2016/ade20k_instance_val.json",
        ),
    }
    for key, (image_root, json_file) in splits.items():
        register_coco_instances(key, M.ade20k_instance_meta(), _join(root, json_file), _join(root, image_root))


def register_all_ade20k_full(root: str) -> None:
    """``ade20k_full_sem_seg_{train,val}`` (847 classes, 16-bit TIFF labels, ignore 65535)."""
    root = os.path.join(root, "ADE20K_2021_17_01")
    meta = M.ade20k_full_meta()
    for name, dirname in [("train", "training"), ("val", "validation")]:
        image_dir = os.path.join(root, "images_detectron2", dirname)
        gt_dir = os.path.join(root, "annotations_detectron2", dirname)
        name = f"ade20k_full_sem_seg_{name}"
        DatasetCatalog.register(
            name, lambda x=image_dir, y=gt_dir: load_sem_seg(y, x, gt_ext="tif", image_ext="jpg")
        )
        MetadataCatalog.get(name).set(
            stuff_classes=meta["stuff_classes"][:],
            image_root=image_dir,
            sem_seg_root=gt_dir,
            evaluator_type="sem_seg",
            ignore_label=65535,
        )


def register_all_coco_stuff_10k(root: str) -> None:
    """``coco_2017_{train,test}_stuff_10k_sem_seg`` (171 classes)."""
    root = os.path.join(root, "coco", "coco_stuff_10k")
    meta = M.coco_stuff_meta()
    for name, image_dirname, sem_seg_dirname in [
        ("train", "images_detectron2/train", "annotations_detectron2/train"),
        ("test", "images_detectron2/test", "annotations_detectron2/test"),
    ]:
        image_dir = os.path.join(root, image_dirname)
        gt_dir = os.path.join(root, sem_seg_dirname)
        name = f"coco_2017_{name}_stuff_10k_sem_seg"
        DatasetCatalog.register(
            name, lambda x=image_dir, y=gt_dir: load_sem_seg(y, x, gt_ext="png", image_ext="jpg")
        )
        MetadataCatalog.get(name).set(
            image_root=image_dir, sem_seg_root=gt_dir, evaluator_type="sem_seg", ignore_label=255, **meta
        )


def register_all_mapillary_vistas(root: str) -> None:
    """``mapillary_vistas_sem_seg_{train,val}`` (65 classes, ignore label 65)."""
    root = os.path.join(root, "mapillary_vistas")
    meta = M.mapillary_vistas_meta()
    for name, dirname in [("train", "training"), ("val", "validation")]:
        image_dir = os.path.join(root, dirname, "images")
        gt_dir = os.path.join(root, dirname, "labels")
        name = f"mapillary_vistas_sem_seg_{name}"
        DatasetCatalog.register(
            name, lambda x=image_dir, y=gt_dir: load_sem_seg(y, x, gt_ext="png", image_ext="jpg")
        )
        MetadataCatalog.get(name).set(
            image_root=image_dir, sem_seg_root=gt_dir, evaluator_type="sem_seg", ignore_label=65, **meta
        )


def register_all_mapillary_vistas_panoptic(root: str) -> None:
    """``mapillary_vistas_panoptic_{train,val}``."""
    metadata = M.mapillary_vistas_panoptic_meta()
    for prefix, split in (("mapillary_vistas_panoptic_train", "training"), ("mapillary_vistas_panoptic_val", "validation")):
        base = os.path.join(root, "mapillary_vistas", split)
        register_panoptic_with_sem_seg(
            prefix,
            metadata,
            os.path.join(base, "images"),
            os.path.join(base, "panoptic"),
            os.path.join(base, "labels"),
            os.path.join(base, "panoptic", "panoptic_2018.json"),
            None,
            evaluator_type="mapillary_vistas_panoptic_seg",
            ignore_label=65,
        )


def register_all_builtin(root: str) -> None:
    """Register every built-in dataset under ``root`` (idempotent: skips names already registered)."""
    if "coco_2017_train" in DatasetCatalog:
        return
    register_all_coco(root)
    register_all_coco_panoptic_annos_sem_seg(root)
    register_all_cityscapes(root)
    register_all_cityscapes_panoptic(root)
    register_all_ade20k(root)
    register_all_ade20k_panoptic(root)
    register_all_ade20k_instance(root)
    register_all_ade20k_full(root)
    register_all_coco_stuff_10k(root)
    register_all_mapillary_vistas(root)
    register_all_mapillary_vistas_panoptic(root)
    register_all_shapes(root)
    register_all_ytvis(root)
    register_all_shapes_video(root)

