"""YTVISEvaluator on a hand-made YouTube-VIS json (absent frames, polygons and RLE): perfect
predictions give 100, a partial one gives the AP / AR computed by hand below."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
import torch.distributed as dist

from mask2former.evaluation import YTVISEvaluator
from mask2former.evaluation.ytvis_evaluation import spatio_temporal_ious
from mask2former.utils.catalog import MetadataCatalog

H, W, T = 10, 12, 3


def _rle(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _box(y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


EMPTY = np.zeros((H, W), bool)
# video 1: track 11 (category 1) in frames 0 and 1, absent in frame 2 (10 pixels each);
#          track 12 (category 2) in every frame, annotated as polygons.
# video 2: track 21 (category 1) absent in frame 0.
A = [_box(0, 2, 0, 5), _box(0, 2, 1, 6), None]
C = [None, _box(5, 9, 5, 9), _box(5, 9, 6, 10)]
B_POLYGONS = [[[6.0, 2.0, 11.0, 2.0, 11.0, 8.0, 6.0, 8.0]]] * T


def _polygon_mask(polygons) -> np.ndarray:
    return mask_util.decode(mask_util.merge(mask_util.frPyObjects(polygons, H, W))).astype(bool)


B = [_polygon_mask(p) for p in B_POLYGONS]


def _gt_json() -> dict:
    def track(ann_id, video_id, cat, masks, polygons=None):
        segms = polygons or [None if m is None else _rle(m) for m in masks]
        return {"id": ann_id, "video_id": video_id, "category_id": cat, "iscrowd": 0, "segmentations": segms,
                "areas": [None if m is None else int(m.sum()) for m in masks],
                "bboxes": [None if m is None else [0, 0, 1, 1] for m in masks]}

    videos = [{"id": v, "file_names": [f"v{v}/{t}.jpg" for t in range(T)], "height": H, "width": W, "length": T}
              for v in (1, 2)]
    return {"videos": videos, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            "annotations": [track(11, 1, 1, A), track(12, 1, 2, B, B_POLYGONS), track(21, 2, 1, C)]}


def _output(tracks):
    """The video model's output: (score, contiguous label, T masks with None = empty) per track."""
    return {"image_size": (H, W), "pred_scores": [s for s, _, _ in tracks], "pred_labels": [c for _, c, _ in tracks],
            "pred_masks": [torch.from_numpy(np.stack([EMPTY if m is None else m for m in masks]))
                           for _, _, masks in tracks]}


@pytest.fixture()
def dataset(tmp_path: Path) -> str:
    json_file = tmp_path / "gt.json"
    json_file.write_text(json.dumps(_gt_json()))
    name = f"test_ytvis_eval_{tmp_path.name}"
    MetadataCatalog.get(name).set(json_file=str(json_file), thing_classes=["a", "b"],
                                  thing_dataset_id_to_contiguous_id={1: 0, 2: 1}, evaluator_type="ytvis")
    return name


def _evaluate(name, outputs, output_dir=None):
    ev = YTVISEvaluator(name, distributed=False, output_dir=output_dir)
    ev.reset()
    for video_id, out in outputs.items():
        ev.process([{"video_id": video_id, "length": T}], out)
    return ev.evaluate()["segm"]


# prediction for track 11: frame 0 has 8 of its 10 pixels, frame 1 its 10 pixels shifted by one
# column (8 shared, 2 outside), frame 2 (where the track is absent) 3 pixels. Over the video:
# intersection 8 + 8 = 16, union 10 + 12 + 3 = 25, IoU 0.64 (without the absent frame: 16 / 22).
PARTIAL_A = [_box(0, 2, 0, 4), _box(0, 2, 2, 7), _box(8, 9, 0, 3)]


def test_spatio_temporal_iou_counts_absent_frames():
    rles = lambda masks: [None if m is None else mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
                          for m in masks]
    ious = spatio_temporal_ious([rles(PARTIAL_A), rles(C)], [rles(A), rles(B), rles(C)])
    assert ious[0, 0] == pytest.approx(16 / 25)
    assert ious[1, 2] == 1.0
    assert ious[0, 2] == 0.0 and ious[1, 0] == 0.0


def test_perfect_predictions_give_100(dataset, tmp_path):
    outputs = {1: _output([(0.9, 0, A), (0.8, 1, B)]), 2: _output([(0.7, 0, C)])}
    res = _evaluate(dataset, outputs, str(tmp_path / "out"))
    for key in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AP-a", "AP-b"):
        assert res[key] == pytest.approx(100.0), key
    assert math.isnan(res["APm"]) and math.isnan(res["APl"])  # every track is small (< 128^2 pixels)

    # results.json: the challenge-server format, dataset category ids, one RLE per frame
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(r["video_id"], r["category_id"], r["score"]) for r in results] == [(1, 1, 0.9), (1, 2, 0.8), (2, 1, 0.7)]
    assert all(set(r) == {"video_id", "score", "category_id", "segmentations"} for r in results)
    decoded = [mask_util.decode(rle).astype(bool) for rle in results[2]["segmentations"]]
    assert len(decoded) == T and not decoded[0].any() and np.array_equal(decoded[1], C[1])


def test_partial_prediction_matches_hand_computation(dataset):
    # category b: perfect. category a: track 21 perfect (score 0.8), track 11 at IoU 0.64 (score
    # 0.6, ranked second): a true positive at IoU thresholds 0.50, 0.55, 0.60, a false positive at
    # the other 7. There, recall stops at 1/2 with precision 1 -> AP = 51 of the 101 recall points.
    outputs = {1: _output([(0.6, 0, PARTIAL_A), (0.9, 1, B)]), 2: _output([(0.8, 0, C)])}
    res = _evaluate(dataset, outputs)
    ap_a = (3 * 1.0 + 7 * 51 / 101) / 10
    assert res["AP-a"] == pytest.approx(100 * ap_a)
    assert res["AP-b"] == pytest.approx(100.0)
    assert res["AP"] == pytest.approx(100 * (ap_a + 1.0) / 2)
    assert res["AP50"] == pytest.approx(100.0)
    assert res["AP75"] == pytest.approx(100 * (51 / 101 + 1.0) / 2)
    # recall of category a: 1 at 3 thresholds, 1/2 at 7 -> 0.65; one detection per video suffices
    assert res["AR1"] == pytest.approx(100 * (0.65 + 1.0) / 2)
    assert res["AR10"] == pytest.approx(res["AR1"])


def test_wrong_class_and_missed_track(dataset):
    # track 12 predicted with class a (a false positive of a, a miss of b); track 21 not predicted
    outputs = {1: _output([(0.9, 0, A), (0.8, 0, B)]), 2: _output([])}
    res = _evaluate(dataset, outputs)
    # category a: TP (0.9) then FP (0.8), 1 of 2 tracks found: precision 1 up to recall 1/2
    assert res["AP-a"] == pytest.approx(100 * 51 / 101)
    assert res["AP-b"] == pytest.approx(0.0)
    assert res["AR1"] == pytest.approx(100 * (0.5 + 0.0) / 2)


def test_bad_predictions_are_named(dataset):
    ev = YTVISEvaluator(dataset, distributed=False)
    ev.reset()
    ev.process([{"video_id": 1}], _output([(0.5, 5, A)]))
    with pytest.raises(ValueError, match="class 5"):
        ev.evaluate()
    ev.reset()
    short = _output([(0.5, 0, A)])
    short["pred_masks"] = [m[:2] for m in short["pred_masks"]]
    ev.process([{"video_id": 2}], short)
    with pytest.raises(ValueError, match="video 2 has 2 frames, the video has 3"):
        ev.evaluate()


def test_json_without_annotations_only_writes_results(tmp_path):
    gt = _gt_json()
    del gt["annotations"]
    (tmp_path / "test.json").write_text(json.dumps(gt))
    name = f"test_ytvis_eval_noanno_{tmp_path.name}"
    MetadataCatalog.get(name).set(json_file=str(tmp_path / "test.json"), thing_dataset_id_to_contiguous_id={1: 0, 2: 1})
    ev = YTVISEvaluator(name, distributed=False, output_dir=str(tmp_path))
    ev.reset()
    ev.process([{"video_id": 1}], _output([(0.5, 1, B)]))
    assert ev.evaluate() == {}
    assert json.loads((tmp_path / "results.json").read_text())[0]["category_id"] == 2


def _distributed_worker(json_file, result_file):
    rank = dist.get_rank()
    name = "test_ytvis_distributed"
    MetadataCatalog.get(name).set(json_file=json_file, thing_classes=["a", "b"],
                                  thing_dataset_id_to_contiguous_id={1: 0, 2: 1})
    ev = YTVISEvaluator(name, distributed=True)
    ev.reset()
    # each process sees one video of the partial-prediction case
    if rank == 0:
        ev.process([{"video_id": 1}], _output([(0.6, 0, PARTIAL_A), (0.9, 1, B)]))
    else:
        ev.process([{"video_id": 2}], _output([(0.8, 0, C)]))
    res = ev.evaluate()
    if rank == 0:
        torch.save(res["segm"], result_file)
    else:
        assert res is None


@pytest.mark.slow
def test_predictions_gathered_across_processes(dataset, tmp_path):
    result_file = tmp_path / "res.pth"
    driver = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from test_ytvis_evaluation import _distributed_worker;"
        "from mask2former.engine.launch import launch;"
        "launch(_distributed_worker, 2, dist_url='auto', args=(sys.argv[2], sys.argv[3]))"
    )
    repo_root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"}
    json_file = MetadataCatalog.get(dataset).json_file
    subprocess.run([sys.executable, "-c", driver, str(Path(__file__).parent), json_file, str(result_file)],
                   check=True, env=env, cwd=str(repo_root), timeout=300)
    res = torch.load(result_file)
    assert res["AP"] == pytest.approx(100 * ((3 + 7 * 51 / 101) / 10 + 1.0) / 2)
