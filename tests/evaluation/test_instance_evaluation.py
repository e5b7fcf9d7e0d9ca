"""InstanceSegEvaluator on a fake ADE20K panoptic val set (the official instance json layout and
category ids): 100 for perfect predictions, pycocotools' COCOeval numbers for partial ones, the
same numbers from two processes as from one."""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
import torch.distributed as dist
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mask2former.data.datasets import meta as M
from mask2former.evaluation import COCOEvaluator, InstanceSegEvaluator
from mask2former.structures import Boxes, Instances
from mask2former.utils.catalog import MetadataCatalog

H, W = 48, 64
# ADE20K panoptic: a thing's contiguous id is its index among the 150 classes, its dataset id in
# ade20k_instance_val.json the same number (bed 7, windowpane 8, person 12, car 20)
BED, WINDOW, PERSON, CAR = 7, 8, 12, 20


def _box(x0, y0, x1, y1):
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


# image id -> [(class, mask)] (ADE file names, as prepare_ade20k_ins_seg.py writes them)
GT = {
    1: [(BED, _box(0, 0, 30, 20)), (PERSON, _box(40, 5, 50, 40)), (PERSON, _box(52, 10, 60, 44))],
    2: [(WINDOW, _box(10, 10, 20, 18)), (CAR, _box(20, 25, 64, 48)), (PERSON, _box(0, 30, 6, 45))],
}
# a hit, a loose hit, a confident false positive, a wrong class, a missed object
PRED = {
    1: [(BED, _box(0, 0, 28, 20), 0.9), (PERSON, _box(40, 8, 50, 40), 0.8), (PERSON, _box(20, 30, 30, 40), 0.85)],
    2: [(WINDOW, _box(10, 10, 20, 16), 0.7), (BED, _box(20, 25, 64, 48), 0.6), (CAR, _box(24, 25, 64, 48), 0.5)],
}


def _instances_json():
    categories = [{"id": int(i), "name": n} for i, n in M._rows(M.ade20k_instance.TABLE)]
    images, annotations = [], []
    for image_id, objs in GT.items():
        images.append({"id": image_id, "file_name": f"ADE_val_{image_id:08d}.jpg", "height": H, "width": W})
        for cls, mask in objs:
            rle = _rle(mask)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cls, "segmentation": rle,
                "area": float(mask.sum()), "bbox": mask_util.toBbox(rle).tolist(), "iscrowd": 0,
            })
    return {"images": images, "annotations": annotations, "categories": categories}


def _register(name, json_file):
    MetadataCatalog.get(name).set(json_file=str(json_file), evaluator_type="ade20k_panoptic_seg",
                                  **M.ade20k_panoptic_meta())


@pytest.fixture
def ade_dataset(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    root.mkdir()
    json_file = root / "ade20k_instance_val.json"
    json_file.write_text(json.dumps(_instances_json()))
    name = f"test_ade20k_panoptic_{uuid.uuid4().hex[:8]}"
    _register(name, json_file)
    yield name, json_file
    MetadataCatalog.remove(name)


def _outputs(image_id, preds):
    inst = Instances((H, W))
    inst.pred_masks = torch.as_tensor(np.stack([m for _, m, _ in preds]))
    inst.scores = torch.tensor([s for _, _, s in preds])
    inst.pred_classes = torch.tensor([c for c, _, _ in preds])
    inst.pred_boxes = Boxes(torch.zeros(len(preds), 4))
    return [{"image_id": image_id, "file_name": f"ADE_val_{image_id:08d}.jpg"}], [{"instances": inst}]


def _run(ev, preds):
    ev.reset()
    for image_id, p in preds.items():
        ev.process(*_outputs(image_id, p))
    return ev.evaluate()


def _cocoeval(json_file, preds):
    results = [{"image_id": i, "category_id": c, "segmentation": _rle(m), "score": s}
               for i, p in preds.items() for c, m, s in p]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(json_file))
        e = COCOeval(gt, gt.loadRes(results), "segm")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def _check_against_cocoeval(segm, ref):
    for idx, metric in enumerate(["AP", "AP50", "AP75", "APs", "APm", "APl"]):
        expected = ref.stats[idx] * 100 if ref.stats[idx] >= 0 else float("nan")
        assert (math.isnan(expected) and math.isnan(segm[metric])) or segm[metric] == pytest.approx(expected), metric
    precision = ref.eval["precision"]
    cat_ids = ref.params.catIds
    for cls, name in [(BED, "bed"), (PERSON, "person"), (CAR, "car")]:
        p = precision[:, :, cat_ids.index(cls), 0, -1]
        assert segm[f"AP-{name}"] == pytest.approx(float(np.mean(p[p > -1])) * 100)


def test_perfect_predictions_give_100(ade_dataset, tmp_path):
    name, _ = ade_dataset
    perfect = {i: [(c, m, 1.0) for c, m in objs] for i, objs in GT.items()}
    segm = _run(InstanceSegEvaluator(name, output_dir=str(tmp_path / "out")), perfect)["segm"]
    assert segm["AP"] == pytest.approx(100.0) and segm["AP50"] == pytest.approx(100.0)
    assert [segm["AP-bed"], segm["AP-person"], segm["AP-car"]] == pytest.approx([100.0] * 3)
    assert math.isnan(segm["AP-cabinet"])  # a thing class absent from the ground truth
    dumped = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert sorted({d["category_id"] for d in dumped}) == [BED, WINDOW, PERSON, CAR]  # dataset ids


def test_partial_predictions_equal_cocoeval(ade_dataset):
    name, json_file = ade_dataset
    segm = _run(InstanceSegEvaluator(name, distributed=False), PRED)["segm"]
    assert 0 < segm["AP"] < 100
    _check_against_cocoeval(segm, _cocoeval(json_file, PRED))


def test_thing_id_handling_is_what_distinguishes_it_from_coco_evaluator(ade_dataset):
    name, _ = ade_dataset
    # detectron2's rule in COCOEvaluator: contiguous ids 0..K-1 only; ADE20K numbers things among 150
    with pytest.raises(ValueError, match="InstanceSegEvaluator"):
        COCOEvaluator(name)
    ev = InstanceSegEvaluator(name, distributed=False)
    with pytest.raises(KeyError, match="Predicted category 0 is not a thing class"):  # 0 = wall, a stuff class
        _run(ev, {1: [(0, _box(0, 0, 5, 5), 0.5)]})


def _distributed_worker(json_file, result_file):
    rank = dist.get_rank()
    name = "test_ade20k_panoptic_distributed"
    _register(name, json_file)
    ev = InstanceSegEvaluator(name, distributed=True)
    # each process sees one of the two images
    res = _run(ev, {image_id: p for image_id, p in PRED.items() if image_id == rank + 1})
    if rank == 0:
        torch.save(res["segm"], result_file)
    else:
        assert res is None


@pytest.mark.slow  # two fresh interpreters importing torch: ~15-60 s on a busy machine
def test_two_processes_give_the_numbers_of_one(ade_dataset, tmp_path):
    name, json_file = ade_dataset
    result_file = tmp_path / "res.pth"
    driver = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from test_instance_evaluation import _distributed_worker;"
        "from mask2former.engine.launch import launch;"
        "launch(_distributed_worker, 2, dist_url='auto', args=(sys.argv[2], sys.argv[3]))"
    )
    repo_root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", driver, str(Path(__file__).parent), str(json_file), str(result_file)],
                   check=True, env=env, cwd=str(repo_root), timeout=300)
    two = torch.load(result_file)
    one = _run(InstanceSegEvaluator(name, distributed=False), PRED)["segm"]
    assert two.keys() == one.keys()
    for key in one:
        assert (math.isnan(one[key]) and math.isnan(two[key])) or two[key] == one[key], key
