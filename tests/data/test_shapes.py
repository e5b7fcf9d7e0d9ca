import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from mask2former.data import DatasetCatalog, MetadataCatalog
from mask2former.data.datasets.shapes import (
    SHAPES_CATEGORIES,
    ensure_shapes_dataset,
    generate_shapes_dataset,
    register_all_shapes,
)
from mask2former.utils.panoptic_utils import rgb2id

_SMALL = {"splits": {"train": 3, "val": 1}, "image_size": 48}


def _all_bytes(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generator_is_deterministic(tmp_path):
    generate_shapes_dataset(str(tmp_path / "a"), **_SMALL)
    generate_shapes_dataset(str(tmp_path / "b"), **_SMALL)
    a, b = _all_bytes(tmp_path / "a"), _all_bytes(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == 3 * 4 + 4 + 1
    assert a == b
    generate_shapes_dataset(str(tmp_path / "c"), seed=1, **_SMALL)
    assert _all_bytes(tmp_path / "c") != a


def test_annotations_agree(tiny_shapes):
    contiguous = {c["id"]: i for i, c in enumerate(SHAPES_CATEGORIES)}
    pan = json.loads((tiny_shapes / "annotations/panoptic_train.json").read_text())
    inst = json.loads((tiny_shapes / "annotations/instances_train.json").read_text())
    inst_by_image = {}
    for a in inst["annotations"]:
        inst_by_image.setdefault(a["image_id"], []).append(a)
    for ann in pan["annotations"]:
        stem = ann["file_name"][:-4]
        ids = rgb2id(np.asarray(Image.open(tiny_shapes / "train/panoptic" / ann["file_name"])))
        sem = np.asarray(Image.open(tiny_shapes / "train/semantic" / (stem + ".png")))
        assert (tiny_shapes / "train/images" / (stem + ".jpg")).is_file()
        # panoptic and semantic agree pixel for pixel; void == ignore
        expected = np.full(ids.shape, 255)
        for s in ann["segments_info"]:
            m = ids == s["id"]
            assert m.sum() == s["area"] > 0
            expected[m] = contiguous[s["category_id"]]
        assert np.array_equal(expected, sem)
        assert set(np.unique(ids)) <= {0} | {s["id"] for s in ann["segments_info"]}
        # instance RLE masks equal the panoptic thing segments exactly
        things = [s for s in ann["segments_info"] if s["category_id"] <= 4]
        annos = inst_by_image.get(ann["image_id"], [])
        assert [a["category_id"] for a in annos] == [s["category_id"] for s in things]
        for a, s in zip(annos, things):
            instance_mask = mask_util.decode(a["segmentation"]).astype(bool)
            assert np.array_equal(instance_mask, ids == s["id"])
            assert a["bbox"] == s["bbox"] and a["area"] == s["area"]


def test_registration_is_lazy_and_generation_idempotent(tmp_path):
    root = tmp_path / "root"
    names = [f"shapes_{t}_{s}" for t in ("panoptic", "instance", "sem_seg") for s in ("train", "val")]
    for n in names:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)
    try:
        register_all_shapes(str(root))
        assert not root.exists()
        assert MetadataCatalog.get("shapes_panoptic_val").thing_classes == ["circle", "square", "triangle", "star"]
        assert MetadataCatalog.get("shapes_sem_seg_val").stuff_classes[-3:] == ["sky", "grass", "water"]
        ensure_shapes_dataset(str(root), **_SMALL)  # small instead of the default size
        before = _all_bytes(root / "shapes")
        assert ensure_shapes_dataset(str(root)) == str(root / "shapes")
        assert _all_bytes(root / "shapes") == before
        assert len(DatasetCatalog.get("shapes_panoptic_train")) == 3
        assert len(DatasetCatalog.get("shapes_sem_seg_val")) == 1
        (d,) = DatasetCatalog.get("shapes_instance_val")
        assert d["height"] == 48 and all(a["category_id"] in range(4) for a in d["annotations"])
        assert [p.name for p in root.iterdir()] == ["shapes"]  # no temporary folders left
    finally:
        for n in names:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)
        register_all_shapes(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))


def _race(root):
    ensure_shapes_dataset(root, **_SMALL)


def test_concurrent_generation_is_safe(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_race, args=(str(tmp_path),)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]
    generate_shapes_dataset(str(tmp_path / "ref"), **_SMALL)
    assert _all_bytes(tmp_path / "shapes") == _all_bytes(tmp_path / "ref")
