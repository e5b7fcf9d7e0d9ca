"""``datasets/prepare_cityscapes.py`` on a tiny Cityscapes in the real format; the built-in
``cityscapes_fine_*`` registrations and the Cityscapes evaluators read what it writes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fake_cityscapes import H, W, SCENES, write_fake_cityscapes
from mask2former.data import DatasetCatalog, MetadataCatalog
from mask2former.evaluation import CityscapesInstanceEvaluator, CityscapesSemSegEvaluator
from mask2former.structures import Instances
from mask2former.utils.panoptic_utils import rgb2id
from prepare_scripts import load_script

prep = load_script("prepare_cityscapes")

# trainIds of the labels used by the fake scenes (cityscapesscripts' labels.py table)
TRAIN_ID = {7: 0, 8: 1, 11: 2, 17: 5, 21: 8, 23: 10, 24: 11, 25: 12, 26: 13, 33: 18, 1: 255}


@pytest.fixture
def fake(tmp_path: Path):
    data = write_fake_cityscapes(tmp_path, "val")
    write_fake_cityscapes(tmp_path, "train")
    prep.main(["--root", str(tmp_path), "--workers", "2", "--label-splits", "train", "val"])
    return tmp_path, data


def _read(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_train_id_labels_and_panoptic_files(fake):
    root, data = fake
    gt = root / "cityscapes" / "gtFine"
    for (city, stem), _ in SCENES.items():
        label_ids = data[stem]["label_ids"]
        train_ids = _read(gt / "val" / city / f"{stem}_gtFine_labelTrainIds.png")
        assert train_ids.shape == (H, W)
        assert set(np.unique(label_ids).tolist()) <= set(TRAIN_ID)
        np.testing.assert_array_equal(train_ids, np.vectorize(TRAIN_ID.get)(label_ids))
    assert _read(gt / "val" / "aachen" / "aachen_000000_000019_gtFine_labelTrainIds.png")[47, 0] == 255  # ego vehicle

    with open(gt / "cityscapes_panoptic_val.json") as f:
        pan = json.load(f)
    assert sorted(a["image_id"] for a in pan["annotations"]) == sorted(stem for _, stem in SCENES)
    for ann in pan["annotations"]:
        inst = data[ann["image_id"]]["instance_ids"]
        ids = rgb2id(_read(gt / "cityscapes_panoptic_val" / ann["file_name"]).astype(np.uint32))
        void = np.isin(data[ann["image_id"]]["label_ids"], [1])  # ego vehicle: ignored in eval
        np.testing.assert_array_equal(ids, np.where(void, 0, inst))
        segments = {s["id"]: s for s in ann["segments_info"]}
        assert set(segments) == set(np.unique(inst[~void]).tolist())
        for sid, s in segments.items():
            assert s["category_id"] == (sid // 1000 if sid >= 1000 else sid)  # label ids
            assert s["area"] == int((inst == sid).sum())
            assert s["iscrowd"] == int(sid == 26)  # the car group
    assert (gt / "cityscapes_panoptic_train.json").is_file()


def test_builtin_datasets_and_evaluators_read_the_prepared_files(fake, builtin_catalog):
    root, data = fake
    builtin_catalog(root)
    sem = DatasetCatalog.get("cityscapes_fine_sem_seg_val")
    pan = DatasetCatalog.get("cityscapes_fine_panoptic_val")
    inst = DatasetCatalog.get("cityscapes_fine_instance_seg_val")
    assert len(sem) == len(pan) == len(inst) == 3
    for d in sem + pan:
        assert Path(d["sem_seg_file_name"]).is_file() and d["sem_seg_file_name"].endswith("_gtFine_labelTrainIds.png")
    for d in pan:
        assert Path(d["pan_seg_file_name"]).is_file()
        thing_ids = {s["category_id"] for s in d["segments_info"] if s["id"] >= 1000}
        assert thing_ids <= set(MetadataCatalog.get("cityscapes_fine_panoptic_val").thing_dataset_id_to_contiguous_id.values())
    annotations = [a for d in inst for a in d["annotations"]]
    assert (len(annotations), sum(a["iscrowd"] for a in annotations)) == (10, 1)  # 9 instances, the car group

    # both evaluators find the ground truth through the registered metadata (gt_dir)
    for dataset in ("cityscapes_fine_sem_seg_val", "cityscapes_fine_panoptic_val"):
        sem_ev = CityscapesSemSegEvaluator(dataset)
        sem_ev.reset()
        for d in sem:
            train_ids = _read(d["sem_seg_file_name"]).astype(np.int64)
            scores = torch.nn.functional.one_hot(torch.as_tensor(np.where(train_ids == 255, 0, train_ids)), 19)
            sem_ev.process([{"file_name": d["file_name"]}], [{"sem_seg": scores.permute(2, 0, 1).float()}])
        assert sem_ev.evaluate()["sem_seg"]["IoU"] == pytest.approx(100.0)
    # instances as a panoptic model outputs them (classes = trainIds), from the panoptic PNGs
    inst_ev = CityscapesInstanceEvaluator("cityscapes_fine_panoptic_val")
    for d in pan:
        ids = rgb2id(_read(d["pan_seg_file_name"]).astype(np.uint32))
        things = [s for s in d["segments_info"] if s["id"] >= 1000]
        r = Instances((H, W))
        r.pred_masks = torch.as_tensor(np.stack([ids == s["id"] for s in things]))
        r.pred_classes = torch.tensor([s["category_id"] for s in things])
        r.scores = torch.full((len(things),), 0.5)
        inst_ev.process([{"file_name": d["file_name"]}], [{"instances": r}])
    assert inst_ev.evaluate()["segm"] == {"AP": pytest.approx(100.0), "AP50": pytest.approx(100.0)}


def test_missing_folders_and_files_are_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"Cityscapes folder not found: '.*cityscapes'.*gtFine_trainvaltest.zip"):
        prep.main(["--root", str(tmp_path), "--workers", "1"])
    write_fake_cityscapes(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match=r"gtFine/train folder not found: '.*gtFine/train'"):
        prep.main(["--root", str(tmp_path), "--workers", "1", "--label-splits", "val", "train"])
    for f in (tmp_path / "cityscapes" / "gtFine" / "val").glob("*/*_instanceIds.png"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match=r"No gtFine/val/<city>/\*_gtFine_instanceIds.png"):
        prep.main(["--root", str(tmp_path), "--workers", "1", "--label-splits", "val", "--panoptic-splits", "val"])


def test_help_names_the_root_variable_and_the_outputs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        prep.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "DETECTRON2_DATASETS" in out and "labelTrainIds" in out and "cityscapes_panoptic_" in out
