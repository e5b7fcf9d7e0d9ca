"""A panoptic dataset registered without an instances json: COCOEvaluator derives one from the
panoptic PNGs + segments_info, and its AP equals pycocotools' COCOeval on the derived json and on
the instances json that the shapes generator writes independently."""
from __future__ import annotations

import contextlib
import io
import json
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

from mask2former.data.datasets import ensure_shapes_dataset, get_shapes_metadata, register_coco_panoptic
from mask2former.data.datasets import meta as M
from mask2former.evaluation import COCOEvaluator, convert_to_coco_dict
from mask2former.evaluation.coco_json import thing_categories
from mask2former.structures import Boxes, Instances
from mask2former.utils.catalog import DatasetCatalog, MetadataCatalog

SIZE = 64


@pytest.fixture(scope="module")
def shapes_val(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco_json_data")
    base = ensure_shapes_dataset(str(root), splits={"val": 5}, image_size=SIZE)
    return base


@pytest.fixture
def custom_panoptic(shapes_val, tmp_path):
    """The README's custom panoptic registration: no instances_json (metadata json_file None)."""
    name = f"custom_panoptic_{uuid.uuid4().hex[:8]}"
    register_coco_panoptic(
        name, get_shapes_metadata(),
        os.path.join(shapes_val, "val", "images"),
        os.path.join(shapes_val, "val", "panoptic"),
        os.path.join(shapes_val, "annotations", "panoptic_val.json"),
    )
    assert MetadataCatalog.get(name).json_file is None
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _masks_by_image(coco_dict):
    out = {}
    for a in coco_dict["annotations"]:
        mask = mask_util.decode(a["segmentation"]).astype(bool)
        out.setdefault(a["image_id"], []).append((a["category_id"], a["iscrowd"], a["area"], mask))
    return out


def test_derived_json_equals_the_generators_instances_json(custom_panoptic, shapes_val):
    derived = convert_to_coco_dict(custom_panoptic)
    with open(os.path.join(shapes_val, "annotations", "instances_val.json")) as f:
        reference = json.load(f)
    assert [(c["id"], c["name"]) for c in derived["categories"]] == [(c["id"], c["name"]) for c in reference["categories"]]
    assert sorted((i["id"], i["height"], i["width"]) for i in derived["images"]) == sorted(
        (i["id"], i["height"], i["width"]) for i in reference["images"])
    got, want = _masks_by_image(derived), _masks_by_image(reference)
    assert sorted(got) == sorted(want) and sum(len(v) for v in want.values()) > 5
    for image_id, objs in want.items():
        assert len(got[image_id]) == len(objs)
        for (c1, crowd1, area1, m1), (c2, crowd2, area2, m2) in zip(got[image_id], objs):
            assert (c1, crowd1, area1) == (c2, crowd2, area2) and np.array_equal(m1, m2)


def _predictions(reference):
    """Per image: each ground-truth mask eroded by a growing margin, a shifted copy, scores falling."""
    rng = np.random.default_rng(0)
    preds = {}
    for k, a in enumerate(reference["annotations"]):
        mask = mask_util.decode(a["segmentation"]).astype(bool)
        cut = k % 4
        if cut:
            ys = np.nonzero(mask.any(1))[0]
            mask = mask.copy()
            mask[ys[: cut * 2]] = False  # drop the top rows: lower IoU
        shifted = np.roll(mask, 6, axis=1)
        cls = a["category_id"] - 1  # shapes: dataset id 1..4 -> contiguous 0..3
        preds.setdefault(a["image_id"], []).extend(
            [(cls, mask, float(rng.uniform(0.5, 1.0))), ((cls + 1) % 4, shifted, float(rng.uniform(0, 0.6)))]
        )
    return preds


def _run(ev, preds):
    ev.reset()
    for image_id, p in preds.items():
        inst = Instances((SIZE, SIZE))
        inst.pred_masks = torch.as_tensor(np.stack([m for _, m, _ in p]))
        inst.scores = torch.tensor([s for _, _, s in p])
        inst.pred_classes = torch.tensor([c for c, _, _ in p])
        inst.pred_boxes = Boxes(torch.zeros(len(p), 4))
        ev.process([{"image_id": image_id, "file_name": f"{image_id}.jpg"}], [{"instances": inst}])
    return ev.evaluate()


def _cocoeval(json_file, preds):
    results = []
    for image_id, p in preds.items():
        for c, m, s in p:
            rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            results.append({"image_id": image_id, "category_id": c + 1, "segmentation": rle, "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(json_file))
        e = COCOeval(gt, gt.loadRes(results), "segm")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats


def test_ap_of_derived_json_equals_cocoeval(custom_panoptic, shapes_val, tmp_path):
    reference_file = os.path.join(shapes_val, "annotations", "instances_val.json")
    with open(reference_file) as f:
        preds = _predictions(json.load(f))
    out = tmp_path / "inference"
    ev = COCOEvaluator(custom_panoptic, output_dir=str(out))
    segm = _run(ev, preds)["segm"]
    derived = out / f"{custom_panoptic}_coco_format.json"
    assert derived.is_file()  # cached in the output folder
    assert 10 < segm["AP"] < 90
    for stats in (_cocoeval(derived, preds), _cocoeval(reference_file, preds)):
        for idx, metric in enumerate(["AP", "AP50", "AP75"]):
            assert segm[metric] == pytest.approx(stats[idx] * 100), metric

    mtime = derived.stat().st_mtime_ns
    again = _run(COCOEvaluator(custom_panoptic, output_dir=str(out)), preds)["segm"]
    assert derived.stat().st_mtime_ns == mtime and again["AP"] == segm["AP"]  # the cache is reused


def _distributed_worker(shapes_val, out_dir, result_file):
    """Each of two processes evaluates half of the images; the main process derives the json."""
    rank = dist.get_rank()
    name = "custom_panoptic_distributed"
    register_coco_panoptic(name, get_shapes_metadata(), os.path.join(shapes_val, "val", "images"),
                           os.path.join(shapes_val, "val", "panoptic"),
                           os.path.join(shapes_val, "annotations", "panoptic_val.json"))
    with open(os.path.join(shapes_val, "annotations", "instances_val.json")) as f:
        preds = _predictions(json.load(f))
    mine = {i: p for k, (i, p) in enumerate(sorted(preds.items())) if k % 2 == rank}
    res = _run(COCOEvaluator(name, output_dir=out_dir), mine)
    if rank == 0:
        torch.save(res["segm"], result_file)
    else:
        assert res is None


@pytest.mark.slow  # two fresh interpreters importing torch: ~15-60 s on a busy machine
def test_two_processes_give_the_numbers_of_one(custom_panoptic, shapes_val, tmp_path):
    result_file = tmp_path / "res.pth"
    driver = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from test_coco_json import _distributed_worker;"
        "from mask2former.engine.launch import launch;"
        "launch(_distributed_worker, 2, dist_url='auto', args=tuple(sys.argv[2:5]))"
    )
    repo_root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", driver, str(Path(__file__).parent), str(shapes_val),
                    str(tmp_path / "two"), str(result_file)], check=True, env=env, cwd=str(repo_root), timeout=300)
    two = torch.load(result_file)
    with open(os.path.join(shapes_val, "annotations", "instances_val.json")) as f:
        preds = _predictions(json.load(f))
    one = _run(COCOEvaluator(custom_panoptic, output_dir=str(tmp_path / "one")), preds)["segm"]
    assert (tmp_path / "two" / "custom_panoptic_distributed_coco_format.json").is_file()
    assert two.keys() == one.keys()
    for key in one:
        assert (np.isnan(one[key]) and np.isnan(two[key])) or two[key] == one[key], key


def test_crowd_segments_and_missing_pngs(shapes_val, tmp_path):
    with open(os.path.join(shapes_val, "annotations", "panoptic_val.json")) as f:
        pan = json.load(f)
    thing = next(s for s in pan["annotations"][0]["segments_info"] if s["category_id"] <= 4)
    thing["iscrowd"] = 1
    pan_json = tmp_path / "panoptic.json"
    pan_json.write_text(json.dumps(pan))
    name = f"custom_panoptic_{uuid.uuid4().hex[:8]}"
    register_coco_panoptic(name, get_shapes_metadata(), os.path.join(shapes_val, "val", "images"),
                           os.path.join(shapes_val, "val", "panoptic"), str(pan_json))
    try:
        derived = convert_to_coco_dict(name)
        crowd = [a for a in derived["annotations"] if a["iscrowd"]]
        assert len(crowd) == 1 and crowd[0]["image_id"] == pan["annotations"][0]["image_id"]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.mark.parametrize(
    "meta, first, count",
    [
        (M.ade20k_panoptic_meta(), (7, "bed"), 100),  # things numbered among all 150 classes
        (M.mapillary_vistas_panoptic_meta(), None, None),  # thing_classes lists all 65
        (M.coco_panoptic_meta(), (1, "person"), 80),
        (M.coco_panoptic_standard_meta(), (1, "person"), 80),  # thing_classes lists all 133
    ],
)
def test_thing_categories_of_the_panoptic_metadata(meta, first, count):
    name = f"meta_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(**meta)
    try:
        cats = thing_categories(MetadataCatalog.get(name))
    finally:
        MetadataCatalog.remove(name)
    id_map = meta["thing_dataset_id_to_contiguous_id"]
    assert [c["id"] for c in cats] == sorted(id_map, key=id_map.get)
    names = meta["stuff_classes"]  # every one of these metadata names all classes here
    assert [c["name"] for c in cats] == [names[id_map[c["id"]]] for c in cats]
    if first is not None:
        assert (cats[0]["id"], cats[0]["name"]) == first and len(cats) == count
