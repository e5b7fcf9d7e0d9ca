"""SemSegEvaluator on a 4x4 example whose metrics are computed by hand."""

import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image

from mask2former.utils.catalog import DatasetCatalog, MetadataCatalog
from mask2former.evaluation import SemSegEvaluator

# 4 classes (d never appears), 255 = ignore
GT = np.array(
    [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 255, 255],
        [2, 2, 2, 2],
    ],
    dtype=np.uint8,
)
PRED = np.array(
    [
        [0, 0, 1, 0],
        [0, 1, 1, 1],
        [2, 2, 0, 1],
        [2, 2, 1, 2],
    ]
)
# By hand (ignored pixels dropped):
#   class a: gt 4 px, predicted 4 px, 3 correct -> IoU 3 / (4 + 4 - 3) = 0.6,   acc 3/4
#   class b: gt 4 px, predicted 5 px, 3 correct -> IoU 3 / (4 + 5 - 3) = 0.5,   acc 3/4
#   class c: gt 6 px, predicted 5 px, 5 correct -> IoU 5 / (6 + 5 - 5) = 5/6, acc 5/6
#   class d: absent from the ground truth      -> NaN, left out of the means
MIOU = (0.6 + 0.5 + 5 / 6) / 3
FWIOU = (4 * 0.6 + 4 * 0.5 + 6 * (5 / 6)) / 14
MACC = (0.75 + 0.75 + 5 / 6) / 3
PACC = 11 / 14


def _scores(pred, num_classes=4):
    """(K, H, W) one-hot-ish scores whose argmax is ``pred``."""
    return torch.nn.functional.one_hot(torch.as_tensor(pred), num_classes).permute(2, 0, 1).float()


@pytest.fixture
def dataset(tmp_path):
    name = f"test_semseg_{uuid.uuid4().hex[:8]}"
    gt_file = tmp_path / "gt.png"
    Image.fromarray(GT).save(gt_file)
    records = [{"file_name": "img.jpg", "sem_seg_file_name": str(gt_file), "height": 4, "width": 4}]
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(stuff_classes=["a", "b", "c", "d"], ignore_label=255)
    yield name, str(gt_file)
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _check(res):
    assert res["mIoU"] == pytest.approx(100 * MIOU)
    assert res["fwIoU"] == pytest.approx(100 * FWIOU)
    assert res["mACC"] == pytest.approx(100 * MACC)
    assert res["pACC"] == pytest.approx(100 * PACC)
    assert res["IoU-a"] == pytest.approx(60.0)
    assert res["IoU-b"] == pytest.approx(50.0)
    assert res["IoU-c"] == pytest.approx(500 / 6)
    assert math.isnan(res["IoU-d"]) and math.isnan(res["ACC-d"])
    assert res["ACC-a"] == pytest.approx(75.0) and res["ACC-c"] == pytest.approx(500 / 6)


def test_hand_computed_metrics(dataset):
    name, gt_file = dataset
    ev = SemSegEvaluator(name, distributed=False)
    ev.reset()
    ev.process(
        [{"file_name": "img.jpg", "sem_seg_file_name": gt_file}], [{"sem_seg": _scores(PRED)}]
    )
    res = ev.evaluate()["sem_seg"]
    _check(res)
    assert list(res)[:2] == ["mIoU", "fwIoU"]
    assert [k for k in res if k.startswith("IoU-")] == ["IoU-a", "IoU-b", "IoU-c", "IoU-d"]


def test_gt_found_through_dataset_catalog_and_accumulated(dataset, tmp_path):
    name, _ = dataset
    ev = SemSegEvaluator(name, distributed=True, output_dir=str(tmp_path / "out"))  # 1 process
    ev.reset()
    for _ in range(2):  # the test mapper drops sem_seg_file_name: looked up by file_name
        ev.process([{"file_name": "img.jpg"}], [{"sem_seg": _scores(PRED)}])
    assert ev._conf_matrix.sum() == 32
    _check(ev.evaluate()["sem_seg"])
    assert (tmp_path / "out" / "sem_seg_predictions.json").is_file()
    assert (tmp_path / "out" / "sem_seg_evaluation.pth").is_file()


def test_bad_inputs_raise(dataset, tmp_path):
    name, gt_file = dataset
    with pytest.raises(ValueError, match="num_classes=5"):
        SemSegEvaluator(name, num_classes=5)
    ev = SemSegEvaluator(name, distributed=False)
    ev.reset()
    with pytest.raises(KeyError, match="other.jpg"):
        ev.process([{"file_name": "other.jpg"}], [{"sem_seg": _scores(PRED)}])
    bad = GT.copy()
    bad[0, 0] = 7
    Image.fromarray(bad).save(tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"bad.png' \(image 'x'\) holds ids \[7\] outside \[0, 4\)"):
        ev.process(
            [{"file_name": "x", "sem_seg_file_name": str(tmp_path / "bad.png")}],
            [{"sem_seg": _scores(PRED)}],
        )
    with pytest.raises(ValueError, match=r"has size \(h, w\) = \(4, 4\), but the image is \(3, 4\)"):
        ev.process(
            [{"file_name": "x", "sem_seg_file_name": gt_file}], [{"sem_seg": _scores(PRED[:3])}]
        )


def _distributed_worker(gt_file, result_file):
    rank = dist.get_rank()
    name = "test_semseg_distributed"
    MetadataCatalog.get(name).set(stuff_classes=["a", "b", "c", "d"], ignore_label=255)
    ev = SemSegEvaluator(name, distributed=True)
    ev.reset()
    # rank 0 sees the example, rank 1 a perfect prediction of the same ground truth
    pred = PRED if rank == 0 else np.where(GT == 255, 0, GT).astype(np.int64)
    ev.process([{"file_name": "x", "sem_seg_file_name": gt_file}], [{"sem_seg": _scores(pred)}])
    res = ev.evaluate()
    if rank == 0:
        torch.save(res["sem_seg"], result_file)
    else:
        assert res is None


def test_results_gathered_across_processes(dataset, tmp_path):
    _, gt_file = dataset
    result_file = tmp_path / "res.pth"
    # Two gloo processes started by launch(), as train_net.py does, from a fresh interpreter
    # (like the engine's distributed tests) rather than from inside the pytest process.
    driver = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from test_sem_seg_evaluation import _distributed_worker;"
        "from mask2former.engine.launch import launch;"
        "launch(_distributed_worker, 2, dist_url='auto', args=(sys.argv[2], sys.argv[3]))"
    )
    repo_root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", driver, str(Path(__file__).parent), str(gt_file), str(result_file)],
                   check=True, env=env, cwd=str(repo_root), timeout=300)
    res = torch.load(result_file)
    # confusion matrices summed over the two processes
    tp = np.array([3 + 4, 3 + 4, 5 + 6])
    gt = np.array([4 + 4, 4 + 4, 6 + 6])
    pred = np.array([4 + 4, 5 + 4, 5 + 6])
    iou = tp / (gt + pred - tp)
    assert res["mIoU"] == pytest.approx(100 * iou.mean())
    assert res["pACC"] == pytest.approx(100 * tp.sum() / gt.sum())


def test_truncated_or_colour_ground_truth_names_the_file(dataset, tmp_path):
    from mask2former.utils.label_checks import LabelError

    name, gt_file = dataset
    ev = SemSegEvaluator(name, distributed=False)
    ev.reset()
    data = Path(gt_file).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(LabelError, match=r"cut.png': it is truncated, corrupt or not an image"):
        ev.process([{"file_name": "x", "sem_seg_file_name": str(tmp_path / "cut.png")}], [{"sem_seg": _scores(PRED)}])
    Image.fromarray(np.stack([GT, GT * 0, GT], axis=2).astype(np.uint8)).save(tmp_path / "colour.png")
    with pytest.raises(LabelError, match=r"colour.png' \(image 'x'\) is a colour image"):
        ev.process([{"file_name": "x", "sem_seg_file_name": str(tmp_path / "colour.png")}], [{"sem_seg": _scores(PRED)}])
