"""Cityscapes evaluators on a tiny Cityscapes in the real on-disk format: perfect predictions give
100; partial ones give what cityscapesscripts' own scripts, run directly on the written files,
give (and a hand count for the IoU); two processes give the numbers of one."""

import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS / "datasets") not in sys.path:
    sys.path.insert(0, str(TESTS / "datasets"))

from cityscapesscripts.helpers.labels import id2label  # noqa: E402
from fake_cityscapes import H, W, write_fake_cityscapes  # noqa: E402

from mask2former.data.datasets.meta import cityscapes_meta  # noqa: E402
from mask2former.evaluation import CityscapesInstanceEvaluator, CityscapesSemSegEvaluator  # noqa: E402
from mask2former.structures import Instances  # noqa: E402
from mask2former.utils.catalog import MetadataCatalog  # noqa: E402

REPO_ROOT = TESTS.parent
THINGS = cityscapes_meta()["thing_classes"]
STEMS = ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"]


def _register(root: Path, name: str) -> str:
    MetadataCatalog.get(name).set(gt_dir=str(root / "cityscapes" / "gtFine" / "val"), **cityscapes_meta())
    return name


@pytest.fixture
def fake(tmp_path):
    data = write_fake_cityscapes(tmp_path)
    name = _register(tmp_path, f"test_cityscapes_{uuid.uuid4().hex[:8]}")
    yield tmp_path, data, name
    MetadataCatalog.remove(name)


# ----------------------------------------------------------------------------- predictions
def _instances(masks, classes, scores) -> Instances:
    r = Instances((H, W))
    r.pred_masks = torch.as_tensor(np.stack(masks))  # (N, H, W) bool
    r.pred_classes = torch.tensor([THINGS.index(c) for c in classes])
    r.scores = torch.tensor(scores, dtype=torch.float32)
    return r


def perfect_instances(data, stem) -> Instances:
    inst = data[stem]["instance_ids"]
    ids = [i for i in np.unique(inst).tolist() if i >= 1000]
    return _instances([inst == i for i in ids], [id2label[i // 1000].name for i in ids], [0.9] * len(ids))


def partial_instances(data, stem) -> Instances:
    """Shifted, halved, missed, mislabelled, crowd-covering and false-positive instances."""
    inst = data[stem]["instance_ids"]
    box = np.zeros((H, W), bool)
    if stem == STEMS[0]:
        shifted = box.copy()
        shifted[22:34, 44:60] = True  # car 1 moved by 4 px: IoU 144 / 240 = 0.6
        fp = box.copy()
        fp[2:8, 10:30] = True  # a car in the sky
        return _instances(
            [inst == 26000, shifted, inst == 24000, fp], ["car", "car", "person", "car"], [0.9, 0.8, 0.7, 0.95]
        )
    if stem == STEMS[1]:  # the bicycle is missed; a prediction covers the car group (ignored)
        return _instances([inst == 26000, inst == 26], ["car", "car"], [0.6, 0.5])
    half = (inst == 24001) & (np.arange(H)[:, None] < 27)
    return _instances(
        [inst == 24000, half, inst == 25000, inst == 33001],
        ["person", "person", "rider", "motorcycle"],
        [0.85, 0.4, 0.3, 0.5],
    )


def _train_ids(label_ids: np.ndarray) -> np.ndarray:
    lut = np.array([id2label[i].trainId if i in id2label else 255 for i in range(256)])
    return lut[label_ids]


def _scores(train_ids: np.ndarray) -> torch.Tensor:
    train_ids = np.where(train_ids == 255, 0, train_ids)  # void pixels: any class (not scored)
    return torch.nn.functional.one_hot(torch.as_tensor(train_ids).long(), 19).permute(2, 0, 1).float()


def perfect_semantic(data, stem) -> torch.Tensor:
    return _scores(_train_ids(data[stem]["label_ids"]))  # (19, H, W)


ROAD, CAR, VEGETATION, TERRAIN = 0, 13, 8, 9


def partial_semantic(data, stem) -> torch.Tensor:
    """50 road pixels of the first image called car; the last image's vegetation called terrain."""
    pred = _train_ids(data[stem]["label_ids"])
    if stem == STEMS[0]:
        assert (pred[38:43, 30:40] == ROAD).all()
        pred[38:43, 30:40] = CAR
    if stem == STEMS[2]:
        pred[pred == VEGETATION] = TERRAIN
    return _scores(pred)


def run_evaluators(name, data, stems, instances_fn, semantic_fn, output_dir=None):
    inst_ev = CityscapesInstanceEvaluator(name, output_dir)
    sem_ev = CityscapesSemSegEvaluator(name, output_dir)
    for ev in (inst_ev, sem_ev):
        ev.reset()
    for stem in stems:
        inputs = [{"file_name": data[stem]["image"], "image_id": stem}]
        inst_ev.process(inputs, [{"instances": instances_fn(data, stem)}])
        sem_ev.process(inputs, [{"sem_seg": semantic_fn(data, stem)}])
    inst, sem = inst_ev.evaluate(), sem_ev.evaluate()
    return None if inst is None else {**inst, **sem}


# ----------------------------------------------------------------------------- perfect
def test_perfect_predictions_give_100(fake):
    _, data, name = fake
    res = run_evaluators(name, data, STEMS, perfect_instances, perfect_semantic)
    assert res["segm"] == {"AP": pytest.approx(100.0), "AP50": pytest.approx(100.0)}
    assert res["sem_seg"] == {k: pytest.approx(100.0) for k in ("IoU", "iIoU", "IoU_sup", "iIoU_sup")}
    assert all(type(v) is float for task in res.values() for v in task.values())


# ----------------------------------------------------------------------------- the scripts run directly
_DIRECT_RUN = """
import json, sys
import numpy as np
if not hasattr(np, "in1d"):  # numpy >= 2.4 removed it; cityscapesscripts 2.3 still calls it
    np.in1d = lambda a, b, assume_unique=False, invert=False: np.isin(np.ravel(a), b, invert=invert)
module, cache = sys.argv[1], sys.argv[2]
import importlib
script = importlib.import_module("cityscapesscripts.evaluation." + module)
script.args.gtInstancesFile = cache  # its default lies inside site-packages
# Its JSON writer (for matches.json, the cache and the results) predates numpy 2's scalar types:
def write_json(obj, file_name):
    with open(file_name, "w") as f:
        json.dump(obj, f, default=lambda o: o.item() if isinstance(o, np.generic) else o.__dict__)
script.writeDict2JSON = write_json
sys.argv = sys.argv[:1]
script.main()
"""


def _run_script_directly(module: str, dataset_root: Path, results: Path, work: Path) -> dict:
    """Run ``cityscapesscripts.evaluation.<module>.main()`` the documented way (environment
    variables, glob of gtFine/val) and return the JSON it exports."""
    work.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "CITYSCAPES_DATASET": str(dataset_root),
        "CITYSCAPES_RESULTS": str(results),
        "CITYSCAPES_EXPORT_DIR": str(work),
    }
    subprocess.run(
        [sys.executable, "-c", _DIRECT_RUN, module, str(work / "gtInstances.json")],
        check=True, env=env, cwd=str(work), timeout=300, capture_output=True,
    )
    if module == "evalInstanceLevelSemanticLabeling":
        export = dataset_root / "evaluationResults" / "resultInstanceLevelSemanticLabeling.json"
    else:
        export = work / "resultPixelLevelSemanticLabeling.json"
    with open(export) as f:
        return json.load(f)


def test_partial_predictions_equal_the_scripts_run_directly(fake):
    root, data, name = fake
    out = root / "inference"
    res = run_evaluators(name, data, STEMS, partial_instances, partial_semantic, output_dir=str(out))
    direct_inst = _run_script_directly(
        "evalInstanceLevelSemanticLabeling", root / "cityscapes", out / "cityscapes_instances", root / "w1"
    )["averages"]
    direct_sem = _run_script_directly(
        "evalPixelLevelSemanticLabeling", root / "cityscapes", out / "cityscapes_sem_seg", root / "w2"
    )
    assert 20 < res["segm"]["AP"] < 90 and 20 < res["segm"]["AP50"] < 100
    assert res["segm"]["AP"] == pytest.approx(100 * direct_inst["allAp"], rel=1e-12)
    assert res["segm"]["AP50"] == pytest.approx(100 * direct_inst["allAp50%"], rel=1e-12)
    for key, direct_key in [
        ("IoU", "averageScoreClasses"),
        ("iIoU", "averageScoreInstClasses"),
        ("IoU_sup", "averageScoreCategories"),
        ("iIoU_sup", "averageScoreInstCategories"),
    ]:
        assert res["sem_seg"][key] == pytest.approx(100 * direct_sem[direct_key], rel=1e-12), key
    assert res["sem_seg"]["IoU"] < 100 and res["sem_seg"]["iIoU"] < 100


def test_partial_semantic_iou_by_hand(fake):
    _, data, name = fake
    res = run_evaluators(name, data, STEMS, perfect_instances, partial_semantic)
    labels = {stem: _train_ids(d["label_ids"]) for stem, d in data.items()}
    road = sum(int((t == ROAD).sum()) for t in labels.values())  # no void pixel is road
    car = sum(int((t == CAR).sum()) for t in labels.values())  # car group pixels are car
    veg_kept = int((labels[STEMS[1]] == VEGETATION).sum())
    veg_lost = int((labels[STEMS[2]] == VEGETATION).sum())
    assert (veg_kept, veg_lost) == (40 * 16, 76 * 12 - 2 * 12)  # minus the pole, and the rider's head
    iou = {
        "road": (road - 50) / road,
        "car": car / (car + 50),
        "vegetation": veg_kept / (veg_kept + veg_lost),
        "terrain": 0.0,  # predicted only: counted with IoU 0 by the Cityscapes script
    }
    # the other 7 classes present (sidewalk, building, pole, sky, person, rider, bicycle) are exact
    expected = (sum(iou.values()) + 7) / 11
    assert res["sem_seg"]["IoU"] == pytest.approx(100 * expected, rel=1e-12)


# ----------------------------------------------------------------------------- two processes
def distributed_worker(root, name, result_file):
    import torch.distributed as dist

    data = {stem: _fake_entry(Path(root), stem) for stem in STEMS}
    _register(Path(root), name)
    stems = [STEMS[0], STEMS[2]] if dist.get_rank() == 0 else [STEMS[1]]
    res = run_evaluators(name, data, stems, partial_instances, partial_semantic)
    if dist.get_rank() == 0:
        torch.save(res, result_file)
    else:
        assert res is None


def _fake_entry(root: Path, stem: str) -> dict:
    """What write_fake_cityscapes returned for ``stem``, read back from disk."""
    from PIL import Image

    city = stem.split("_")[0]
    gt = root / "cityscapes" / "gtFine" / "val" / city
    return {
        "image": str(root / "cityscapes" / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png"),
        "label_ids": np.array(Image.open(gt / f"{stem}_gtFine_labelIds.png")),
        "instance_ids": np.array(Image.open(gt / f"{stem}_gtFine_instanceIds.png")).astype(np.int32),
    }


@pytest.mark.slow  # two fresh interpreters importing torch: ~15-30 s on 2 cores
def test_two_processes_give_the_numbers_of_one(tmp_path):
    write_fake_cityscapes(tmp_path)
    result_file = tmp_path / "res.pth"
    driver = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
        "from test_cityscapes_evaluation import distributed_worker;"
        "from mask2former.engine.launch import launch;"
        "launch(distributed_worker, 2, dist_url='auto', args=(sys.argv[3], 'cityscapes_2proc', sys.argv[4]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-c", driver, str(Path(__file__).parent), str(TESTS / "datasets"), str(tmp_path), str(result_file)],
        check=True, env=env, cwd=str(REPO_ROOT), timeout=300,
    )
    two = torch.load(result_file)
    name = _register(tmp_path, f"test_cityscapes_{uuid.uuid4().hex[:8]}")
    data = {stem: _fake_entry(tmp_path, stem) for stem in STEMS}
    one = run_evaluators(name, data, STEMS, partial_instances, partial_semantic)
    MetadataCatalog.remove(name)
    assert two == one
    assert not math.isnan(one["segm"]["AP"])


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_name_what_is_wrong(fake, tmp_path):
    root, data, name = fake
    MetadataCatalog.get("test_cityscapes_no_gt_dir").set(thing_classes=["car"])
    with pytest.raises(AttributeError, match="'gt_dir'.*test_cityscapes_no_gt_dir"):
        CityscapesInstanceEvaluator("test_cityscapes_no_gt_dir")
    MetadataCatalog.remove("test_cityscapes_no_gt_dir")

    ev = CityscapesSemSegEvaluator(name)
    with pytest.raises(ValueError, match="not a Cityscapes image"):
        ev.process([{"file_name": "img.jpg"}], [{"sem_seg": perfect_semantic(data, STEMS[0])}])
    missing = str(root / "cityscapes" / "leftImg8bit" / "val" / "aachen" / "aachen_000009_000019_leftImg8bit.png")
    with pytest.raises(FileNotFoundError, match="aachen_000009_000019_gtFine_labelIds.png"):
        ev.process([{"file_name": missing}], [{"sem_seg": perfect_semantic(data, STEMS[0])}])
    with pytest.raises(ValueError, match="expects 19 class scores"):
        ev.process([{"file_name": data[STEMS[0]]["image"]}], [{"sem_seg": torch.zeros(5, H, W)}])
    with pytest.raises(RuntimeError, match="no image"):
        ev.evaluate()
