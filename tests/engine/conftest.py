"""Fixtures for the engine tests: a tiny shapes dataset, its in-process registration, tiny configs."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator

import pytest
import torch
from engine_helpers import (
    IN_PROCESS_TRAIN, IN_PROCESS_VAL, PANOPTIC_CONFIG, TINY_IMAGE_SIZE, TINY_SPLITS, tiny_opts,
)

from mask2former.config import get_cfg
from mask2former.data import DatasetCatalog, MetadataCatalog
from mask2former.data.datasets import ensure_shapes_dataset, get_shapes_metadata, load_coco_panoptic_json


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    """A ``$DETECTRON2_DATASETS`` folder holding a tiny shapes dataset (8 train, 4 val, 64x64)."""
    root = tmp_path_factory.mktemp("engine_datasets")
    ensure_shapes_dataset(str(root), splits=TINY_SPLITS, image_size=TINY_IMAGE_SIZE)
    return root


@pytest.fixture(scope="session")
def tiny_datasets(shapes_root: Path) -> Dict[str, str]:
    """Register the tiny shapes panoptic splits in this process under their own names
    (the built-in ``shapes_*`` names point at ``$DETECTRON2_DATASETS`` of the test session)."""
    base = shapes_root / "shapes"
    names = {"train": IN_PROCESS_TRAIN, "val": IN_PROCESS_VAL}
    meta = get_shapes_metadata()
    for split, name in names.items():
        paths = {
            "image_root": str(base / split / "images"),
            "panoptic_root": str(base / split / "panoptic"),
            "sem_seg_root": str(base / split / "semantic"),
            "panoptic_json": str(base / "annotations" / f"panoptic_{split}.json"),
            "json_file": str(base / "annotations" / f"instances_{split}.json"),
        }
        if name in DatasetCatalog:
            continue

        def load(p=paths):
            return load_coco_panoptic_json(p["panoptic_json"], p["image_root"], p["panoptic_root"], meta,
                                           p["sem_seg_root"])

        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(evaluator_type="coco_panoptic_seg", ignore_label=255, label_divisor=1000,
                                      **paths, **meta)
    return names


@pytest.fixture()
def tiny_cfg(tiny_datasets, tmp_path):
    """A function ``(*KEY VALUE overrides) -> frozen cfg`` for in-process training on the tiny data,
    writing into ``tmp_path / "output"``."""

    def make(*extra: object):
        cfg = get_cfg()
        cfg.merge_from_file(str(PANOPTIC_CONFIG))
        cfg.merge_from_list(tiny_opts(tmp_path / "output", "DATASETS.TRAIN", f"('{IN_PROCESS_TRAIN}',)",
                                      "DATASETS.TEST", f"('{IN_PROCESS_VAL}',)", *extra))
        cfg.freeze()
        return cfg

    return make


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Single-threaded torch for in-process training (threads only fight on a shared 2-core box)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


