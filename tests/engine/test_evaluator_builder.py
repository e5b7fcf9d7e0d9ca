"""build_evaluator: the evaluators of every config's test set are the official train_net.py's choice."""
from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from mask2former.config import get_cfg
from mask2former.data import MetadataCatalog  # noqa: F401  (registers the built-in datasets)
from mask2former.data.datasets import get_shapes_metadata, register_coco_panoptic
from mask2former.engine import DefaultTrainer, build_evaluator
from mask2former.evaluation import DatasetEvaluators
from mask2former.utils.catalog import DatasetCatalog

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# The official Mask2Former train_net.py's Trainer.build_evaluator, written out for the test set
# and MODEL.MASK_FORMER.TEST.{SEMANTIC,INSTANCE,PANOPTIC}_ON of each config folder
# (swin/ and timm/ subfolders belong to their parent):
#   folder: (DATASETS.TEST[0], (SEMANTIC_ON, INSTANCE_ON, PANOPTIC_ON), evaluator classes in order)
OFFICIAL = {
    "ade20k/instance-segmentation": ("ade20k_instance_val", (1, 1, 1), ["COCOEvaluator"]),
    "ade20k/panoptic-segmentation": (
        "ade20k_panoptic_val", (1, 1, 1), ["SemSegEvaluator", "COCOPanopticEvaluator", "InstanceSegEvaluator"],
    ),
    "ade20k/semantic-segmentation": ("ade20k_sem_seg_val", (1, 0, 0), ["SemSegEvaluator"]),
    "cityscapes/instance-segmentation": (
        "cityscapes_fine_instance_seg_val", (0, 1, 0), ["CityscapesInstanceEvaluator"],
    ),
    "cityscapes/panoptic-segmentation": (
        "cityscapes_fine_panoptic_val", (1, 1, 1),
        ["COCOPanopticEvaluator", "CityscapesSemSegEvaluator", "CityscapesInstanceEvaluator"],
    ),
    "cityscapes/semantic-segmentation": ("cityscapes_fine_sem_seg_val", (1, 0, 0), ["CityscapesSemSegEvaluator"]),
    "coco/instance-segmentation": ("coco_2017_val", (0, 1, 0), ["COCOEvaluator"]),
    "coco/panoptic-segmentation": (
        "coco_2017_val_panoptic_with_sem_seg", (1, 1, 1),
        ["COCOPanopticEvaluator", "COCOEvaluator", "SemSegEvaluator"],
    ),
    "mapillary-vistas/panoptic-segmentation": (
        "mapillary_vistas_panoptic_val", (1, 0, 1), ["COCOPanopticEvaluator", "SemSegEvaluator"],
    ),
    "mapillary-vistas/semantic-segmentation": ("mapillary_vistas_sem_seg_val", (1, 0, 0), ["SemSegEvaluator"]),
    # MaskFormer (v1) configs: the same script's choice (SEMANTIC_ON is Mask2Former's default True)
    "maskformer/ade20k-150": ("ade20k_sem_seg_val", (1, 0, 0), ["SemSegEvaluator"]),
    "maskformer/ade20k-150-panoptic": (
        "ade20k_panoptic_val", (1, 0, 1), ["SemSegEvaluator", "COCOPanopticEvaluator"],
    ),
    "maskformer/ade20k-full-847": ("ade20k_full_sem_seg_val", (1, 0, 0), ["SemSegEvaluator"]),
    "maskformer/cityscapes-19": ("cityscapes_fine_sem_seg_val", (1, 0, 0), ["CityscapesSemSegEvaluator"]),
    # the "standard" COCO panoptic val has no semantic labels: the official script would add a
    # SemSegEvaluator that fails on the first image; MaskFormer v1's script builds none either
    "maskformer/coco-panoptic": ("coco_2017_val_panoptic", (1, 0, 1), ["COCOPanopticEvaluator"]),
    "maskformer/coco-stuff-10k-171": ("coco_2017_test_stuff_10k_sem_seg", (1, 0, 0), ["SemSegEvaluator"]),
    "maskformer/mapillary-vistas-65": ("mapillary_vistas_sem_seg_val", (1, 0, 0), ["SemSegEvaluator"]),
}


def _config_files():
    files = []
    for path in sorted(CONFIGS.rglob("*.yaml")):
        rel = path.relative_to(CONFIGS)
        if rel.parts[0] == "shapes" or rel.name.startswith("Base-") or rel.parts[0].startswith("youtubevis"):
            continue
        files.append(rel)
    return files


def _folder(rel: Path) -> str:
    parts = [p for p in rel.parent.parts if p not in ("swin", "timm")]
    return "/".join(parts)


def _classes(evaluator) -> list:
    if isinstance(evaluator, DatasetEvaluators):
        return [type(e).__name__ for e in evaluator._evaluators]
    return [type(evaluator).__name__]


def test_every_config_folder_is_in_the_table():
    folders = {_folder(rel) for rel in _config_files()}
    assert folders == set(OFFICIAL)


@pytest.mark.parametrize("rel", _config_files(), ids=str)
def test_config_gets_the_official_evaluators(rel, tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / rel))
    dataset, flags, expected = OFFICIAL[_folder(rel)]
    test = cfg.MODEL.MASK_FORMER.TEST
    assert cfg.DATASETS.TEST[0] == dataset
    assert (int(test.SEMANTIC_ON), int(test.INSTANCE_ON), int(test.PANOPTIC_ON)) == flags
    evaluator = DefaultTrainer.build_evaluator(cfg, dataset, output_folder=str(tmp_path))
    assert _classes(evaluator) == expected


# evaluator_type x enabled tasks -> the official choice, for the combinations no config above has
@pytest.mark.parametrize(
    "dataset, flags, expected",
    [
        ("mapillary_vistas_panoptic_val", (1, 1, 1), ["COCOPanopticEvaluator", "InstanceSegEvaluator", "SemSegEvaluator"]),
        ("mapillary_vistas_panoptic_val", (0, 0, 0), None),
        ("ade20k_panoptic_val", (0, 0, 0), ["SemSegEvaluator"]),  # SemSeg regardless of the flags
        ("coco_2017_val_panoptic_with_sem_seg", (1, 0, 0), ["SemSegEvaluator"]),
        ("coco_2017_val_panoptic_with_sem_seg", (0, 1, 0), ["COCOEvaluator"]),
        ("cityscapes_fine_panoptic_val", (0, 0, 1), ["COCOPanopticEvaluator"]),
        ("cityscapes_fine_panoptic_val", (0, 1, 0), ["CityscapesInstanceEvaluator"]),
        ("cityscapes_fine_instance_seg_val", (1, 0, 1), ["CityscapesInstanceEvaluator"]),
        ("cityscapes_fine_sem_seg_val", (0, 1, 1), ["CityscapesSemSegEvaluator"]),
        ("coco_2017_val", (1, 0, 1), ["COCOEvaluator"]),
        ("ade20k_sem_seg_val", (0, 1, 1), ["SemSegEvaluator"]),
    ],
)
def test_flag_combinations(dataset, flags, expected, tmp_path):
    cfg = get_cfg()
    test = cfg.MODEL.MASK_FORMER.TEST
    test.SEMANTIC_ON, test.INSTANCE_ON, test.PANOPTIC_ON = (bool(f) for f in flags)
    if expected is None:
        with pytest.raises(NotImplementedError, match="mapillary_vistas_panoptic_seg"):
            build_evaluator(cfg, dataset, str(tmp_path))
    else:
        assert _classes(build_evaluator(cfg, dataset, str(tmp_path))) == expected


def test_panoptic_dataset_without_semantic_labels_warns(tmp_path, caplog):
    name = f"custom_panoptic_{uuid.uuid4().hex[:8]}"
    register_coco_panoptic(name, get_shapes_metadata(), str(tmp_path), str(tmp_path), str(tmp_path / "p.json"))
    try:
        cfg = get_cfg()
        cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = True
        cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = True
        logger = logging.getLogger("mask2former.engine.evaluator_builder")
        logger.addHandler(caplog.handler)
        try:
            with caplog.at_level(logging.WARNING, logger=logger.name):
                evaluator = build_evaluator(cfg, name, str(tmp_path))
        finally:
            logger.removeHandler(caplog.handler)
        assert _classes(evaluator) == ["COCOPanopticEvaluator", "COCOEvaluator"]
        assert "no semantic labels" in caplog.text and name in caplog.text
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_default_output_folder(tmp_path):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = True
    evaluator = build_evaluator(cfg, "coco_2017_val_panoptic_with_sem_seg")
    assert all(e._output_dir == str(tmp_path / "inference") for e in evaluator._evaluators)
