"""PQ on a small synthetic panoptic image whose PQ / SQ / RQ are computed by hand."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mask2former.utils.catalog import MetadataCatalog
from mask2former.evaluation import COCOPanopticEvaluator, pq_compute
from mask2former.evaluation.panoptic_quality import PQStat, id2rgb, pq_compute_single_image, rgb2id

CATEGORIES = [
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 2, "name": "car", "isthing": 1},
    {"id": 3, "name": "sky", "isthing": 0},
    {"id": 4, "name": "road", "isthing": 0},  # appears nowhere: not counted
]


def _ground_truth():
    """10x10 ids: sky rows 0-1 and 8-9, VOID rows 2-3, person / car rows 4-5, crowd rows 6-7."""
    gt = np.zeros((10, 10), dtype=np.int64)
    gt[0:2] = 3
    gt[8:10] = 3
    gt[4:6, 0:5] = 1
    gt[4:6, 5:10] = 2
    gt[6:8] = 4
    segments = [
        {"id": 1, "category_id": 1, "area": 10, "iscrowd": 0},
        {"id": 2, "category_id": 2, "area": 10, "iscrowd": 0},
        {"id": 3, "category_id": 3, "area": 40, "iscrowd": 0},
        {"id": 4, "category_id": 1, "area": 20, "iscrowd": 1},
    ]
    return gt, segments


def _prediction():
    pred = np.zeros((10, 10), dtype=np.int64)
    pred[4:6, 0:3] = 1  # person, 6 px inside the 10 px person: IoU 6/10 = 0.6 -> TP
    pred[0:2, 0:5] = 2  # car on the sky, no car overlap -> FP car (and the GT car is a FN)
    pred[0:2, 5:10] = 3  # sky 10 + 20 px, all inside the 40 px sky: IoU 30/40 = 0.75 -> TP
    pred[8:10] = 3
    pred[2:4] = 4  # person: 20 of its 24 px on VOID (> 0.5) -> ignored, not FP
    pred[4:6, 3:5] = 4
    pred[6:8] = 5  # person entirely on the person crowd region -> ignored, not FP
    # contiguous ids: person 0, car 1, sky 2
    segments = [
        {"id": 1, "category_id": 0, "isthing": True},
        {"id": 2, "category_id": 1, "isthing": True},
        {"id": 3, "category_id": 2, "isthing": False},
        {"id": 4, "category_id": 0, "isthing": True},
        {"id": 5, "category_id": 0, "isthing": True},
    ]
    return pred, segments


# By hand: person PQ = 0.6 / 1 = 0.6 (SQ 0.6, RQ 1); car PQ = 0 / (0 + 0.5 + 0.5) = 0 (SQ 0, RQ 0);
# sky PQ = 0.75 (SQ 0.75, RQ 1); road not counted.
EXPECTED = {
    "PQ": 100 * (0.6 + 0 + 0.75) / 3,
    "SQ": 100 * (0.6 + 0 + 0.75) / 3,
    "RQ": 100 * 2 / 3,
    "PQ_th": 30.0,
    "SQ_th": 30.0,
    "RQ_th": 50.0,
    "PQ_st": 75.0,
    "SQ_st": 75.0,
    "RQ_st": 100.0,
}


@pytest.fixture
def dataset(tmp_path):
    gt, segments = _ground_truth()
    gt_dir = tmp_path / "panoptic_gt"
    gt_dir.mkdir()
    Image.fromarray(id2rgb(gt)).save(gt_dir / "000001.png")
    gt_json = {
        "images": [{"id": 1, "file_name": "000001.jpg", "height": 10, "width": 10}],
        "annotations": [{"image_id": 1, "file_name": "000001.png", "segments_info": segments}],
        "categories": CATEGORIES,
    }
    (tmp_path / "panoptic_gt.json").write_text(json.dumps(gt_json))
    name = f"test_panoptic_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(
        panoptic_json=str(tmp_path / "panoptic_gt.json"),
        panoptic_root=str(gt_dir),
        thing_dataset_id_to_contiguous_id={1: 0, 2: 1},
        stuff_dataset_id_to_contiguous_id={1: 0, 2: 1, 3: 2, 4: 3},
        label_divisor=1000,
    )
    yield name, tmp_path
    MetadataCatalog.remove(name)


def _check(res):
    assert list(res) == list(EXPECTED)
    for k, v in EXPECTED.items():
        assert res[k] == pytest.approx(v), k


def test_hand_computed_pq(dataset):
    name, tmp_path = dataset
    pred, segments = _prediction()
    ev = COCOPanopticEvaluator(name, output_dir=str(tmp_path / "out"))
    ev.reset()
    ev.process(
        [{"file_name": "/images/000001.jpg", "image_id": 1}],
        [{"panoptic_seg": (torch.as_tensor(pred), segments)}],
    )
    res = ev.evaluate()
    _check(res["panoptic_seg"])
    per_class = ev.last_pq_result["per_class"]
    assert per_class[1] == pytest.approx({"pq": 0.6, "sq": 0.6, "rq": 1.0})
    assert per_class[2] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert ev.last_pq_result["All"]["n"] == 3
    assert segments[0] == {"id": 1, "category_id": 0, "isthing": True}  # model output not mutated
    written = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [s["category_id"] for s in written["annotations"][0]["segments_info"]] == [1, 2, 3, 1, 1]


def test_label_map_output_without_segments_info(dataset):
    """A ``category * label_divisor + instance`` map (-1 = VOID) gives the same PQ."""
    name, _ = dataset
    pred, segments = _prediction()
    label_map = np.full_like(pred, -1)
    for seg, instance in zip(segments, (1, 1, 0, 2, 3)):
        label_map[pred == seg["id"]] = seg["category_id"] * 1000 + instance
    ev = COCOPanopticEvaluator(name)
    ev.reset()
    ev.process(
        [{"file_name": "000001.jpg", "image_id": 1}],
        [{"panoptic_seg": (torch.as_tensor(label_map), None)}],
    )
    _check(ev.evaluate()["panoptic_seg"])


def test_pq_compute_from_files_and_missing_prediction(dataset):
    name, tmp_path = dataset
    pred, segments = _prediction()
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    Image.fromarray(id2rgb(pred)).save(pred_dir / "000001.png")
    dataset_ids = {0: 1, 1: 2, 2: 3}
    pred_json = {
        "annotations": [
            {
                "image_id": 1,
                "file_name": "000001.png",
                "segments_info": [
                    {"id": s["id"], "category_id": dataset_ids[s["category_id"]]} for s in segments
                ],
            }
        ]
    }
    (tmp_path / "pred.json").write_text(json.dumps(pred_json))
    res = pq_compute(
        str(tmp_path / "panoptic_gt.json"),
        str(tmp_path / "pred.json"),
        str(tmp_path / "panoptic_gt"),
        str(pred_dir),
    )
    assert res["All"]["pq"] == pytest.approx(0.45)
    assert res["Things"] == pytest.approx({"pq": 0.3, "sq": 0.3, "rq": 0.5, "n": 2})
    assert res["Stuff"] == pytest.approx({"pq": 0.75, "sq": 0.75, "rq": 1.0, "n": 1})

    (tmp_path / "empty.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(KeyError, match="no prediction for the image with id: 1"):
        pq_compute(
            str(tmp_path / "panoptic_gt.json"),
            str(tmp_path / "empty.json"),
            str(tmp_path / "panoptic_gt"),
            str(pred_dir),
        )


def test_png_json_inconsistency_raises():
    gt, gt_segments = _ground_truth()
    pred, _ = _prediction()
    cats = {c["id"]: c for c in CATEGORIES}
    gt_ann = {"image_id": 7, "segments_info": gt_segments}
    missing = {"image_id": 7, "segments_info": [{"id": 1, "category_id": 1}]}
    with pytest.raises(
        KeyError, match="segment with ID 2 is presented in PNG and not presented in JSON"
    ):
        pq_compute_single_image(PQStat(), gt_ann, missing, gt, pred, cats)
    extra = {"image_id": 7, "segments_info": [{"id": i, "category_id": 1} for i in range(1, 7)]}
    with pytest.raises(KeyError, match=r"IDs \[6\] are presented in JSON"):
        pq_compute_single_image(PQStat(), gt_ann, extra, gt, pred, cats)


def test_rgb_id_round_trip():
    ids = np.array([[0, 1, 255], [256, 65536, 256**3 - 1]])
    rgb = id2rgb(ids)
    assert rgb.dtype == np.uint8 and rgb[1, 0].tolist() == [0, 1, 0]
    np.testing.assert_array_equal(rgb2id(rgb), ids)
    with pytest.raises(ValueError):
        id2rgb(np.array([256**3]))


# ------------------------------------------------------------- several processes give one result
def _perfect_prediction():
    gt, _ = _ground_truth()
    segments = [  # contiguous ids; segment 4 covers the person crowd region (ignored, not FP)
        {"id": 1, "category_id": 0, "isthing": True},
        {"id": 2, "category_id": 1, "isthing": True},
        {"id": 3, "category_id": 2, "isthing": False},
        {"id": 4, "category_id": 0, "isthing": True},
    ]
    return gt.copy(), segments


# Image 1 as above, image 2 predicted perfectly. By hand: person TP 2 (IoU 0.6 + 1) -> PQ 0.8;
# car TP 1, FP 1, FN 1 -> SQ 1, RQ 0.5, PQ 0.5; sky TP 2 (IoU 0.75 + 1) -> PQ 0.875.
TWO_IMAGES_PQ = 100 * (0.8 + 0.5 + 0.875) / 3


def _register_two_images(root: str, name: str) -> None:
    gt, segments = _ground_truth()
    gt_dir = os.path.join(root, "panoptic_gt")
    os.makedirs(gt_dir, exist_ok=True)
    images, annotations = [], []
    for image_id in (1, 2):
        Image.fromarray(id2rgb(gt)).save(os.path.join(gt_dir, f"{image_id:06d}.png"))
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "height": 10, "width": 10})
        annotations.append({"image_id": image_id, "file_name": f"{image_id:06d}.png", "segments_info": segments})
    json_file = os.path.join(root, "panoptic_gt.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": CATEGORIES}, f)
    MetadataCatalog.get(name).set(
        panoptic_json=json_file, panoptic_root=gt_dir,
        thing_dataset_id_to_contiguous_id={1: 0, 2: 1},
        stuff_dataset_id_to_contiguous_id={1: 0, 2: 1, 3: 2, 4: 3},
        label_divisor=1000,
    )


def _evaluate_images(name: str, output_dir: str, image_ids) -> dict:
    predictions = {1: _prediction(), 2: _perfect_prediction()}
    ev = COCOPanopticEvaluator(name, output_dir=output_dir)
    ev.reset()
    for image_id in image_ids:
        pred, segments = predictions[image_id]
        ev.process([{"file_name": f"/images/{image_id:06d}.jpg", "image_id": image_id}],
                   [{"panoptic_seg": (torch.as_tensor(pred), segments)}])
    return ev.evaluate()


def _distributed_worker(root: str, output_dir: str, result_file: str) -> None:
    """One of two gloo processes: each evaluates one of the two images."""
    import torch.distributed as dist

    rank = dist.get_rank()
    _register_two_images(root, "two_image_panoptic")
    res = _evaluate_images("two_image_panoptic", output_dir, [rank + 1])
    if rank == 0:
        torch.save(res["panoptic_seg"], result_file)


@pytest.mark.slow  # two fresh interpreters importing torch
def test_two_processes_give_the_numbers_of_one(tmp_path):
    name = f"test_panoptic_{uuid.uuid4().hex[:8]}"
    _register_two_images(str(tmp_path), name)
    try:
        one = _evaluate_images(name, str(tmp_path / "one"), [1, 2])["panoptic_seg"]
    finally:
        MetadataCatalog.remove(name)
    assert one["PQ"] == pytest.approx(TWO_IMAGES_PQ)

    result_file = tmp_path / "two.pth"
    driver = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from test_panoptic_evaluation import _distributed_worker;"
        "from mask2former.engine.launch import launch;"
        "launch(_distributed_worker, 2, dist_url='auto', args=tuple(sys.argv[2:5]))"
    )
    repo_root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", driver, str(Path(__file__).parent), str(tmp_path),
                    str(tmp_path / "two"), str(result_file)], check=True, env=env, cwd=str(repo_root), timeout=300)
    two = torch.load(result_file)
    assert two == one
