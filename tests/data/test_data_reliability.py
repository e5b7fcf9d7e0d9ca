"""Bad data names its culprit (issue: reliability 5, 6, 7): labels with unknown ids / another size /
colours, panoptic segments of unknown categories, truncated images, and the option to skip them."""
from __future__ import annotations

import copy
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from mask2former.config import get_cfg
from mask2former.data import (
    DatasetMapper, MaskFormerPanopticDatasetMapper, MaskFormerSemanticDatasetMapper, build_detection_train_loader,
)
from mask2former.data import transforms as T
from mask2former.data.datasets import load_coco_panoptic_json, load_sem_seg
from mask2former.data.datasets.shapes import get_shapes_metadata
from mask2former.data.detection_utils import CorruptImageError, SkipCorruptImages, read_image
from mask2former.utils.label_checks import LabelError, check_semantic_label

NUM_CLASSES = 6  # shapes: 3 things + 3 stuff


def _semantic_mapper(num_classes=NUM_CLASSES, mapper=MaskFormerSemanticDatasetMapper):
    return mapper(is_train=True, augmentations=[T.ResizeShortestEdge(64, 1000, "choice")], image_format="RGB",
                  ignore_label=255, size_divisibility=0, num_classes=num_classes)


@pytest.fixture()
def sem_dict(tiny_shapes, tmp_path) -> dict:
    """A semantic dataset dict whose label PNG is a private copy (tests rewrite it)."""
    d = load_sem_seg(str(tiny_shapes / "train/semantic"), str(tiny_shapes / "train/images"))[0]
    label = tmp_path / "label.png"
    shutil.copy(d["sem_seg_file_name"], label)
    return {**d, "sem_seg_file_name": str(label)}


def _label(d: dict) -> np.ndarray:
    return np.array(Image.open(d["sem_seg_file_name"]))


# ---------------------------------------------------------------- 5: label maps
def test_valid_label_maps_as_before(sem_dict):
    out = _semantic_mapper()(copy.deepcopy(sem_dict))
    assert set(out["sem_seg"].unique().tolist()) <= set(range(NUM_CLASSES)) | {255}


def test_label_id_beyond_num_classes_names_both_files(sem_dict):
    # before: IndexError inside the matcher (a device-side assert on a GPU)
    label = _label(sem_dict)
    label[0, :3] = [9, 200, 255]  # 255 is the ignore label: allowed
    Image.fromarray(label).save(sem_dict["sem_seg_file_name"])
    with pytest.raises(LabelError) as info:
        _semantic_mapper()(sem_dict)
    message = str(info.value)
    assert sem_dict["sem_seg_file_name"] in message and sem_dict["file_name"] in message
    assert f"holds ids [9, 200] outside [0, {NUM_CLASSES})" in message and "NUM_CLASSES" in message


def test_label_of_another_size_names_both_files(sem_dict):
    # before: "ResizeTransform expects an image of size ..."
    Image.fromarray(_label(sem_dict)[:, :50]).save(sem_dict["sem_seg_file_name"])
    with pytest.raises(LabelError, match=r"label '.*label.png' \(image '.*'\) has size \(h, w\) = \(64, 50\), "
                                         r"but the image is \(64, 64\)"):
        _semantic_mapper()(sem_dict)


def test_colour_label_is_refused_but_grey_saved_as_rgb_is_read(sem_dict):
    label = _label(sem_dict)
    Image.fromarray(np.stack([label] * 3, axis=2)).save(sem_dict["sem_seg_file_name"])
    grey = _semantic_mapper()(copy.deepcopy(sem_dict))
    np.testing.assert_array_equal(grey["sem_seg"].numpy(), label)  # same pixels, no resize at 64
    colour = np.stack([label, label * 2 % 7, label], axis=2).astype(np.uint8)
    Image.fromarray(colour).save(sem_dict["sem_seg_file_name"])
    # before: "expand(CPUBoolType ...)" deep in the mapper
    for mapper in (_semantic_mapper(), DatasetMapper(is_train=False, augmentations=[], image_format="RGB")):
        with pytest.raises(LabelError, match=r"label.png' .* is a colour image of shape \(64, 64, 3\)"):
            mapper(copy.deepcopy(sem_dict))


def test_panoptic_mapper_checks_its_semantic_and_panoptic_maps(tiny_shapes, tmp_path):
    d = load_coco_panoptic_json(str(tiny_shapes / "annotations/panoptic_train.json"), str(tiny_shapes / "train/images"),
                                str(tiny_shapes / "train/panoptic"), get_shapes_metadata(),
                                str(tiny_shapes / "train/semantic"))[0]
    small = tmp_path / "pan.png"
    Image.open(d["pan_seg_file_name"]).crop((0, 0, 60, 64)).save(small)
    with pytest.raises(LabelError, match=r"Panoptic label '.*pan.png' .* has size \(h, w\) = \(64, 60\)"):
        _semantic_mapper(mapper=MaskFormerPanopticDatasetMapper)({**d, "pan_seg_file_name": str(small)})
    with pytest.raises(LabelError, match="outside"):
        _semantic_mapper(num_classes=2, mapper=MaskFormerPanopticDatasetMapper)(d)


def test_num_classes_comes_from_the_config(tiny_shapes):
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.TRAIN", "('shapes_sem_seg_train',)", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 4])
    assert MaskFormerSemanticDatasetMapper(cfg, True).num_classes == 4


def test_check_semantic_label_lists_at_most_ten_ids():
    label = np.arange(30).reshape(5, 6)
    with pytest.raises(LabelError, match=r"holds ids \[4, 5, 6, 7, 8, 9, 10, 11, 12, 13\] and 16 more"):
        check_semantic_label(label, num_classes=4, ignore_label=255, label_file="l.png")


# ---------------------------------------------------------------- 6: panoptic categories
def test_unknown_panoptic_category_names_the_image(tiny_shapes, tmp_path):
    data = json.loads((tiny_shapes / "annotations/panoptic_train.json").read_text())
    data["annotations"][1]["segments_info"][0]["category_id"] = 99
    bad_json = tmp_path / "panoptic_train.json"
    bad_json.write_text(json.dumps(data))
    image_file = data["images"][[i["id"] for i in data["images"]].index(data["annotations"][1]["image_id"])]["file_name"]
    with pytest.raises(KeyError) as info:
        load_coco_panoptic_json(str(bad_json), str(tiny_shapes / "train/images"), str(tiny_shapes / "train/panoptic"),
                                get_shapes_metadata())
    message = str(info.value)
    assert "category_id=99" in message and image_file in message and str(bad_json) in message


# ---------------------------------------------------------------- 7: truncated / corrupt images
def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_truncated_image_is_an_error_naming_the_file(tmp_path, fmt, suffix):
    # before (demo / cv2.imread): decoded half grey, predicted on, exit code 0
    data = _encoded(fmt)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError, match=rf"cut\{suffix}' \({len(data) // 2} bytes\): it is truncated"):
        read_image(path, format="BGR")


def test_truncated_image_is_detected_even_if_a_library_allowed_truncated_images(tmp_path, monkeypatch):
    data = _encoded("JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(CorruptImageError):
        read_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_training_can_skip_corrupt_images_and_counts_them(sem_dict, tmp_path, caplog):
    broken = dict(sem_dict, file_name=str(tmp_path / "broken.jpg"))
    data = _encoded("JPEG")
    Path(broken["file_name"]).write_bytes(data[:300])
    dataset = [sem_dict, broken]
    strict = build_detection_train_loader(dataset, mapper=_semantic_mapper(), total_batch_size=2,
                                          aspect_ratio_grouping=False, seed=0)
    with pytest.raises(CorruptImageError, match="broken.jpg"):
        next(iter(strict))
    skipping = SkipCorruptImages(_semantic_mapper())
    loader = build_detection_train_loader(dataset, mapper=skipping, total_batch_size=2,
                                          aspect_ratio_grouping=False, seed=0)
    with caplog.at_level(logging.WARNING, logger="mask2former"):
        batches = [batch for _, batch in zip(range(3), loader)]
    files = {d["file_name"] for batch in batches for d in batch}
    assert files == {sem_dict["file_name"]} and skipping.num_skipped >= 1
    assert f"({skipping.num_skipped} corrupt image(s) skipped so far" in caplog.text and "broken.jpg" in caplog.text


def test_skip_option_is_a_config_key_read_by_the_trainer(tiny_shapes):
    from mask2former.data import DatasetCatalog, MetadataCatalog
    from mask2former.engine import DefaultTrainer

    name = "reliability_tiny_sem_seg_train"
    if name not in DatasetCatalog:
        DatasetCatalog.register(name, lambda: load_sem_seg(str(tiny_shapes / "train/semantic"),
                                                           str(tiny_shapes / "train/images")))
        MetadataCatalog.get(name).set(ignore_label=255, stuff_classes=[str(i) for i in range(NUM_CLASSES)])
    cfg = get_cfg()
    assert cfg.DATALOADER.SKIP_CORRUPT_IMAGES is False
    cfg.merge_from_list(["DATASETS.TRAIN", f"('{name}',)", "INPUT.DATASET_MAPPER_NAME", "mask_former_semantic",
                         "DATALOADER.NUM_WORKERS", 0])
    assert not isinstance(DefaultTrainer.build_train_loader(cfg).mapper, SkipCorruptImages)
    cfg.merge_from_list(["DATALOADER.SKIP_CORRUPT_IMAGES", True])
    assert isinstance(DefaultTrainer.build_train_loader(cfg).mapper, SkipCorruptImages)


# ---------------------------------------------------------------- 4: interrupted data generation
def test_interrupted_shapes_generation_is_cleaned_up_on_the_next_start(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time

    from mask2former.data.datasets import ensure_shapes_dataset

    root = tmp_path / "datasets"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folders = {}
    for name, owner in (("dead", f"{socket.gethostname()} {int(dead.stdout)}"),
                        ("live", f"{socket.gethostname()} {os.getpid()}"), ("old", None), ("new", None)):
        folder = root / f".shapes-tmp-{name}"
        (folder / "shapes" / "train").mkdir(parents=True)
        (folder / "shapes" / "train" / "half.png").write_bytes(b"partial")
        if owner:
            (folder / "OWNER").write_text(owner)
        folders[name] = folder
    two_hours_ago = time.time() - 7200
    os.utime(folders["old"], (two_hours_ago, two_hours_ago))
    ensure_shapes_dataset(str(root), splits={"train": 1, "val": 1}, image_size=32)
    left = sorted(p.name for p in root.iterdir())
    assert left == [".shapes-tmp-live", ".shapes-tmp-new", "shapes"]  # a running (or fresh) one is kept
